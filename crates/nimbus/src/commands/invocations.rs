//! `nimbus invocations`: the record of every invocation.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use nimbus_core::time::rfc3339_millis;
use nimbus_store::{InvocationQuery, InvocationRecord};

use crate::duration;

/// List recent invocations with duration, billed time, memory, cold start and outcome.
#[derive(clap::Args)]
pub(crate) struct InvocationsCommand {
    /// Only this function's invocations.
    function: Option<String>,
    /// Only invocations that did not end ok (including throttles).
    #[arg(long)]
    failed: bool,
    /// Only invocations newer than this, for example 1h.
    #[arg(long, value_parser = duration::parse)]
    since: Option<Duration>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// The app folder.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

impl InvocationsCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let store = super::open_store(&self.dir)?;
        let records = store.invocations(&InvocationQuery {
            function: self.function.clone(),
            failed_only: self.failed,
            since: self.since.map(|since| SystemTime::now() - since),
            limit: Some(self.limit),
        })?;
        let mut out = std::io::stdout().lock();
        if !self.json {
            writeln!(
                out,
                "{:<24} {:<16} {:<36} {:>10} {:>8} {:>7} {:>6} {:<5} {:<13} ERROR",
                "START",
                "FUNCTION",
                "REQUEST ID",
                "DURATION",
                "BILLED",
                "MEMORY",
                "MAX",
                "COLD",
                "OUTCOME"
            )?;
        }
        for record in &records {
            if self.json {
                writeln!(out, "{}", to_json(record))?;
            } else {
                let error = match (&record.error_type, &record.error_message) {
                    (Some(t), Some(m)) => format!("{t}: {m}"),
                    (Some(t), None) => t.clone(),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "{:<24} {:<16} {:<36} {:>8.2}ms {:>6}ms {:>5}MB {:>4}MB {:<5} {:<13} {}",
                    rfc3339_millis(record.start),
                    record.function,
                    record.request_id,
                    record.duration.as_secs_f64() * 1000.0,
                    record.billed_ms,
                    record.memory_mb,
                    record.max_memory_mb,
                    if record.cold_start { "cold" } else { "warm" },
                    record.outcome,
                    error
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The record as the services API's `GET /v1/invocations` gives it.
fn to_json(record: &InvocationRecord) -> String {
    serde_json::to_string(&nimbus_server::wire::Invocation::from(record)).unwrap_or_default()
}
