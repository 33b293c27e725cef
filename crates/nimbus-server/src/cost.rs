//! What recorded invocations would cost on AWS Lambda, beside an always-on server sized
//! for the same peak: the one computation behind `nimbus cost` and the dashboard's cost page.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use nimbus_store::{InvocationRecord, WorkflowUsage};

/// Prices in US dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// Lambda, x86, per million requests.
    pub request_per_million: f64,
    /// Lambda, x86, per GB-second of billed duration.
    pub gb_second: f64,
    /// An always-on VM, per GB of memory per hour (m6i.large on-demand: $0.096/h for 8 GiB).
    pub always_on_gb_hour: f64,
    /// Step Functions STANDARD workflows, per thousand state transitions.
    pub transition_per_thousand: f64,
}

/// AWS Lambda's list prices (x86) and an m6i.large's.
pub const DEFAULT_PRICES: Prices = Prices {
    request_per_million: 0.20,
    gb_second: 0.000_016_666_7,
    always_on_gb_hour: 0.012,
    transition_per_thousand: 0.025,
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

/// The cost of `records` and of the state transitions in `workflows` (those since `since`,
/// described as `since_text`) at `prices`, as the JSON `nimbus cost --json` prints: per
/// function, per state machine and in total, with the month at this rate serverless and
/// always-on.
pub fn summary(
    records: &[InvocationRecord],
    workflows: &[WorkflowUsage],
    now: SystemTime,
    since_text: &str,
    prices: &Prices,
) -> serde_json::Value {
    let usage = usage_by_function(records);
    // The bill so far covers the span from the first recorded invocation or execution to now.
    let observed = records
        .iter()
        .map(|r| r.start)
        .chain(workflows.iter().map(|w| w.first_start))
        .min()
        .and_then(|first| now.duration_since(first).ok())
        .unwrap_or_default()
        .max(Duration::from_secs(1));
    let month = Duration::from_secs_f64(HOURS_PER_MONTH * 3600.0);
    let scale = month.as_secs_f64() / observed.as_secs_f64();
    let rows: Vec<serde_json::Value> = usage
        .iter()
        .map(|(function, u)| row(function, u, prices, scale))
        .collect();
    let total = |key: &str| rows.iter().filter_map(|r| r[key].as_f64()).sum::<f64>();
    let totals = serde_json::json!({
        "requests": total("requests"),
        "gbSeconds": total("gbSeconds"),
        "requestCost": total("requestCost"),
        "computeCost": total("computeCost"),
        "cost": total("cost"),
        "monthlyServerless": total("monthlyServerless"),
        "monthlyAlwaysOn": total("monthlyAlwaysOn"),
    });
    let mut summary = serde_json::json!({
        "since": since_text,
        "observedSeconds": observed.as_secs_f64(),
        "prices": {
            "requestPerMillion": prices.request_per_million,
            "gbSecond": prices.gb_second,
            "alwaysOnGbHour": prices.always_on_gb_hour,
        },
        "functions": rows,
        "total": totals,
    });
    add_workflows(&mut summary, workflows, prices, scale);
    summary
}

/// Adds what the workflows' state transitions cost to a summary: a `workflows` row per
/// state machine (priced as STANDARD workflows, by transition) and their share of the totals.
fn add_workflows(
    summary: &mut serde_json::Value,
    usage: &[WorkflowUsage],
    prices: &Prices,
    scale: f64,
) {
    let rows: Vec<serde_json::Value> = usage
        .iter()
        .map(|u| {
            let cost = u.transitions as f64 * prices.transition_per_thousand / 1000.0;
            serde_json::json!({
                "stateMachine": nimbus_core::workflow::machine::machine_name(&u.machine_arn),
                "executions": u.executions,
                "transitions": u.transitions,
                "cost": cost,
                "monthlyServerless": cost * scale,
            })
        })
        .collect();
    let sum = |key: &str| rows.iter().filter_map(|r| r[key].as_f64()).sum::<f64>();
    let (cost, monthly) = (sum("cost"), sum("monthlyServerless"));
    summary["prices"]["transitionPerThousand"] = serde_json::json!(prices.transition_per_thousand);
    summary["total"]["transitionCost"] = serde_json::json!(cost);
    for (key, add) in [("cost", cost), ("monthlyServerless", monthly)] {
        let before = summary["total"][key].as_f64().unwrap_or(0.0);
        summary["total"][key] = serde_json::json!(before + add);
    }
    summary["workflows"] = serde_json::Value::Array(rows);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(transitions: u64, first_start: SystemTime) -> WorkflowUsage {
        WorkflowUsage {
            machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:reshape".to_owned(),
            executions: 1,
            transitions,
            first_start,
        }
    }

    /// An app of Pass-only state machines records no invocation; its month is projected
    /// from the executions' own window, not from a one-second floor.
    #[test]
    fn workflows_alone_project_the_month_from_their_first_execution() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour_ago = now - Duration::from_secs(3600);
        let summary = summary(&[], &[machine(4000, hour_ago)], now, "1h", &DEFAULT_PRICES);
        assert_eq!(summary["observedSeconds"], 3600.0);
        let cost = summary["total"]["cost"].as_f64().unwrap_or_default();
        let monthly = summary["total"]["monthlyServerless"]
            .as_f64()
            .unwrap_or_default();
        assert!((cost - 0.1).abs() < 1e-12, "{summary}");
        assert!((monthly - 0.1 * HOURS_PER_MONTH).abs() < 1e-9, "{summary}");
    }
}
