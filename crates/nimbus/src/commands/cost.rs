//! `nimbus cost`: what the recorded invocations would cost on AWS Lambda (and the workflows'
//! state transitions on Step Functions), beside an always-on server sized for the same peak.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use nimbus_server::cost::{DEFAULT_PRICES, Prices};
use nimbus_store::InvocationQuery;

use crate::duration;

/// Price the recorded usage at AWS Lambda's list prices, per function and in total.
#[derive(clap::Args)]
pub(crate) struct CostCommand {
    /// Only usage newer than this.
    #[arg(long, default_value = "30d", value_parser = duration::parse)]
    since: Duration,
    /// A JSON price sheet: {"requestPerMillion": 0.2, "gbSecond": 0.0000166667, "alwaysOnGbHour": 0.012, "transitionPerThousand": 0.025}.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// The app folder.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
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
        let since_us = nimbus_core::time::unix_micros(now - self.since);
        let workflows = store.workflow_usage(since_us)?;
        let summary = nimbus_server::cost::summary(
            &records,
            &workflows,
            now,
            &crate::duration::display(self.since),
            &prices,
        );
        let rows = summary["functions"].as_array().cloned().unwrap_or_default();
        let total = |key: &str| summary["total"][key].as_f64().unwrap_or(0.0);
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
        let workflows = summary["workflows"].as_array().cloned().unwrap_or_default();
        if !workflows.is_empty() {
            writeln!(
                out,
                "{:<20} {:>10} {:>12} {:>12} {:>12} {:>12} {:>6} {:>14}",
                "STATE MACHINE",
                "EXECUTIONS",
                "TRANSITIONS",
                "",
                "",
                "TOTAL $",
                "",
                "SERVERLESS $/MO"
            )?;
            for row in &workflows {
                writeln!(
                    out,
                    "{:<20} {:>10} {:>12} {:>12} {:>12} {:>12.6} {:>6} {:>14.2}",
                    row["stateMachine"].as_str().unwrap_or_default(),
                    row["executions"].as_u64().unwrap_or(0),
                    row["transitions"].as_u64().unwrap_or(0),
                    "",
                    "",
                    row["cost"].as_f64().unwrap_or(0.0),
                    "",
                    row["monthlyServerless"].as_f64().unwrap_or(0.0),
                )?;
            }
        }
        line(&mut out, "total", &summary["total"], String::new())?;
        writeln!(
            out,
            "\nover {:.0} s observed; per month at this rate serverless costs ${:.2}, an always-on server sized for the peak ${:.2}",
            summary["observedSeconds"].as_f64().unwrap_or(0.0),
            total("monthlyServerless"),
            total("monthlyAlwaysOn"),
        )?;
        Ok(ExitCode::SUCCESS)
    }
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
            "transitionPerThousand" => prices.transition_per_thousand = price,
            _ => anyhow::bail!(
                "price sheet {}: unknown key {key:?}; known keys are requestPerMillion, gbSecond, alwaysOnGbHour, transitionPerThousand",
                path.display()
            ),
        }
    }
    Ok(prices)
}
