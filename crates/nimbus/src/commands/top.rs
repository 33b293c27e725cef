//! `nimbus top`: a live view of every function of a running app.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use nimbus_store::InvocationQuery;

use crate::control::UpRecord;

/// Live per-function requests/s, latency percentiles, errors, instances and cost.
#[derive(clap::Args)]
pub(crate) struct TopCommand {
    /// Print one frame and exit (for scripts).
    #[arg(long)]
    once: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// The app folder.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// Rates cover the last 10 s, percentiles and errors the last minute, cost the last day.
const RATE_WINDOW: Duration = Duration::from_secs(10);
const STATS_WINDOW: Duration = Duration::from_secs(60);
const COST_WINDOW: Duration = Duration::from_secs(86_400);

#[derive(Default)]
struct Row {
    n_recent: u64,
    durations_ms: Vec<f64>,
    n_errors: u64,
    n_throttles: u64,
    gb_seconds: f64,
    n_requests: u64,
    instances: Option<(u64, u64)>,
    /// Why its instances are warm, as `nimbus top` prints it.
    why: String,
}

impl TopCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let interval = Duration::try_from_secs_f64(self.interval.max(0.1))
            .context("--interval must be a number of seconds")?;
        let store = super::open_store(&self.dir)?;
        let state_dir = self.dir.join(".nimbus");
        let runtime = crate::runtime()?;
        loop {
            let frame = self.frame(&store, &state_dir, &runtime)?;
            let mut out = std::io::stdout().lock();
            if !self.once {
                // Home the cursor and clear the screen, so the view refreshes in place.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            write!(out, "{frame}")?;
            out.flush()?;
            if self.once {
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(interval);
        }
    }

    fn frame(
        &self,
        store: &nimbus_store::Store,
        state_dir: &std::path::Path,
        runtime: &tokio::runtime::Runtime,
    ) -> anyhow::Result<String> {
        let now = SystemTime::now();
        let records = store.invocations(&InvocationQuery {
            function: None,
            failed_only: false,
            since: Some(now - COST_WINDOW),
            limit: None,
        })?;
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for record in &records {
            let row = rows.entry(record.function.clone()).or_default();
            if record.outcome != "throttled" {
                row.n_requests += 1;
                row.gb_seconds +=
                    record.billed_ms as f64 / 1000.0 * f64::from(record.memory_mb) / 1024.0;
            }
            let age = now.duration_since(record.start).unwrap_or_default();
            if age <= RATE_WINDOW {
                row.n_recent += 1;
            }
            if age <= STATS_WINDOW {
                match record.outcome.as_str() {
                    "ok" => {}
                    "throttled" => row.n_throttles += 1,
                    _ => row.n_errors += 1,
                }
                if record.outcome != "throttled" {
                    row.durations_ms
                        .push(record.duration.as_secs_f64() * 1000.0);
                }
            }
        }
        let running = UpRecord::read(state_dir);
        if let Some(record) = &running
            && let Ok(functions) = runtime.block_on(record.functions())
        {
            for function in functions {
                let row = rows.entry(function.name).or_default();
                row.instances = Some((function.instances, function.busy));
                row.why = function
                    .warm
                    .iter()
                    .map(|(reason, n)| format!("{n} {reason}"))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
        }
        let mut frame = String::new();
        use std::fmt::Write as _;
        let status = match &running {
            Some(record) => format!("serving on http://{}", record.gateway),
            None => "not running".to_owned(),
        };
        let _ = writeln!(frame, "nimbus top — {} — {status}", self.dir.display());
        let _ = writeln!(
            frame,
            "{:<20} {:>8} {:>9} {:>9} {:>7} {:>9} {:>6} {:>6} {:>12}  WHY",
            "FUNCTION",
            "REQ/S",
            "P50 MS",
            "P99 MS",
            "ERRORS",
            "THROTTLES",
            "WARM",
            "BUSY",
            "COST 24H $"
        );
        for (name, mut row) in rows {
            row.durations_ms.sort_by(f64::total_cmp);
            let (warm, busy) = match row.instances {
                Some((instances, busy)) => (
                    (instances - busy.min(instances)).to_string(),
                    busy.to_string(),
                ),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let cost =
                row.n_requests as f64 * 0.20 / 1_000_000.0 + row.gb_seconds * 0.000_016_666_7;
            let _ = writeln!(
                frame,
                "{:<20} {:>8.1} {:>9} {:>9} {:>7} {:>9} {:>6} {:>6} {:>12.6}  {}",
                name,
                row.n_recent as f64 / RATE_WINDOW.as_secs_f64(),
                percentile(&row.durations_ms, 0.50),
                percentile(&row.durations_ms, 0.99),
                row.n_errors,
                row.n_throttles,
                warm,
                busy,
                cost,
                row.why,
            );
        }
        Ok(frame)
    }
}

/// The nearest-rank percentile of sorted values, or `-` when there are none.
fn percentile(sorted: &[f64], q: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    format!("{:.2}", sorted[rank - 1])
}
