//! `nimbus invoke`: invoke one function with any event and print its result.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_core::services::NoServices;
use nimbus_core::worker::BindingKind;
use nimbus_core::{Invocation, Outcome};

use crate::app::{self, Fetch, LoadOptions};
use crate::control::UpRecord;

/// Invoke a function directly with an event, through the running `nimbus up` of the app
/// when there is one, else in this process; prints the result.
#[derive(clap::Args)]
pub(crate) struct InvokeCommand {
    /// The function's name in the manifest.
    function: String,
    /// The event as JSON.
    #[arg(long, short = 'd', conflicts_with = "file")]
    data: Option<String>,
    /// A file holding the event as JSON.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// The app folder.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Stage, for `${opt:stage}` and `${sls:stage}`.
    #[arg(long)]
    stage: Option<String>,
    /// Region, for `${opt:region}` and `${aws:region}`.
    #[arg(long)]
    region: Option<String>,
    /// Queue the event for asynchronous invocation (Lambda's `Event` type) in the
    /// running app, with its retries and destinations; prints the message id.
    #[arg(long = "async")]
    asynchronous: bool,
}

impl InvokeCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let payload = match (&self.data, &self.file) {
            (Some(data), _) => data.clone().into_bytes(),
            (None, Some(file)) => std::fs::read(file)
                .with_context(|| format!("reading event file {}", file.display()))?,
            (None, None) => b"{}".to_vec(),
        };
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&payload) {
            anyhow::bail!(
                "the event is not valid JSON ({e}); pass it with --data '{{...}}' or --file event.json"
            );
        }
        if self.asynchronous {
            return self.invoke_async(payload);
        }
        let (payload, function_error) = crate::runtime()?.block_on(self.invoke(payload))?;
        let mut out = std::io::stdout().lock();
        out.write_all(&payload)?;
        writeln!(out)?;
        out.flush()?;
        if function_error {
            eprintln!("error: {} returned an error (see above)", self.function);
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }

    fn invoke_async(&self, payload: Vec<u8>) -> anyhow::Result<ExitCode> {
        let state_dir = self
            .dir
            .canonicalize()
            .with_context(|| format!("opening app folder {}", self.dir.display()))?
            .join(".nimbus");
        let Some(record) = UpRecord::read(&state_dir) else {
            anyhow::bail!("--async needs the app running: start it with `nimbus up` first");
        };
        let path = format!("/2015-03-31/functions/{}/invocations", self.function);
        let headers = [("x-amz-invocation-type", "Event".to_owned())];
        let (status, _, body) = crate::runtime()?.block_on(record.request_with(
            http::Method::POST,
            &path,
            payload,
            &headers,
        ))?;
        if status != http::StatusCode::ACCEPTED {
            anyhow::bail!(
                "the running app answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&body)?;
        writeln!(out)?;
        Ok(ExitCode::SUCCESS)
    }

    async fn invoke(&self, payload: Vec<u8>) -> anyhow::Result<(Vec<u8>, bool)> {
        let state_dir = self
            .dir
            .canonicalize()
            .with_context(|| format!("opening app folder {}", self.dir.display()))?
            .join(".nimbus");
        if let Some(record) = UpRecord::read(&state_dir) {
            match record.invoke(&self.function, payload.clone()).await {
                Ok(invoked) => return Ok((invoked.payload.to_vec(), invoked.function_error)),
                // A record left behind by a nimbus that was killed: invoke here instead.
                Err(e) if is_connect_error(&e) => {
                    tracing::debug!("no running app at {}: {e:#}", record.admin);
                }
                Err(e) => return Err(e),
            }
        }
        self.invoke_in_process(payload).await
    }

    async fn invoke_in_process(&self, payload: Vec<u8>) -> anyhow::Result<(Vec<u8>, bool)> {
        let app = app::load(
            &self.dir,
            &LoadOptions {
                stage: self.stage.clone(),
                region: self.region.clone(),
                fetch: Fetch::Everything,
            },
        )?;
        let Some(idx) = app
            .manifest
            .functions
            .iter()
            .position(|f| f.name == self.function)
        else {
            let names: Vec<&str> = app
                .manifest
                .functions
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            anyhow::bail!(
                "no function named {:?} in the manifest; it has: {}",
                self.function,
                names.join(", ")
            );
        };
        let mut cfg = app.lambda_config(Duration::from_secs(60), Arc::new(app::TracingLogSink));
        // A worker's Durable Objects keep their storage in the app's store, as under
        // `nimbus up` (whose running server would have taken this invocation instead).
        let binds_objects = app.manifest.functions[idx]
            .worker
            .as_ref()
            .is_some_and(|worker| {
                worker
                    .bindings
                    .iter()
                    .any(|b| matches!(b.kind, BindingKind::DurableObject { .. }))
            });
        if binds_objects {
            let store = nimbus_store::Store::open(&app.state_dir()).with_context(|| {
                format!("opening the app's store in {}", app.state_dir().display())
            })?;
            cfg.durable_objects = Some(Arc::new(store));
        }
        nimbus_lambda::install_bootstraps(&cfg).with_context(|| {
            format!(
                "writing runtime bootstraps to {}",
                cfg.runtime_dir.display()
            )
        })?;
        // No server runs here, so there are no services to reach (process functions get
        // no NIMBUS_API here either).
        let executor = app.start_executor(idx, &cfg, Arc::new(NoServices)).await?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let invocation = Invocation {
            request_id: request_id.clone(),
            payload,
            trace_id: format!(
                "Root=1-00000000-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..24]
            ),
        };
        let res = executor.invoke(invocation).await;
        executor.shutdown().await;
        let report = res.with_context(|| format!("invoking {}", self.function))?;
        let function_error = !matches!(report.outcome, Outcome::Ok(_));
        Ok((report.outcome.payload(&request_id), function_error))
    }
}

fn is_connect_error(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}
