//! `nimbus logs`: what functions wrote, by function, request id and time.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use nimbus_core::time::rfc3339_millis;
use nimbus_store::{LogQuery, LogRecord};

use crate::duration;

/// Show function logs (with Lambda's START/END/REPORT lines) kept by `nimbus up`.
#[derive(clap::Args)]
pub(crate) struct LogsCommand {
    /// Only this function's logs.
    function: Option<String>,
    /// Keep printing new lines as they arrive.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only lines newer than this, for example 10m or 2h.
    #[arg(long, value_parser = duration::parse)]
    since: Option<Duration>,
    /// Only the lines of one invocation.
    #[arg(long = "request")]
    request_id: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// The app folder.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

impl LogsCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let store = super::open_store(&self.dir)?;
        let mut query = LogQuery {
            function: self.function.clone(),
            request_id: self.request_id.clone(),
            since: self.since.map(|since| SystemTime::now() - since),
            after: None,
        };
        let mut out = std::io::stdout().lock();
        loop {
            let page = store.logs(&query)?;
            for record in &page.lines {
                self.print(&mut out, record)?;
            }
            out.flush()?;
            query.after = Some(page.next);
            if !self.follow {
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn print(&self, out: &mut impl std::io::Write, record: &LogRecord) -> anyhow::Result<()> {
        if self.json {
            // The line as the services API's `GET /v1/logs` gives it.
            let line = nimbus_server::wire::LogLine::from(record);
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else {
            writeln!(
                out,
                "{} {} {} {:<5} {}",
                rfc3339_millis(record.time),
                record.function,
                record.request_id.as_deref().unwrap_or("-"),
                record.level,
                record.message
            )?;
        }
        Ok(())
    }
}
