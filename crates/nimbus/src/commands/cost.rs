//! `nimbus cost`: what the recorded invocations would cost on AWS Lambda, beside an
//! always-on server sized for the same peak.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use nimbus_store::{InvocationQuery, InvocationRecord};

use crate::duration;

/// Price the recorded usage at AWS Lambda's list prices, per function and in total.
#[derive(clap::Args)]
pub(crate) struct CostCommand {
    /// Only usage newer than this.
    #[arg(long, default_value = "30d", value_parser = duration::parse)]
    since: Duration,
    /// A JSON price sheet: {"requestPerMillion": 0.2, "gbSecond": 0.0000166667, "alwaysOnGbHour": 0.012}.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// The app folder.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// Prices in US dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Prices {
    /// Lambda, x86, per million requests.
    request_per_million: f64,
    /// Lambda, x86, per GB-second of billed duration.
    gb_second: f64,
    /// An always-on VM, per GB of memory per hour (m6i.large on-demand: $0.096/h for 8 GiB).
    always_on_gb_hour: f64,
}

const DEFAULT_PRICES: Prices = Prices {
    request_per_million: 0.20,
    gb_second: 0.000_016_666_7,
    always_on_gb_hour: 0.012,
};

/// Hours in an average month, as AWS prices always-on capacity.
const HOURS_PER_MONTH: f64 = 730.0;

#[derive(Debug, Default)]
struct Usage {
    requests: u64,
    gb_seconds: f64,
    memory_mb: u32,
    peak_concurrency: usize,
}

impl CostCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let prices = match &self.prices {
            Some(path) => read_prices(path)?,
            None => DEFAULT_PRICES,
        };
        let store = super::open_store(&self.dir)?;
        let now = SystemTime::now();
        let records = store.invocations(&InvocationQuery {
            function: None,
            failed_only: false,
            since: Some(now - self.since),
            limit: None,
        })?;
        let usage = usage_by_function(&records);
        // The bill so far covers the span from the first recorded invocation to now.
        let observed = records
            .iter()
            .map(|r| r.start)
            .min()
            .and_then(|first| now.duration_since(first).ok())
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        let month = Duration::from_secs_f64(HOURS_PER_MONTH * 3600.0);
        let scale = month.as_secs_f64() / observed.as_secs_f64();
        let rows: Vec<serde_json::Value> = usage
            .iter()
            .map(|(function, u)| row(function, u, &prices, scale))
            .collect();
        let total = |key: &str| rows.iter().filter_map(|r| r[key].as_f64()).sum::<f64>();
        let summary = serde_json::json!({
            "since": crate::duration::display(self.since),
            "observedSeconds": observed.as_secs_f64(),
            "prices": {
                "requestPerMillion": prices.request_per_million,
                "gbSecond": prices.gb_second,
                "alwaysOnGbHour": prices.always_on_gb_hour,
            },
            "functions": rows,
            "total": {
                "requests": total("requests"),
                "gbSeconds": total("gbSeconds"),
                "requestCost": total("requestCost"),
                "computeCost": total("computeCost"),
                "cost": total("cost"),
                "monthlyServerless": total("monthlyServerless"),
                "monthlyAlwaysOn": total("monthlyAlwaysOn"),
            },
        });
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{summary}")?;
            return Ok(ExitCode::SUCCESS);
        }
        writeln!(
            out,
            "{:<20} {:>10} {:>12} {:>12} {:>12} {:>12} {:>6} {:>14} {:>14}",
            "FUNCTION",
            "REQUESTS",
            "GB-SECONDS",
            "REQUESTS $",
            "COMPUTE $",
            "TOTAL $",
            "PEAK",
            "SERVERLESS $/MO",
            "ALWAYS-ON $/MO"
        )?;
        let line =
            |out: &mut std::io::StdoutLock<'_>, name: &str, r: &serde_json::Value, peak: String| {
                writeln!(
                    out,
                    "{:<20} {:>10} {:>12.3} {:>12.6} {:>12.6} {:>12.6} {:>6} {:>14.2} {:>14.2}",
                    name,
                    r["requests"].as_f64().unwrap_or(0.0),
                    r["gbSeconds"].as_f64().unwrap_or(0.0),
                    r["requestCost"].as_f64().unwrap_or(0.0),
                    r["computeCost"].as_f64().unwrap_or(0.0),
                    r["cost"].as_f64().unwrap_or(0.0),
                    peak,
                    r["monthlyServerless"].as_f64().unwrap_or(0.0),
                    r["monthlyAlwaysOn"].as_f64().unwrap_or(0.0),
                )
            };
        for row in &rows {
            let name = row["function"].as_str().unwrap_or_default();
            line(&mut out, name, row, row["peakConcurrency"].to_string())?;
        }
        line(&mut out, "total", &summary["total"], String::new())?;
        writeln!(
            out,
            "\nover {:.0} s observed; per month at this rate serverless costs ${:.2}, an always-on server sized for the peak ${:.2}",
            observed.as_secs_f64(),
            total("monthlyServerless"),
            total("monthlyAlwaysOn"),
        )?;
        Ok(ExitCode::SUCCESS)
    }
}

fn row(function: &str, usage: &Usage, prices: &Prices, scale: f64) -> serde_json::Value {
    let request_cost = usage.requests as f64 * prices.request_per_million / 1_000_000.0;
    let compute_cost = usage.gb_seconds * prices.gb_second;
    let cost = request_cost + compute_cost;
    // Always-on capacity must hold the peak number of concurrent instances all month.
    let always_on_gb = usage.peak_concurrency as f64 * f64::from(usage.memory_mb) / 1024.0;
    serde_json::json!({
        "function": function,
        "requests": usage.requests,
        "gbSeconds": usage.gb_seconds,
        "requestCost": request_cost,
        "computeCost": compute_cost,
        "cost": cost,
        "memoryMb": usage.memory_mb,
        "peakConcurrency": usage.peak_concurrency,
        "monthlyServerless": cost * scale,
        "monthlyAlwaysOn": always_on_gb * prices.always_on_gb_hour * HOURS_PER_MONTH,
    })
}

/// Requests, billed GB-seconds and peak concurrency per function. Throttled
/// invocations are not billed, as on Lambda.
fn usage_by_function(records: &[InvocationRecord]) -> BTreeMap<String, Usage> {
    let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
    let mut intervals: BTreeMap<String, Vec<(SystemTime, i32)>> = BTreeMap::new();
    for record in records.iter().filter(|r| r.outcome != "throttled") {
        let entry = usage.entry(record.function.clone()).or_default();
        entry.requests += 1;
        entry.gb_seconds += record.billed_ms as f64 / 1000.0 * f64::from(record.memory_mb) / 1024.0;
        entry.memory_mb = entry.memory_mb.max(record.memory_mb);
        let events = intervals.entry(record.function.clone()).or_default();
        events.push((record.start, 1));
        events.push((record.start + record.duration, -1));
    }
    for (function, mut events) in intervals {
        // Ends sort before starts at the same instant: back-to-back is not overlap.
        events.sort();
        let mut current: i32 = 0;
        let mut peak: i32 = 0;
        for (_, delta) in events {
            current += delta;
            peak = peak.max(current);
        }
        if let Some(entry) = usage.get_mut(&function) {
            entry.peak_concurrency = usize::try_from(peak).unwrap_or(0);
        }
    }
    usage
}

fn read_prices(path: &PathBuf) -> anyhow::Result<Prices> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading price sheet {}", path.display()))?;
    let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("price sheet {} is not a JSON object", path.display()))?;
    let mut prices = DEFAULT_PRICES;
    for (key, price) in &value {
        let Some(price) = price.as_f64().filter(|p| *p >= 0.0) else {
            anyhow::bail!(
                "price sheet {}: {key} must be a non-negative number",
                path.display()
            );
        };
        match key.as_str() {
            "requestPerMillion" => prices.request_per_million = price,
            "gbSecond" => prices.gb_second = price,
            "alwaysOnGbHour" => prices.always_on_gb_hour = price,
            _ => anyhow::bail!(
                "price sheet {}: unknown key {key:?}; known keys are requestPerMillion, gbSecond, alwaysOnGbHour",
                path.display()
            ),
        }
    }
    Ok(prices)
}
