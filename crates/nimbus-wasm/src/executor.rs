//! `WasmExecutor`: one function's component, invoked in a fresh store per invocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt as _;
use nimbus_core::{
    BoxFuture, Executor, FunctionSpec, Invocation, InvocationReport, InvokeError, LogLine,
    LogStream, Outcome,
};
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, InstancePre};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::engine::{WasmComponent, WasmEngine, World, nimbus_handler_export};
use crate::host::{Host, LogPipe, MemoryLimiter, OutboundPolicy};
use crate::proxy;
use crate::services::ServiceContext;
use crate::world::exports::nimbus::function::handler::{
    Context as GuestContext, Error as GuestError,
};
use crate::{ComponentError, WasmConfig};

/// Invokes one wasm function: a new instance per invocation, instantiated from a
/// pre-linked `InstancePre`, bounded by the function's memory limit and timeout.
pub struct WasmExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    engine: WasmEngine,
    spec: FunctionSpec,
    lambda_name: String,
    /// Lambda's environment plus the manifest's, the same for every invocation.
    env: Vec<(String, String)>,
    entry: Entry,
    allowed_hosts: Arc<[String]>,
    function: Arc<str>,
    cfg: WasmConfig,
    /// Set once the first invocation has instantiated the component: that one is
    /// reported as the cold start.
    instantiated: AtomicBool,
    shutting_down: AtomicBool,
}

enum Entry {
    Http(ProxyPre<Host>),
    Nimbus(NimbusPre),
}

/// A nimbus-world component, linked, and its `handle` export. The export is looked up
/// by the name the component gives it, so 0.1 guests (whose handler has the same shape)
/// are invoked like 0.2 ones.
struct NimbusPre {
    pre: InstancePre<Host>,
    handle: ComponentExportIndex,
}

/// How the guest part of an invocation ended, before it becomes an `Outcome`.
enum GuestEnd {
    Returned(Outcome),
    Failed(wasmtime::Error),
}

impl WasmExecutor {
    /// Prepares `component` for `spec`: links it once, so each invocation only
    /// instantiates.
    pub fn new(
        engine: &WasmEngine,
        spec: FunctionSpec,
        component: &WasmComponent,
        cfg: WasmConfig,
    ) -> Result<WasmExecutor, ComponentError> {
        let link_error = |e: wasmtime::Error| ComponentError {
            message: format!("linking the component of {}: {e}", spec.name),
        };
        let pre: InstancePre<Host> = engine
            .inner
            .linker
            .instantiate_pre(&component.component)
            .map_err(link_error)?;
        let entry = match component.world {
            World::Http => Entry::Http(ProxyPre::new(pre).map_err(link_error)?),
            World::Nimbus => {
                let engine = &engine.inner.engine;
                let handle = nimbus_handler_export(engine, &component.component)
                    .and_then(|name| component.component.get_export_index(None, &name))
                    .and_then(|handler| {
                        component
                            .component
                            .get_export_index(Some(&handler), "handle")
                    })
                    .ok_or_else(|| ComponentError {
                        message: format!(
                            "the component of {} exports nimbus:function/handler without its `handle` function",
                            spec.name
                        ),
                    })?;
                Entry::Nimbus(NimbusPre { pre, handle })
            }
        };
        let lambda_name = format!("{}-{}-{}", cfg.service, cfg.stage, spec.name);
        let mut env = vec![
            ("_HANDLER".to_owned(), spec.handler.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME".to_owned(), lambda_name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_owned(),
                spec.memory_mb.to_string(),
            ),
            (
                "AWS_LAMBDA_FUNCTION_VERSION".to_owned(),
                "$LATEST".to_owned(),
            ),
            ("AWS_EXECUTION_ENV".to_owned(), "AWS_Lambda_wasm".to_owned()),
            ("AWS_REGION".to_owned(), cfg.region.clone()),
            ("AWS_DEFAULT_REGION".to_owned(), cfg.region.clone()),
            ("TZ".to_owned(), ":UTC".to_owned()),
        ];
        env.extend(spec.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(WasmExecutor {
            shared: Arc::new(Shared {
                engine: engine.clone(),
                lambda_name,
                env,
                entry,
                allowed_hosts: spec.allowed_outbound_hosts.iter().cloned().collect(),
                function: spec.name.as_str().into(),
                spec,
                cfg,
                instantiated: AtomicBool::new(false),
                shutting_down: AtomicBool::new(false),
            }),
        })
    }
}

impl Executor for WasmExecutor {
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'_, Result<InvocationReport, InvokeError>> {
        Box::pin(self.shared.clone().invoke(invocation))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        Box::pin(async {})
    }
}

impl Shared {
    async fn invoke(
        self: Arc<Self>,
        invocation: Invocation,
    ) -> Result<InvocationReport, InvokeError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(InvokeError::ShuttingDown {
                function: self.spec.name.clone(),
            });
        }
        let started = Instant::now();
        let timeout = self.spec.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let _slot =
            tokio::time::timeout_at(deadline, self.engine.inner.slots.clone().acquire_owned())
                .await;
        let slot = match _slot {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => {
                return Err(InvokeError::ShuttingDown {
                    function: self.spec.name.clone(),
                });
            }
            Err(_elapsed) => {
                return Ok(self.report(Outcome::Timeout(timeout), started, None, 0));
            }
        };
        let request_id: Arc<str> = invocation.request_id.as_str().into();
        let stdout = LogPipe::new(
            self.function.clone(),
            request_id.clone(),
            LogStream::Stdout,
            self.cfg.log_sink.clone(),
        );
        let stderr = LogPipe::new(
            self.function.clone(),
            request_id.clone(),
            LogStream::Stderr,
            self.cfg.log_sink.clone(),
        );
        let mut store = self.new_store(&invocation, &request_id, &stdout, &stderr);

        let (end, init) = match &self.entry {
            Entry::Nimbus(pre) => {
                self.invoke_nimbus(pre, &mut store, &invocation, deadline)
                    .await
            }
            Entry::Http(pre) => {
                let (end, init, returned) = self
                    .clone()
                    .invoke_http(pre.clone(), store, &invocation.payload, deadline)
                    .await;
                store = returned;
                (end, init)
            }
        };
        stdout.finish();
        stderr.finish();
        drop(slot);

        let limiter = &store.data().limiter;
        let max_memory_mb = u32::try_from(limiter.peak_bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX);
        let outcome = match end {
            GuestEnd::Returned(outcome) => outcome,
            GuestEnd::Failed(e) => self.outcome_of_failure(e, limiter.denied, &request_id),
        };
        let cold = init.is_some() && !self.instantiated.swap(true, Ordering::Relaxed);
        Ok(self.report(outcome, started, init.filter(|_| cold), max_memory_mb))
    }

    fn report(
        &self,
        outcome: Outcome,
        started: Instant,
        init: Option<Duration>,
        max_memory_mb: u32,
    ) -> InvocationReport {
        InvocationReport {
            outcome,
            cold_start: init.is_some(),
            prestarted: false,
            init_duration: init,
            duration: started.elapsed(),
            max_memory_mb,
        }
    }

    fn new_store(
        &self,
        invocation: &Invocation,
        request_id: &Arc<str>,
        stdout: &LogPipe,
        stderr: &LogPipe,
    ) -> Store<Host> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .env("_X_AMZN_TRACE_ID", &invocation.trace_id)
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        let host = Host {
            wasi: wasi.build(),
            table: wasmtime::component::ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            outbound: OutboundPolicy {
                allowed: self.allowed_hosts.clone(),
                function: self.function.clone(),
                request_id: request_id.clone(),
                log_sink: self.cfg.log_sink.clone(),
            },
            limiter: MemoryLimiter {
                limit_bytes: (self.spec.memory_mb as usize) << 20,
                peak_bytes: 0,
                denied: false,
            },
            services: ServiceContext {
                services: self.cfg.services.clone(),
                function: self.function.clone(),
                request_id: request_id.clone(),
                trace_id: invocation.trace_id.as_str().into(),
                log_sink: self.cfg.log_sink.clone(),
            },
        };
        let mut store = Store::new(&self.engine.inner.engine, host);
        store.limiter(|host| &mut host.limiter);
        // Yield to the async runtime at every epoch tick, so a looping guest never holds
        // a worker thread; the timeout itself is a `tokio::time::timeout_at` around it.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    async fn invoke_nimbus(
        &self,
        pre: &NimbusPre,
        store: &mut Store<Host>,
        invocation: &Invocation,
        deadline: tokio::time::Instant,
    ) -> (GuestEnd, Option<Duration>) {
        let event = String::from_utf8_lossy(&invocation.payload).into_owned();
        let deadline_ms = SystemTime::now()
            .checked_add(self.spec.timeout)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let ctx = GuestContext {
            request_id: invocation.request_id.clone(),
            function_name: self.lambda_name.clone(),
            memory_limit_mb: self.spec.memory_mb,
            deadline_ms,
            trace_id: invocation.trace_id.clone(),
        };
        let mut init = None;
        let run = async {
            let t0 = Instant::now();
            let instance = pre.pre.instantiate_async(&mut *store).await?;
            init = Some(t0.elapsed());
            let handle = instance
                .get_typed_func::<(&str, &GuestContext), (Result<String, GuestError>,)>(
                    &mut *store,
                    &pre.handle,
                )?;
            let (res,) = handle.call_async(&mut *store, (&event, &ctx)).await?;
            Ok::<_, wasmtime::Error>(res)
        };
        let end = match tokio::time::timeout_at(deadline, run).await {
            Err(_elapsed) => GuestEnd::Returned(Outcome::Timeout(self.spec.timeout)),
            Ok(Err(e)) => GuestEnd::Failed(e),
            Ok(Ok(Ok(json))) => GuestEnd::Returned(Outcome::Ok(json.into_bytes())),
            Ok(Ok(Err(error))) => GuestEnd::Returned(Outcome::Error(
                serde_json::json!({
                    "errorType": error.error_type,
                    "errorMessage": error.error_message,
                })
                .to_string()
                .into_bytes(),
            )),
        };
        (end, init)
    }

    /// Runs a wasi:http handler on the request the event stands for. The guest runs in
    /// its own task because it may keep writing the body after it has sent the head.
    async fn invoke_http(
        self: Arc<Self>,
        pre: ProxyPre<Host>,
        mut store: Store<Host>,
        payload: &[u8],
        deadline: tokio::time::Instant,
    ) -> (GuestEnd, Option<Duration>, Store<Host>) {
        let request = match proxy::request_from_event(payload) {
            Ok(request) => request,
            Err(proxy::NotHttpEvent(message)) => {
                let body = serde_json::json!({
                    "errorType": "Runtime.InvalidEvent",
                    "errorMessage": message,
                });
                let outcome = Outcome::Error(body.to_string().into_bytes());
                return (GuestEnd::Returned(outcome), None, store);
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = request.map(http_body_util::Full::new);
        let resources = store.data_mut().http().new_incoming_request(
            wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
            request,
        );
        let resources = resources.and_then(|req| {
            let out = store.data_mut().http().new_response_outparam(tx)?;
            Ok((req, out))
        });
        let (req, out) = match resources {
            Ok(pair) => pair,
            Err(e) => return (GuestEnd::Failed(e), None, store),
        };
        let guest = tokio::spawn(async move {
            let t0 = Instant::now();
            let res = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                let init = t0.elapsed();
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await?;
                Ok(init)
            }
            .await;
            (res, store)
        });
        let abort = guest.abort_handle();
        // Abort the guest if this future is dropped (the client went away) or times out.
        let _abort_on_drop = AbortOnDrop(abort.clone());

        let response = tokio::time::timeout_at(deadline, async {
            let response = rx.await.ok()?;
            Some(match response {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    body.collect()
                        .await
                        .map(|collected| (parts, collected.to_bytes()))
                        .map_err(|code| format!("{code:?}"))
                }
                Err(code) => Err(format!("{code:?}")),
            })
        })
        .await;
        let timed_out = response.is_err();
        if timed_out {
            abort.abort();
        }
        let joined = guest.await;
        let (guest_res, store) = match joined {
            Ok(pair) => pair,
            Err(join_error) => {
                // Aborted (timeout) or the task panicked: the store is gone with it, so
                // give back a fresh, empty one for the report.
                let fresh = self.empty_store();
                if timed_out {
                    return (
                        GuestEnd::Returned(Outcome::Timeout(self.spec.timeout)),
                        None,
                        fresh,
                    );
                }
                let end = GuestEnd::Returned(Outcome::Crashed(format!(
                    "wasm host task failed: {join_error}"
                )));
                return (end, None, fresh);
            }
        };
        let init = guest_res.as_ref().ok().copied();
        let end = match (response, guest_res) {
            (Ok(Some(Ok((parts, body)))), _) => {
                GuestEnd::Returned(Outcome::Ok(proxy::proxy_response(&parts, &body)))
            }
            (_, Err(e)) => GuestEnd::Failed(e),
            (Ok(Some(Err(code))), Ok(_)) => GuestEnd::Returned(Outcome::Crashed(format!(
                "the component answered with an error: {code}"
            ))),
            (Ok(None), Ok(_)) => GuestEnd::Returned(Outcome::Crashed(
                "the component returned without setting a response".to_owned(),
            )),
            (Err(_elapsed), Ok(_)) => GuestEnd::Returned(Outcome::Timeout(self.spec.timeout)),
        };
        (end, init, store)
    }

    fn empty_store(&self) -> Store<Host> {
        let host = Host {
            wasi: WasiCtxBuilder::new().build(),
            table: wasmtime::component::ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            outbound: OutboundPolicy {
                allowed: self.allowed_hosts.clone(),
                function: self.function.clone(),
                request_id: "".into(),
                log_sink: self.cfg.log_sink.clone(),
            },
            limiter: MemoryLimiter {
                limit_bytes: 0,
                peak_bytes: 0,
                denied: false,
            },
            services: ServiceContext {
                services: self.cfg.services.clone(),
                function: self.function.clone(),
                request_id: "".into(),
                trace_id: "".into(),
                log_sink: self.cfg.log_sink.clone(),
            },
        };
        Store::new(&self.engine.inner.engine, host)
    }

    /// A guest that trapped after its memory growth was denied ran out of memory;
    /// any other trap is a crash, logged with its message.
    fn outcome_of_failure(&self, e: wasmtime::Error, denied: bool, request_id: &str) -> Outcome {
        if denied {
            return Outcome::OutOfMemory {
                limit_mb: self.spec.memory_mb,
            };
        }
        let message = match e.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("wasm trap: {trap}"),
            None => format!("wasm trap: {e}"),
        };
        self.cfg.log_sink.log(LogLine {
            function: &self.spec.name,
            request_id: Some(request_id),
            stream: LogStream::Stderr,
            text: &message,
        });
        Outcome::Crashed(message)
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
