//! Trace replay of keep-alive policies (bench/prewarm.sh): generates a synthetic trace of
//! function invocations shaped by the Azure Functions 2019 trace's published statistics
//! (../shared/research/workflows-streams-prewarm.md, C2), then replays it through
//! `nimbus_core::prewarm` — the code the pool's reaper runs — on a virtual clock, for
//! fixed keep-alive 5, 10 and 20 minutes and the hybrid histogram policy with and without
//! schedule-aware pre-warming. Prints cold-start percentage, p75 per-function cold-start
//! percentage and idle instance-seconds (time instances spend started but not running an
//! invocation, pre-warm starts included).
//!
//! The instance model is the pool's: one invocation per instance, an invocation takes the
//! most recently used idle instance or starts one (a cold start of `COLD_START`), idle
//! instances stop when the policy says. Each function is replayed alone (the budget is
//! not modelled). The first `--warmup-days` days teach the histograms and are not
//! counted.
//!
//! `bench/prewarm.sh`, or `cargo run --release -p nimbus-core --example prewarm_replay --
//! [--functions N] [--days D] [--warmup-days W] [--seed S] [--trace FILE] [--by-trigger]`;
//! `--by-trigger` splits the cold starts by trigger, `--trace` also writes the
//! generated trace as CSV in the 2021 schema plus the trigger (`app,func,end_timestamp,
//! duration,trigger`), so the real trace can replace it where it can be fetched.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use nimbus_core::prewarm::{
    History, HybridSettings, IdleInstance, Policy, WarmReason, schedule_prewarm,
};

/// What a cold start costs here (BENCHMARKS.md: a fresh Node.js process, about 60 ms).
const COLD_START: Duration = Duration::from_millis(60);
const DAY: f64 = 86_400.0;
/// How long the pool keeps the instance of a function only schedules invoke after a run
/// (`SCHEDULED_KEEP_ALIVE` in nimbus-lambda's pool).
const SCHEDULED_GRACE: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a whole number, not {v}"))
            })
            .unwrap_or(default)
    };
    let n_functions = flag("--functions", 1000) as usize;
    let days = flag("--days", 7) as f64;
    let warmup = flag("--warmup-days", 2) as f64;
    let seed = flag("--seed", 42);
    let trace_path = args
        .iter()
        .position(|a| a == "--trace")
        .and_then(|i| args.get(i + 1));

    let started = Instant::now();
    let measure_from = Duration::from_secs_f64(warmup * DAY);
    let end = Duration::from_secs_f64(days * DAY);
    let env = |name: &str, default: f64| -> f64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    // The pool's settings; REPLAY_MIN_CV, REPLAY_TAIL and REPLAY_MIN_SAMPLES try others.
    let hybrid = |fallback: u64| {
        let defaults = HybridSettings::with_fallback(mins(fallback));
        Policy::Hybrid(HybridSettings {
            min_cv: env("REPLAY_MIN_CV", defaults.min_cv),
            tail: env("REPLAY_TAIL", defaults.tail),
            min_samples: env("REPLAY_MIN_SAMPLES", f64::from(defaults.min_samples)) as u32,
            ..defaults
        })
    };
    let scenarios: Vec<(&str, Policy, bool)> = vec![
        ("fixed 5 min", Policy::Fixed(mins(5)), false),
        ("fixed 10 min", Policy::Fixed(mins(10)), false),
        ("fixed 20 min", Policy::Fixed(mins(20)), false),
        ("hybrid (fallback 5 min)", hybrid(5), false),
        ("hybrid + schedule (fallback 5 min)", hybrid(5), true),
        ("hybrid + schedule (fallback 10 min)", hybrid(10), true),
    ];
    let models = [Model::App, Model::Instance];
    let mut totals: Vec<Vec<Totals>> = models
        .iter()
        .map(|_| scenarios.iter().map(|_| Totals::default()).collect())
        .collect();
    let mut shape = Shape::default();
    let mut trace = trace_path.map(|path| {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).unwrap_or_else(|e| panic!("creating {path}: {e}")),
        );
        let _ = writeln!(out, "app,func,end_timestamp,duration,trigger");
        out
    });
    // One function at a time, replayed under every policy, so the trace never has to
    // fit in memory.
    for idx in 0..n_functions {
        let function = generate(idx, days * DAY, seed);
        shape.add(&function, days);
        if let Some(out) = trace.as_mut() {
            for (start, duration) in &function.arrivals {
                let _ = writeln!(
                    out,
                    "app{idx},func{idx},{:.3},{duration:.3},{}",
                    start + duration,
                    function.trigger.label()
                );
            }
        }
        for (model, totals) in models.iter().zip(&mut totals) {
            for ((_, policy, schedule_aware), total) in scenarios.iter().zip(totals.iter_mut()) {
                let res = replay(
                    &function,
                    policy,
                    *schedule_aware,
                    *model,
                    measure_from,
                    end,
                );
                if res.n_invocations > 0 {
                    total
                        .per_function
                        .push(res.n_cold as f64 / res.n_invocations as f64);
                }
                total.n_invocations += res.n_invocations;
                total.n_cold += res.n_cold;
                total.by_trigger[trigger_idx(function.trigger)] += res.n_cold;
                total.idle_s += res.idle_s;
            }
        }
    }
    if let Some(mut out) = trace {
        let _ = out.flush();
    }
    shape.print(n_functions, days, seed);
    for (model, totals) in models.iter().zip(&mut totals) {
        println!();
        match model {
            Model::App => println!(
                "one instance per function serving all its invocations (the paper's app model; `concurrency: N`):"
            ),
            Model::Instance => println!(
                "one invocation per instance (the pool's default; scale-out starts count as cold):"
            ),
        }
        println!(
            "{:<36} {:>12} {:>9} {:>12} {:>14}",
            "policy", "cold starts", "cold %", "p75 fn cold%", "idle inst-h"
        );
        let (base_cold, base_idle) = (totals[1].n_cold, totals[1].idle_s);
        for ((name, _, _), total) in scenarios.iter().zip(totals.iter_mut()) {
            total.per_function.sort_by(f64::total_cmp);
            let p75 = total
                .per_function
                .get(total.per_function.len() * 3 / 4)
                .copied()
                .unwrap_or(0.0);
            println!(
                "{:<36} {:>12} {:>8.3}% {:>11.1}% {:>14.0}   vs fixed 10 min: cold starts {:>+6.1}%, idle {:>+6.1}%",
                name,
                total.n_cold,
                100.0 * total.n_cold as f64 / total.n_invocations.max(1) as f64,
                100.0 * p75,
                total.idle_s / 3600.0,
                100.0 * (total.n_cold as f64 / base_cold.max(1) as f64 - 1.0),
                100.0 * (total.idle_s / base_idle.max(1.0) - 1.0)
            );
        }
        if args.iter().any(|a| a == "--by-trigger") {
            for ((name, _, _), total) in scenarios.iter().zip(totals.iter()) {
                println!(
                    "{name:<36} cold starts: http {} queue {} timer {} rare {}",
                    total.by_trigger[0],
                    total.by_trigger[1],
                    total.by_trigger[2],
                    total.by_trigger[3]
                );
            }
        }
    }
    eprintln!(
        "{} invocations replayed under {} policies in {:.1} s",
        shape.n_invocations,
        scenarios.len(),
        started.elapsed().as_secs_f64()
    );
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[derive(Default)]
struct Totals {
    n_invocations: u64,
    n_cold: u64,
    idle_s: f64,
    /// Each function's cold-start share.
    per_function: Vec<f64>,
    /// Cold starts by trigger (as `trigger_idx`).
    by_trigger: [u64; 4],
}

fn trigger_idx(trigger: Trigger) -> usize {
    match trigger {
        Trigger::Http => 0,
        Trigger::Queue => 1,
        Trigger::Timer { .. } => 2,
        Trigger::Rare => 3,
    }
}

/// The trigger of a generated function, with what shapes its arrivals.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trigger {
    /// Exact period, ± 1 s.
    Timer { period_s: f64 },
    /// Poisson with a diurnal sinusoid (trough half the peak).
    Http,
    /// On/off bursts (a Markov-modulated Poisson process).
    Queue,
    /// Poisson, rare: mean idle time past the histogram's 4 hours.
    Rare,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Timer { .. } => "timer",
            Trigger::Http => "http",
            Trigger::Queue => "queue",
            Trigger::Rare => "rare",
        }
    }
}

struct Function {
    trigger: Trigger,
    /// Invocation starts (s) and durations (s), in time order.
    arrivals: Vec<(f64, f64)>,
}

/// SplitMix64: a small, fixed-seed generator, so a trace is the same on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.uniform().ln()
    }

    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Log-uniform between `lo` and `hi`.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.uniform() * (hi.ln() - lo.ln())).exp()
    }
}

/// Function `idx` of a trace: average rates follow the trace's classes (45 % at most one an hour,
/// 36 % up to one a minute, 16 % up to one a second, 3 % above), triggers its mix
/// (HTTP 55 %, queue/event 17 %, timer 16 %, the rest Poisson like HTTP), plus 5 % rare
/// functions idle for more than 4 hours at a time; log-normal durations with medians
/// such that about 20 % of functions average under 100 ms and 50 % under 1 s.
fn generate(idx: usize, horizon_s: f64, seed: u64) -> Function {
    // Each function has its own stream, so function `idx` is the same whatever the count.
    let mut rng = Rng(seed ^ (idx as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    {
        let rate_class = rng.uniform();
        // Invocations per second, log-uniform within the class; the busiest are capped
        // at 2/s to keep the replay short (they are always warm under every policy).
        let rate = if rate_class < 0.45 {
            rng.log_uniform(1.0 / (3.0 * DAY), 1.0 / 3600.0)
        } else if rate_class < 0.81 {
            rng.log_uniform(1.0 / 3600.0, 1.0 / 60.0)
        } else if rate_class < 0.97 {
            rng.log_uniform(1.0 / 60.0, 1.0)
        } else {
            rng.log_uniform(1.0, 2.0)
        };
        let pick = rng.uniform();
        let trigger = if pick < 0.05 {
            Trigger::Rare
        } else if pick < 0.21 {
            let periods = [60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, DAY];
            let idx = (rng.uniform() * periods.len() as f64) as usize;
            Trigger::Timer {
                period_s: periods[idx.min(periods.len() - 1)],
            }
        } else if pick < 0.38 {
            Trigger::Queue
        } else {
            Trigger::Http
        };
        // Median duration: log10 normal around 1 s, sd 1.19 (20 % under 100 ms).
        let median_s = 10f64.powf(1.19 * rng.normal()).clamp(0.001, 600.0);
        let mut arrivals = Vec::new();
        let duration = |rng: &mut Rng| median_s * (0.5 * rng.normal()).exp();
        match trigger {
            Trigger::Timer { period_s } => {
                let mut t = rng.uniform() * period_s;
                while t < horizon_s {
                    arrivals.push((t + (rng.uniform() - 0.5) * 2.0, duration(&mut rng)));
                    t += period_s;
                }
            }
            Trigger::Http => {
                // Thinning: candidates at the peak rate, kept with the sinusoid's share.
                let peak = rate * 4.0 / 3.0;
                let phase = rng.uniform() * DAY;
                let mut t = rng.exponential(1.0 / peak);
                while t < horizon_s {
                    let level = 0.75 + 0.25 * (std::f64::consts::TAU * (t + phase) / DAY).sin();
                    if rng.uniform() < level / 1.0 {
                        arrivals.push((t, duration(&mut rng)));
                    }
                    t += rng.exponential(1.0 / peak);
                }
            }
            Trigger::Queue => {
                // Bursts of 20x the mean rate lasting 2 minutes on average, with off
                // periods long enough to make the mean rate.
                let on_mean = 120.0;
                let burst_rate = rate * 20.0;
                let off_mean = on_mean * 19.0;
                let mut t = rng.exponential(off_mean);
                while t < horizon_s {
                    let on_end = t + rng.exponential(on_mean);
                    loop {
                        t += rng.exponential(1.0 / burst_rate);
                        if t >= on_end || t >= horizon_s {
                            break;
                        }
                        arrivals.push((t, duration(&mut rng)));
                    }
                    t = on_end + rng.exponential(off_mean);
                }
            }
            Trigger::Rare => {
                let mean_idle = rng.log_uniform(5.0 * 3600.0, DAY);
                let mut t = rng.exponential(mean_idle);
                while t < horizon_s {
                    arrivals.push((t, duration(&mut rng)));
                    t += rng.exponential(mean_idle);
                }
            }
        }
        arrivals.retain(|(t, _)| *t >= 0.0 && *t < horizon_s);
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        Function { trigger, arrivals }
    }
}

/// The generated trace's shape, to print beside the published statistics.
#[derive(Default)]
struct Shape {
    n_invocations: u64,
    /// Functions per rate class: <= 1/h, <= 1/min, <= 1/s, > 1/s.
    rates: [u64; 4],
    triggers: [u64; 4],
    /// Functions whose average duration is < 100 ms, < 1 s, > 60 s.
    durations: [u64; 3],
}

impl Shape {
    fn add(&mut self, function: &Function, days: f64) {
        let n = function.arrivals.len();
        self.n_invocations += n as u64;
        let rate = n as f64 / (days * DAY);
        let class = [1.0 / 3600.0, 1.0 / 60.0, 1.0]
            .iter()
            .position(|&max| rate <= max)
            .unwrap_or(3);
        self.rates[class] += 1;
        let trigger = match function.trigger {
            Trigger::Http => 0,
            Trigger::Queue => 1,
            Trigger::Timer { .. } => 2,
            Trigger::Rare => 3,
        };
        self.triggers[trigger] += 1;
        if n > 0 {
            let mean = function.arrivals.iter().map(|a| a.1).sum::<f64>() / n as f64;
            self.durations[0] += u64::from(mean < 0.1);
            self.durations[1] += u64::from(mean < 1.0);
            self.durations[2] += u64::from(mean > 60.0);
        }
    }

    fn print(&self, n_functions: usize, days: f64, seed: u64) {
        let pct = |count: u64| 100.0 * count as f64 / n_functions.max(1) as f64;
        println!(
            "trace: {n_functions} functions, {days} days, {} invocations, seed {seed}",
            self.n_invocations
        );
        println!(
            "  rates: {:.0}% <= 1/h (Azure 45), {:.0}% <= 1/min (36), {:.0}% <= 1/s (16), {:.0}% > 1/s (3)",
            pct(self.rates[0]),
            pct(self.rates[1]),
            pct(self.rates[2]),
            pct(self.rates[3])
        );
        println!(
            "  triggers: http+other {:.0}%, queue/event {:.0}%, timer {:.0}% (16), rare > 4 h {:.0}%",
            pct(self.triggers[0]),
            pct(self.triggers[1]),
            pct(self.triggers[2]),
            pct(self.triggers[3])
        );
        println!(
            "  average duration: {:.0}% < 100 ms (20), {:.0}% < 1 s (50), {:.0}% > 60 s (4)",
            pct(self.durations[0]),
            pct(self.durations[1]),
            pct(self.durations[2])
        );
    }
}

/// What an instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    /// One invocation at a time, as the pool by default: concurrent invocations need as
    /// many instances, and scale-out starts are cold.
    Instance,
    /// Every invocation of the function at once, as the paper models an app and as a
    /// `concurrency: N` function with N large enough: cold only when nothing is warm.
    App,
}

struct Replayed {
    n_invocations: u64,
    n_cold: u64,
    idle_s: f64,
}

/// An instance in the replay: busy until `busy_until`, or idle since `idle_since`.
#[derive(Clone, Copy)]
struct Sim {
    /// When it started (counting as idle from then until its first invocation).
    idle_since: Duration,
    held: Option<(Duration, WarmReason)>,
}

/// Replays one function's arrivals through `policy` on a virtual clock: the pool's rules,
/// with the reaper looking exactly when a stop or pre-warm is due.
fn replay(
    function: &Function,
    policy: &Policy,
    schedule_aware: bool,
    model: Model,
    measure_from: Duration,
    end: Duration,
) -> Replayed {
    let mut history = History::for_policy(policy);
    let mut idle: Vec<Sim> = Vec::new();
    // Busy instances by the end of their invocation.
    let mut busy: BinaryHeap<Reverse<Duration>> = BinaryHeap::new();
    let mut res = Replayed {
        n_invocations: 0,
        n_cold: 0,
        idle_s: 0.0,
    };
    // The pool's lead: twice the start time, at least 100 ms.
    let lead = (COLD_START * 2).max(Duration::from_millis(100));
    let counted = |from: Duration, to: Duration| -> f64 {
        to.min(end)
            .saturating_sub(from.max(measure_from))
            .as_secs_f64()
    };
    let period = match function.trigger {
        Trigger::Timer { period_s } if schedule_aware => Some(period_s),
        _ => None,
    };
    for &(start_s, duration_s) in &function.arrivals {
        let now = Duration::from_secs_f64(start_s);
        // Schedule-aware: the scheduler knows the fire is coming, pre-warms lead + 1 s
        // before it and holds the instance 10 s (an idle one has its hold extended).
        let mut schedule = period
            .map(|_| schedule_prewarm(now, lead + Duration::from_secs(1), Duration::from_secs(10)));
        // Everything due before this arrival, in time order: invocation ends, stops and
        // pre-warms.
        loop {
            let next_end = busy.peek().map(|Reverse(t)| *t).filter(|t| *t <= now);
            let n_idle = idle.len();
            let next_stop = idle
                .iter()
                .enumerate()
                .map(|(idx, sim)| {
                    let instance = IdleInstance {
                        last_used: sim.idle_since,
                        held_until: sim.held.map(|h| h.0),
                        held_for: sim.held.map_or(WarmReason::KeepAlive, |h| h.1),
                        is_newest: idx + 1 == n_idle,
                    };
                    // A function only a schedule invokes stops shortly after its run, as
                    // the pool does: the next fire is pre-warmed.
                    let stop = match (period, sim.held) {
                        (Some(_), None) => sim.idle_since + SCHEDULED_GRACE,
                        _ => history.stop_at(policy, instance, lead).0,
                    };
                    (stop, idx)
                })
                .min()
                .filter(|(t, _)| *t <= now);
            let next_prewarm = history
                .next_prewarm(policy, lead)
                .map(|p| p.at)
                .filter(|t| *t <= now);
            let next_schedule = schedule.map(|p| p.at).filter(|t| *t <= now);
            let due = [
                next_end.map(|t| (t, 0)),
                next_stop.map(|(t, _)| (t, 1)),
                next_prewarm.map(|t| (t, 2)),
                next_schedule.map(|t| (t, 3)),
            ]
            .into_iter()
            .flatten()
            .min();
            match due {
                None => break,
                Some((t, 0)) => {
                    busy.pop();
                    history.on_end(t);
                    // In the app model the one instance is idle once nothing is in flight.
                    if model == Model::Instance || busy.is_empty() {
                        idle.push(Sim {
                            idle_since: t,
                            held: None,
                        });
                    }
                }
                Some((t, 1)) => {
                    let (_, idx) = next_stop.expect("a stop is due");
                    let sim = idle.remove(idx);
                    res.idle_s += counted(sim.idle_since, t);
                }
                Some((t, 3)) => {
                    let prewarm = schedule.take().expect("a schedule pre-warm is due");
                    match idle.last_mut() {
                        Some(sim) => sim.held = Some((prewarm.until, prewarm.reason)),
                        None => idle.push(Sim {
                            idle_since: t,
                            held: Some((prewarm.until, prewarm.reason)),
                        }),
                    }
                }
                Some((t, _)) => {
                    if let Some(prewarm) = history.take_prewarm(policy, t, lead)
                        && idle.is_empty()
                    {
                        idle.push(Sim {
                            idle_since: t,
                            held: Some((prewarm.until, prewarm.reason)),
                        });
                    }
                }
            }
        }
        history.on_start(now);
        let measured = now >= measure_from && now < end;
        if measured {
            res.n_invocations += 1;
        }
        let duration = Duration::from_secs_f64(duration_s);
        if model == Model::App && !busy.is_empty() {
            // The function's instance is running: it takes this invocation too.
            busy.push(Reverse(now + duration));
            continue;
        }
        match idle.pop() {
            Some(sim) => {
                res.idle_s += counted(sim.idle_since, now);
                busy.push(Reverse(now + duration));
            }
            None => {
                if measured {
                    res.n_cold += 1;
                }
                busy.push(Reverse(now + COLD_START + duration));
            }
        }
    }
    // Instances still idle at the end count until then (or until they would stop).
    let n_idle = idle.len();
    for (idx, sim) in idle.into_iter().enumerate() {
        let instance = IdleInstance {
            last_used: sim.idle_since,
            held_until: sim.held.map(|h| h.0),
            held_for: sim.held.map_or(WarmReason::KeepAlive, |h| h.1),
            is_newest: idx + 1 == n_idle,
        };
        let stop = match (period, sim.held) {
            (Some(_), None) => sim.idle_since + SCHEDULED_GRACE,
            _ => history.stop_at(policy, instance, lead).0,
        };
        res.idle_s += counted(sim.idle_since, stop.min(end));
    }
    res
}
