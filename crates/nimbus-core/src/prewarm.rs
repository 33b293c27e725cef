//! When to keep a function's idle instances warm and when to start one ahead of its next
//! invocation: the keep-alive policy behind the pool's reaper and pre-warm timer.
//!
//! `Policy::Hybrid` is the hybrid histogram policy of Azure Functions ("Serverless in the
//! Wild", Shahrad et al., USENIX ATC'20): per function, a histogram of *idle times* (the
//! end of the last invocation in flight to the start of the next one). When it is
//! representative, an instance is stopped right after an invocation, started again just
//! before the histogram's 5th percentile (the *pre-warm window*, less a 10 % margin) and
//! kept until its 99th percentile (plus 10 %). A function too irregular to predict (the
//! counts spread over many bins) or with too few idle times falls back to the fixed
//! keep-alive; one whose idle times are mostly past the histogram's range is predicted
//! from the median of its last long idle times (the paper forecasts these with ARIMA).
//!
//! Everything here is pure: time is a `Duration` since an origin the caller picks (the
//! pool's start, or a simulation's virtual clock), so the same code runs in the pool and
//! in `bench/prewarm`'s trace replay.

use std::collections::VecDeque;
use std::time::Duration;

/// How long a function's idle instances stay warm.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Every idle instance is stopped after this long unused (`--idle-timeout`).
    Fixed(Duration),
    /// The hybrid histogram policy, falling back to a fixed keep-alive.
    Hybrid(HybridSettings),
}

/// The settings of the hybrid histogram policy.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridSettings {
    /// The width of one histogram bin (one minute in the paper).
    pub bin: Duration,
    /// Bins in the histogram (240: four hours of one-minute bins).
    pub n_bins: usize,
    /// The keep-alive of functions the histogram cannot predict yet.
    pub fallback: Duration,
    /// Idle times needed before the histogram is trusted.
    pub min_samples: u32,
    /// The coefficient of variation of the bin counts below which the histogram is too
    /// flat to predict from (the paper's representativeness check).
    pub min_cv: f64,
    /// The percentile of idle times the pre-warm window ends at (the paper: 5th).
    pub head: f64,
    /// The percentile of idle times the keep-alive window ends at (the paper: 99th).
    pub tail: f64,
}

impl HybridSettings {
    /// The paper's settings (one-minute bins over four hours, the 5th and 99th
    /// percentiles), with `fallback` for functions it cannot predict; the trust
    /// thresholds (50 idle times, a coefficient of variation of 3) are the ones the trace
    /// replay (bench/prewarm.sh) found to cut cold starts without adding idle time.
    pub fn with_fallback(fallback: Duration) -> HybridSettings {
        HybridSettings {
            bin: Duration::from_secs(60),
            n_bins: 240,
            fallback,
            min_samples: 50,
            min_cv: 3.0,
            head: 0.05,
            tail: 0.99,
        }
    }

    /// The histogram's range: idle times at or past it are out of bounds.
    pub fn range(&self) -> Duration {
        self.bin * self.n_bins as u32
    }
}

/// The margin the windows get: the pre-warm window 10 % shorter, the keep-alive window
/// 10 % longer.
const MARGIN: f64 = 0.10;
/// Long idle times remembered for the out-of-bounds forecast.
const N_RECENT_OUT_OF_BOUNDS: usize = 32;
/// Out-of-bounds idle times are predicted when they are at least this share of all.
const OUT_OF_BOUNDS_SHARE: f64 = 0.5;
/// The window around a forecast long idle time: from 15 % before it to 15 % after; the
/// recent long idle times must spread no wider than that to be forecast.
const FORECAST_MARGIN: f64 = 0.15;

/// Why an instance is warm, for `nimbus top` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarmReason {
    /// Running an invocation.
    Busy,
    /// One of the function's `provisionedConcurrency` instances.
    Provisioned,
    /// Kept after its last invocation for the fixed keep-alive.
    KeepAlive,
    /// Kept after its last invocation for the window the idle-time histogram predicts.
    Predicted,
    /// Started ahead of the next invocation the idle-time histogram predicts.
    Histogram,
    /// Started ahead of the function's schedule.
    Schedule,
    /// Started for messages waiting in the function's queue.
    Backlog,
    /// Started because a workflow's Task before this function's is running.
    Workflow,
}

impl WarmReason {
    /// Every reason, in the order `nimbus top` lists them.
    pub const ALL: [WarmReason; 8] = [
        WarmReason::Busy,
        WarmReason::Provisioned,
        WarmReason::KeepAlive,
        WarmReason::Predicted,
        WarmReason::Histogram,
        WarmReason::Schedule,
        WarmReason::Backlog,
        WarmReason::Workflow,
    ];

    /// The short name in `nimbus top`, the admin API and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            WarmReason::Busy => "busy",
            WarmReason::Provisioned => "provisioned",
            WarmReason::KeepAlive => "keep-alive",
            WarmReason::Predicted => "predicted-keep-alive",
            WarmReason::Histogram => "pre-warmed-histogram",
            WarmReason::Schedule => "pre-warmed-schedule",
            WarmReason::Backlog => "pre-warmed-backlog",
            WarmReason::Workflow => "pre-warmed-workflow",
        }
    }

    /// Whether an instance warm for this reason is warm on a prediction, so counts
    /// against the pre-warm memory budget.
    pub fn is_predicted(self) -> bool {
        matches!(
            self,
            WarmReason::Predicted
                | WarmReason::Histogram
                | WarmReason::Schedule
                | WarmReason::Backlog
                | WarmReason::Workflow
        )
    }
}

/// How many of a function's instances are warm for each reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmCounts([u32; 8]);

impl WarmCounts {
    /// Counts one more instance warm for `reason`.
    pub fn add(&mut self, reason: WarmReason) {
        self.0[reason as usize] += 1;
    }

    /// Instances warm for `reason`.
    pub fn get(&self, reason: WarmReason) -> u32 {
        self.0[reason as usize]
    }

    /// The reasons with at least one instance, in `WarmReason::ALL` order.
    pub fn iter(&self) -> impl Iterator<Item = (WarmReason, u32)> + '_ {
        WarmReason::ALL
            .into_iter()
            .map(|reason| (reason, self.get(reason)))
            .filter(|(_, n)| *n > 0)
    }
}

/// What the history of a function predicts for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Windows {
    /// Keep idle instances this long after their last invocation: the fixed policy, or
    /// the hybrid policy's fallback (`why` says which).
    Fixed {
        /// How long an idle instance stays.
        keep_alive: Duration,
        /// Why no prediction is made.
        why: Unpredicted,
    },
    /// After the function's last invocation ends, no instance until `prewarm` has passed,
    /// then one until `prewarm + keep_alive`.
    Predicted {
        /// The pre-warm window (zero: keep the instance from the end on).
        prewarm: Duration,
        /// The keep-alive window after it.
        keep_alive: Duration,
    },
}

/// Why the hybrid policy keeps a function for a fixed time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpredicted {
    /// The policy is `Fixed`.
    FixedPolicy,
    /// Fewer idle times than `min_samples`.
    FewSamples,
    /// The idle times spread too evenly over the histogram to predict.
    Irregular,
}

/// An idle instance, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleInstance {
    /// When its last invocation ended, or when it became ready if it ran none.
    pub last_used: Duration,
    /// Held warm until then by a pre-warm (`None`: it has served since, or never was).
    pub held_until: Option<Duration>,
    /// The reason of the hold.
    pub held_for: WarmReason,
    /// Whether it is the function's most recently used idle instance, the one its next
    /// invocation takes. The histogram predicts when the function next needs *an*
    /// instance: it rules this one; the others (a scale-out's) get the fixed keep-alive.
    pub is_newest: bool,
}

/// A decision to start an instance ahead of an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prewarm {
    /// When to start it.
    pub at: Duration,
    /// Until when to keep it if nothing uses it.
    pub until: Duration,
    /// Why.
    pub reason: WarmReason,
}

/// The idle-time histogram of one function and what it needs to compute idle times:
/// about half a KiB (`n_bins` u16 counts) plus the last long idle times.
#[derive(Debug, Clone)]
pub struct History {
    bin: Duration,
    bins: Vec<u16>,
    n_samples: u32,
    n_out_of_bounds: u32,
    recent_out_of_bounds: VecDeque<Duration>,
    in_flight: u32,
    /// When the last invocation in flight ended.
    last_end: Option<Duration>,
    /// The `last_end` a histogram pre-warm was already started for.
    prewarmed_for: Option<Duration>,
    /// `windows` as last computed; cleared by each new idle time (a history answers for
    /// one policy).
    windows: std::cell::Cell<Option<Windows>>,
}

impl History {
    /// An empty history of `n_bins` bins `bin` wide (the fixed policy reads none, but
    /// one is kept the same way).
    pub fn new(bin: Duration, n_bins: usize) -> History {
        History {
            bin: bin.max(Duration::from_millis(1)),
            bins: vec![0; n_bins.max(1)],
            n_samples: 0,
            n_out_of_bounds: 0,
            recent_out_of_bounds: VecDeque::new(),
            in_flight: 0,
            last_end: None,
            prewarmed_for: None,
            windows: std::cell::Cell::new(None),
        }
    }

    /// An empty history for `policy` (the fixed policy reads none; one bin is kept).
    pub fn for_policy(policy: &Policy) -> History {
        match policy {
            Policy::Fixed(_) => History::new(Duration::from_secs(60), 1),
            Policy::Hybrid(settings) => History::new(settings.bin, settings.n_bins),
        }
    }

    /// An invocation started at `now`: if none was in flight, the time since the last
    /// one ended is an idle time.
    pub fn on_start(&mut self, now: Duration) {
        if self.in_flight == 0
            && let Some(last_end) = self.last_end
        {
            self.record_idle(now.saturating_sub(last_end));
        }
        self.in_flight += 1;
    }

    /// An invocation ended at `now`.
    pub fn on_end(&mut self, now: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.last_end = Some(now);
        }
    }

    /// Idle times recorded.
    pub fn n_samples(&self) -> u32 {
        self.n_samples
    }

    /// When the last invocation in flight ended; `None` while one is in flight or before
    /// the first.
    pub fn idle_since(&self) -> Option<Duration> {
        match self.in_flight {
            0 => self.last_end,
            _ => None,
        }
    }

    fn record_idle(&mut self, idle: Duration) {
        self.windows.set(None);
        self.n_samples = self.n_samples.saturating_add(1);
        let idx = (idle.as_nanos() / self.bin.as_nanos()) as usize;
        match self.bins.get_mut(idx) {
            Some(count) => {
                if *count == u16::MAX {
                    // Halve every count: the shape stays, older idle times weigh less.
                    for count in &mut self.bins {
                        *count /= 2;
                    }
                }
                self.bins[idx] += 1;
            }
            None => {
                self.n_out_of_bounds = self.n_out_of_bounds.saturating_add(1);
                if self.recent_out_of_bounds.len() == N_RECENT_OUT_OF_BOUNDS {
                    self.recent_out_of_bounds.pop_front();
                }
                self.recent_out_of_bounds.push_back(idle);
            }
        }
    }

    /// What the history predicts under `policy` (the same policy every call: the answer
    /// is kept until the next idle time).
    pub fn windows(&self, policy: &Policy) -> Windows {
        if let Some(windows) = self.windows.get() {
            return windows;
        }
        let windows = self.compute_windows(policy);
        self.windows.set(Some(windows));
        windows
    }

    fn compute_windows(&self, policy: &Policy) -> Windows {
        let settings = match policy {
            Policy::Fixed(keep_alive) => {
                return Windows::Fixed {
                    keep_alive: *keep_alive,
                    why: Unpredicted::FixedPolicy,
                };
            }
            Policy::Hybrid(settings) => settings,
        };
        let fallback = |why| Windows::Fixed {
            keep_alive: settings.fallback,
            why,
        };
        if self.n_samples < settings.min_samples {
            return fallback(Unpredicted::FewSamples);
        }
        if f64::from(self.n_out_of_bounds) >= OUT_OF_BOUNDS_SHARE * f64::from(self.n_samples) {
            let mut recent: Vec<Duration> = self.recent_out_of_bounds.iter().copied().collect();
            recent.sort();
            let median = recent[recent.len() / 2];
            // Only long idle times that repeat are worth a forecast: with their middle
            // half spread wider than `FORECAST_MARGIN` around the median, a window that
            // narrow would mostly miss and hold an instance for nothing.
            let spread = recent[recent.len() * 3 / 4].saturating_sub(recent[recent.len() / 4]);
            if recent.len() < 3 || spread > median.mul_f64(FORECAST_MARGIN) {
                return fallback(Unpredicted::Irregular);
            }
            return Windows::Predicted {
                prewarm: median.mul_f64(1.0 - FORECAST_MARGIN),
                keep_alive: median.mul_f64(2.0 * FORECAST_MARGIN),
            };
        }
        let in_range: u64 = self.bins.iter().map(|&c| u64::from(c)).sum();
        if in_range == 0 || bin_counts_cv(&self.bins) < settings.min_cv {
            return fallback(Unpredicted::Irregular);
        }
        let head = percentile_bin(&self.bins, in_range, settings.head);
        let tail = percentile_bin(&self.bins, in_range, settings.tail);
        // The head bin's lower edge and the tail bin's upper edge: an idle time in either
        // bin is then inside the window.
        let prewarm = (self.bin * head as u32).mul_f64(1.0 - MARGIN);
        let end = (self.bin * (tail as u32 + 1)).mul_f64(1.0 + MARGIN);
        Windows::Predicted {
            prewarm,
            keep_alive: end.saturating_sub(prewarm),
        }
    }

    /// When an idle instance of this function is to stop, and why it is warm until then.
    /// A pre-warmed instance nothing has used is kept until its hold ends; with a
    /// pre-warm window, the instance that served the last invocation stops at once
    /// (another starts when the window ends); otherwise an instance stays the keep-alive
    /// after its own last use. A pre-warm window no longer than `lead` (the time a start
    /// takes) is not worth a stop and a start: the instance stays through it. Only the
    /// newest idle instance of a function with nothing in flight follows the prediction;
    /// the others stay the fixed keep-alive (the fallback), as a scale-out's extra
    /// instances say nothing about when the function is next invoked.
    pub fn stop_at(
        &self,
        policy: &Policy,
        instance: IdleInstance,
        lead: Duration,
    ) -> (Duration, WarmReason) {
        if let Some(until) = instance.held_until {
            return (until, instance.held_for);
        }
        let fallback = match policy {
            Policy::Fixed(keep_alive) => *keep_alive,
            Policy::Hybrid(settings) => settings.fallback,
        };
        let predicted = instance.is_newest && self.idle_since().is_some();
        match self.windows(policy) {
            Windows::Fixed { keep_alive, .. } => {
                (instance.last_used + keep_alive, WarmReason::KeepAlive)
            }
            Windows::Predicted { .. } if !predicted => {
                (instance.last_used + fallback, WarmReason::KeepAlive)
            }
            Windows::Predicted {
                prewarm,
                keep_alive,
            } => match self.idle_since() {
                Some(last_end) if prewarm > lead => (last_end, WarmReason::Predicted),
                _ => (
                    instance.last_used + prewarm + keep_alive,
                    WarmReason::Predicted,
                ),
            },
        }
    }

    /// The pre-warm the history asks for now or later, if any: with a pre-warm window,
    /// longer than `lead` (the time a start takes), an instance started `lead` before the
    /// window ends and
    /// kept to the end of the keep-alive window. `None` while an invocation is in flight,
    /// before the first, and once the pre-warm for this idle period is taken.
    pub fn next_prewarm(&self, policy: &Policy, lead: Duration) -> Option<Prewarm> {
        let last_end = self.idle_since()?;
        if self.prewarmed_for == Some(last_end) {
            return None;
        }
        match self.windows(policy) {
            Windows::Predicted {
                prewarm,
                keep_alive,
            } if prewarm > lead => Some(Prewarm {
                at: last_end + prewarm - lead,
                until: last_end + prewarm + keep_alive,
                reason: WarmReason::Histogram,
            }),
            _ => None,
        }
    }

    /// The pre-warm due at `now`, marked as taken: the caller starts the instance. One
    /// whose window has passed is marked taken too, and `None`.
    pub fn take_prewarm(
        &mut self,
        policy: &Policy,
        now: Duration,
        lead: Duration,
    ) -> Option<Prewarm> {
        let prewarm = self.next_prewarm(policy, lead)?;
        if now < prewarm.at {
            return None;
        }
        self.prewarmed_for = self.last_end;
        // A window already over (the caller looked late) is dropped, not retried.
        (now < prewarm.until).then_some(prewarm)
    }
}

/// The pre-warm ahead of a schedule's fire at `fire`: started `lead` before it and kept
/// `grace` past it, enough for the fire's invocation to reach the pool.
pub fn schedule_prewarm(fire: Duration, lead: Duration, grace: Duration) -> Prewarm {
    Prewarm {
        at: fire.saturating_sub(lead),
        until: fire + grace,
        reason: WarmReason::Schedule,
    }
}

/// The smallest bin at or past which `q` of the `total` counts lie.
fn percentile_bin(bins: &[u16], total: u64, q: f64) -> usize {
    let target = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (idx, &count) in bins.iter().enumerate() {
        seen += u64::from(count);
        if seen >= target {
            return idx;
        }
    }
    bins.len() - 1
}

/// The coefficient of variation (standard deviation over mean) of the bin counts: high
/// when the idle times gather in a few bins, low when they spread over the range.
fn bin_counts_cv(bins: &[u16]) -> f64 {
    let n = bins.len() as f64;
    let mean = bins.iter().map(|&c| f64::from(c)).sum::<f64>() / n;
    if mean == 0.0 {
        return 0.0;
    }
    let variance = bins
        .iter()
        .map(|&c| (f64::from(c) - mean).powi(2))
        .sum::<f64>()
        / n;
    variance.sqrt() / mean
}

#[cfg(test)]
mod tests;
