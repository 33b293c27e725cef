//! The AWS Lambda Runtime API (version 2018-06-01) served to one instance on loopback.
//!
//! Each instance gets its own listener, because the API has no notion of which sandbox
//! is calling: `AWS_LAMBDA_RUNTIME_API` is only a host and port. Custom runtimes build
//! their URLs from it, so it can carry no token either; instead, when the instance has a
//! uid of its own, the listener serves only connections from sockets that uid opened, as
//! the kernel records them (`sandbox::socket_owner`), and closes any other at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use nimbus_core::Invocation;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Lambda's limit for a synchronous response payload.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
const PREFIX: &str = "/2018-06-01/runtime/";
/// nimbus's extension for its own bootstraps: a result posted with this header is answered
/// as `GET /next` would be, with the runtime's next invocation, so each invocation costs one
/// request instead of two (the result and the next `/next`). Without it, the answer is
/// Lambda's `202`; custom runtimes never send it.
const NEXT_HEADER: &str = "nimbus-next";

/// Who may talk to an instance's Runtime API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Any local process (no sandbox, or instances sharing nimbus's uid).
    Any,
    /// Only sockets owned by this uid: the instance's own.
    Uid(u32),
}

/// One invocation handed to the instance.
pub(crate) struct Dispatch {
    pub(crate) invocation: Invocation,
    pub(crate) deadline: SystemTime,
    pub(crate) reply: oneshot::Sender<Reply>,
    /// Set when the runtime picks the invocation up, so the pool can tell whether an
    /// instance that died had received it.
    pub(crate) delivered: Arc<AtomicBool>,
}

/// What the runtime posted back for an invocation.
pub(crate) enum Reply {
    Response(Bytes),
    Error(Bytes),
}

/// How the instance's start-up ended, as the runtime reported it.
pub(crate) enum Init {
    /// The runtime asked for its first invocation.
    Ready,
    /// The runtime posted `/runtime/init/error` with this body.
    Failed(Bytes),
}

pub(crate) struct RuntimeApi {
    next_rx: Mutex<mpsc::Receiver<Dispatch>>,
    /// The invocations the runtime picked up and has not answered yet, by request id:
    /// one, or up to the function's `concurrency` when its runtime runs several at once
    /// (one `/next` per slot).
    current: std::sync::Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    init_tx: std::sync::Mutex<Option<oneshot::Sender<Init>>>,
    /// The function's ARN and name: given at start, or when a pre-started process is
    /// handed to a function (`assign`).
    function: std::sync::Mutex<(String, String)>,
    /// A pre-started process's hand-over: told when its bootstrap asks which function it
    /// serves (`GET /runtime/nimbus/assignment`), then the answer it waits for.
    asked_tx: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    assignment_rx: Mutex<Option<oneshot::Receiver<Bytes>>>,
    last_request_id: std::sync::Mutex<Option<String>>,
}

impl RuntimeApi {
    /// Binds a loopback listener and serves the Runtime API on it until the returned
    /// task is aborted. Up to `concurrency` invocations wait to be picked up.
    pub(crate) async fn start(
        function_arn: String,
        peer: Peer,
        concurrency: usize,
    ) -> std::io::Result<(
        SocketAddr,
        Arc<RuntimeApi>,
        mpsc::Sender<Dispatch>,
        oneshot::Receiver<Init>,
        tokio::task::JoinHandle<()>,
    )> {
        // The Runtime API is for the instance alone: loopback only, never a public address.
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (next_tx, next_rx) = mpsc::channel(concurrency.max(1));
        let (init_tx, init_rx) = oneshot::channel();
        let api = Arc::new(RuntimeApi {
            next_rx: Mutex::new(next_rx),
            current: std::sync::Mutex::new(HashMap::new()),
            init_tx: std::sync::Mutex::new(Some(init_tx)),
            function: std::sync::Mutex::new((function_arn, String::new())),
            asked_tx: std::sync::Mutex::new(None),
            assignment_rx: Mutex::new(None),
            last_request_id: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(serve(listener, api.clone(), peer));
        Ok((addr, api, next_tx, init_rx, task))
    }
}

impl RuntimeApi {
    /// Makes this the endpoint of a pre-started process: the returned receiver hears when
    /// its bootstrap has loaded and asks for its function, and the sender answers it with
    /// the assignment (JSON: the environment to take on).
    pub(crate) async fn expect_assignment(
        &self,
    ) -> (oneshot::Receiver<()>, oneshot::Sender<Bytes>) {
        let (asked_tx, asked_rx) = oneshot::channel();
        let (assign_tx, assign_rx) = oneshot::channel();
        if let Ok(mut slot) = self.asked_tx.lock() {
            *slot = Some(asked_tx);
        }
        *self.assignment_rx.lock().await = Some(assign_rx);
        (asked_rx, assign_tx)
    }

    /// Names the function the instance serves, in `/next` headers and log lines.
    pub(crate) fn set_function(&self, name: &str, function_arn: &str) {
        if let Ok(mut function) = self.function.lock() {
            *function = (function_arn.to_owned(), name.to_owned());
        }
    }

    /// The function's name, for log lines.
    pub(crate) fn function_name(&self) -> String {
        self.function
            .lock()
            .map(|f| f.1.clone())
            .unwrap_or_default()
    }

    /// The request id of the invocation the runtime picked up last, if any. Output read
    /// after the runtime answered still belongs to it, as in a Lambda log stream.
    pub(crate) fn last_request_id(&self) -> Option<String> {
        self.last_request_id.lock().ok()?.clone()
    }
}

async fn serve(listener: TcpListener, api: Arc<RuntimeApi>, peer: Peer) {
    let mut connections = tokio::task::JoinSet::new();
    let local = listener.local_addr().ok();
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if let (Peer::Uid(uid), Some(local)) = (peer, local) {
            let owner = crate::sandbox::socket_owner(remote, local);
            if owner != Some(uid) {
                // Another instance (or anyone else on the host) found this port: it gets
                // nothing, not even an HTTP error, so it learns nothing of the invocation.
                tracing::debug!(
                    expected = uid,
                    ?owner,
                    "refused a Runtime API connection from another uid"
                );
                drop(stream);
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(handle(&api, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(api: &RuntimeApi, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(rest) = req.uri().path().strip_prefix(PREFIX) else {
        return error(
            StatusCode::NOT_FOUND,
            "UnknownPath",
            "not a Runtime API path",
        );
    };
    let rest = rest.to_owned();
    match (req.method(), rest.as_str()) {
        (&Method::GET, "invocation/next") => next(api).await,
        (&Method::GET, "nimbus/assignment") => assignment(api).await,
        (&Method::POST, "init/error") => {
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(res) => return res,
            };
            if let Some(tx) = take(&api.init_tx) {
                let _ = tx.send(Init::Failed(body));
            }
            accepted()
        }
        (&Method::POST, path) => {
            let Some((request_id, kind)) = path
                .strip_prefix("invocation/")
                .and_then(|p| p.rsplit_once('/'))
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    "UnknownPath",
                    "not a Runtime API path",
                );
            };
            let request_id = request_id.to_owned();
            let then_next = req.headers().contains_key(NEXT_HEADER);
            let is_response = match kind {
                "response" => true,
                "error" => false,
                _ => {
                    return error(
                        StatusCode::NOT_FOUND,
                        "UnknownPath",
                        "not a Runtime API path",
                    );
                }
            };
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(_) if is_response => {
                    // Lambda answers an oversize response with this error to the invoker.
                    let body = Bytes::from_static(
                        br#"{"errorType":"Function.ResponseSizeTooLarge","errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes)."}"#,
                    );
                    complete(api, &request_id, Reply::Error(body));
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        "response payload over 6 MB",
                    );
                }
                Err(res) => return res,
            };
            let reply = if is_response {
                Reply::Response(body)
            } else {
                Reply::Error(body)
            };
            if complete(api, &request_id, reply) {
                match then_next {
                    true => next(api).await,
                    false => accepted(),
                }
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestID",
                    "no invocation in progress with this request id",
                )
            }
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed",
        ),
    }
}

async fn next(api: &RuntimeApi) -> Response<Full<Bytes>> {
    if let Some(tx) = take(&api.init_tx) {
        let _ = tx.send(Init::Ready);
    }
    let dispatch = {
        let mut rx = api.next_rx.lock().await;
        rx.recv().await
    };
    let Some(dispatch) = dispatch else {
        // The instance is being stopped; it gets no more work.
        return error(StatusCode::GONE, "InstanceStopping", "instance is stopping");
    };
    let deadline_ms = dispatch
        .deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let invocation = dispatch.invocation;
    let function_arn = api.function.lock().map(|f| f.0.clone()).unwrap_or_default();
    let res = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &invocation.request_id)
        .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", function_arn)
        .header("lambda-runtime-trace-id", &invocation.trace_id)
        .body(Full::new(Bytes::from(invocation.payload)));
    let res = match res {
        Ok(res) => res,
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal",
                "bad header value",
            );
        }
    };
    if let Ok(mut last) = api.last_request_id.lock() {
        last.clone_from(&Some(invocation.request_id.clone()));
    }
    if let Ok(mut current) = api.current.lock() {
        current.insert(invocation.request_id, dispatch.reply);
    }
    dispatch.delivered.store(true, Ordering::Release);
    res
}

/// A pre-started process's bootstrap waits here for the function it is handed to; the
/// body is the environment it takes on before loading the handler.
async fn assignment(api: &RuntimeApi) -> Response<Full<Bytes>> {
    let Some(assignment_rx) = api.assignment_rx.lock().await.take() else {
        return error(
            StatusCode::NOT_FOUND,
            "UnknownPath",
            "this process was started for its function",
        );
    };
    if let Some(tx) = take(&api.asked_tx) {
        let _ = tx.send(());
    }
    match assignment_rx.await {
        Ok(body) => {
            let mut res = Response::new(Full::new(body));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(_) => error(StatusCode::GONE, "InstanceStopping", "instance is stopping"),
    }
}

/// Hands the runtime's reply to the waiting invocation; false when the id is unknown.
fn complete(api: &RuntimeApi, request_id: &str, reply: Reply) -> bool {
    let Ok(mut current) = api.current.lock() else {
        return false;
    };
    match current.remove(request_id) {
        Some(tx) => {
            let _ = tx.send(reply);
            true
        }
        None => false,
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    match Limited::new(req.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "payload over 6 MB",
        )),
    }
}

fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    slot.lock().ok().and_then(|mut s| s.take())
}

fn accepted() -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)));
    *res.status_mut() = StatusCode::ACCEPTED;
    res
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "errorType": error_type, "errorMessage": message });
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res
}
