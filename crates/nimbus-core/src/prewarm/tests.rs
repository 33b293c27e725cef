use std::time::Duration;

use super::*;

const MIN: Duration = Duration::from_secs(60);
const LEAD: Duration = Duration::from_secs(1);

/// The paper's policy, trusting a histogram after 8 idle times.
fn hybrid() -> Policy {
    Policy::Hybrid(HybridSettings {
        min_samples: 8,
        ..HybridSettings::with_fallback(10 * MIN)
    })
}

/// A fake clock driving one function's history: invocations of `duration` starting at
/// each of `starts`.
fn history_of(starts: &[Duration], duration: Duration) -> History {
    history_in(MIN, starts, duration)
}

fn history_in(bin: Duration, starts: &[Duration], duration: Duration) -> History {
    let mut history = History::new(bin, 240);
    for &start in starts {
        history.on_start(start);
        history.on_end(start + duration);
    }
    history
}

/// Invocations every `period`, `n` of them, lasting one second each.
fn periodic(period: Duration, n: u32) -> History {
    let starts: Vec<Duration> = (0..n).map(|i| period * i).collect();
    history_of(&starts, Duration::from_secs(1))
}

fn idle(last_used: Duration) -> IdleInstance {
    IdleInstance {
        last_used,
        held_until: None,
        held_for: WarmReason::KeepAlive,
        is_newest: true,
    }
}

#[test]
fn the_fixed_policy_keeps_every_idle_instance_its_keep_alive() {
    let policy = Policy::Fixed(5 * MIN);
    let history = periodic(20 * MIN, 20);
    let last = Duration::from_secs(3600);
    assert_eq!(
        history.stop_at(&policy, idle(last), LEAD),
        (last + 5 * MIN, WarmReason::KeepAlive)
    );
    assert_eq!(history.next_prewarm(&policy, LEAD), None);
}

#[test]
fn too_few_idle_times_fall_back_to_the_fixed_keep_alive() {
    let history = periodic(20 * MIN, 8);
    assert_eq!(history.n_samples(), 7);
    assert_eq!(
        history.windows(&hybrid()),
        Windows::Fixed {
            keep_alive: 10 * MIN,
            why: Unpredicted::FewSamples
        }
    );
    assert_eq!(history.next_prewarm(&hybrid(), LEAD), None);
}

#[test]
fn a_periodic_function_is_stopped_after_each_invocation_and_pre_warmed_before_the_next() {
    // Every 20 minutes for a day: every idle time falls in the 19-minute bin (the 1-second
    // invocation ends 19:59 before the next starts).
    let policy = hybrid();
    let mut history = periodic(20 * MIN, 72);
    let windows = history.windows(&policy);
    // Pre-warm window: the bin's lower edge (19 min) less 10 %; keep-alive until its
    // upper edge (20 min) plus 10 %.
    let prewarm = (19 * MIN).mul_f64(0.9);
    assert_eq!(
        windows,
        Windows::Predicted {
            prewarm,
            keep_alive: (20 * MIN).mul_f64(1.1) - prewarm
        }
    );
    let last_end = 71 * 20 * MIN + Duration::from_secs(1);
    // The instance that served the last invocation stops at once.
    assert_eq!(
        history.stop_at(&policy, idle(last_end), LEAD),
        (last_end, WarmReason::Predicted)
    );
    let planned = history.next_prewarm(&policy, LEAD).expect("a pre-warm");
    assert_eq!(planned.at, last_end + prewarm - LEAD);
    assert_eq!(planned.until, last_end + (20 * MIN).mul_f64(1.1));
    assert_eq!(planned.reason, WarmReason::Histogram);
    // Not due yet; then due once, and only once for this idle period.
    assert_eq!(history.take_prewarm(&policy, planned.at - LEAD, LEAD), None);
    assert_eq!(
        history.take_prewarm(&policy, planned.at, LEAD),
        Some(planned)
    );
    assert_eq!(history.take_prewarm(&policy, planned.at + LEAD, LEAD), None);
    // The pre-warmed instance stays until its hold ends.
    let prewarmed = IdleInstance {
        last_used: planned.at + LEAD,
        held_until: Some(planned.until),
        held_for: WarmReason::Histogram,
        is_newest: true,
    };
    assert_eq!(
        history.stop_at(&policy, prewarmed, LEAD),
        (planned.until, WarmReason::Histogram)
    );
    // The next invocation comes on time: its idle time joins the histogram, and after it
    // the next pre-warm is planned from its end.
    let next = 72 * 20 * MIN;
    history.on_start(next);
    assert_eq!(history.next_prewarm(&policy, LEAD), None, "one in flight");
    history.on_end(next + Duration::from_secs(1));
    assert_eq!(history.n_samples(), 72);
    let again = history.next_prewarm(&policy, LEAD).expect("a pre-warm");
    assert_eq!(again.at, next + Duration::from_secs(1) + prewarm - LEAD);
}

#[test]
fn back_to_back_invocations_keep_the_instance_through_a_short_window() {
    // Idle times under a minute: bin 0, no pre-warm window, so the instance stays for
    // the keep-alive window after its own last use.
    let policy = hybrid();
    let starts: Vec<Duration> = (0..50).map(|i| Duration::from_secs(10 * i)).collect();
    let history = history_of(&starts, Duration::from_millis(100));
    let keep_alive = MIN.mul_f64(1.1);
    assert_eq!(
        history.windows(&policy),
        Windows::Predicted {
            prewarm: Duration::ZERO,
            keep_alive
        }
    );
    let last = Duration::from_secs(490);
    assert_eq!(
        history.stop_at(&policy, idle(last), LEAD),
        (last + keep_alive, WarmReason::Predicted)
    );
    assert_eq!(history.next_prewarm(&policy, LEAD), None);
}

#[test]
fn a_pre_warm_window_no_longer_than_a_start_keeps_the_instance() {
    let policy = Policy::Hybrid(HybridSettings {
        bin: Duration::from_millis(100),
        n_bins: 240,
        min_samples: 8,
        ..HybridSettings::with_fallback(MIN)
    });
    // Every 550 ms, 50 ms long: idle times of 500 ms, bin 5: a pre-warm window of 450 ms.
    let starts: Vec<Duration> = (0..20).map(|i| Duration::from_millis(550 * i)).collect();
    let history = history_in(
        Duration::from_millis(100),
        &starts,
        Duration::from_millis(50),
    );
    let Windows::Predicted { prewarm, .. } = history.windows(&policy) else {
        panic!("predicted: {:?}", history.windows(&policy));
    };
    assert_eq!(prewarm, Duration::from_millis(450));
    let slow_start = Duration::from_millis(500);
    assert_eq!(history.next_prewarm(&policy, slow_start), None);
    let last_end = Duration::from_millis(550 * 19 + 50);
    assert_eq!(
        history.stop_at(&policy, idle(last_end), slow_start).1,
        WarmReason::Predicted
    );
    assert!(history.stop_at(&policy, idle(last_end), slow_start).0 > last_end);
    assert!(
        history
            .next_prewarm(&policy, Duration::from_millis(100))
            .is_some()
    );
}

#[test]
fn idle_times_spread_over_the_range_are_irregular() {
    // Idle times stepping through every bin once: a flat histogram.
    let mut starts = Vec::new();
    let mut t = Duration::ZERO;
    for i in 0..240u32 {
        starts.push(t);
        t += MIN * i + Duration::from_secs(30);
    }
    let history = history_of(&starts, Duration::ZERO);
    assert_eq!(
        history.windows(&hybrid()),
        Windows::Fixed {
            keep_alive: 10 * MIN,
            why: Unpredicted::Irregular
        }
    );
}

#[test]
fn idle_times_past_the_range_are_forecast_from_the_recent_median() {
    // Once every 6 hours, past the 4-hour histogram.
    let history = periodic(6 * 60 * MIN, 12);
    let idle = 6 * 60 * MIN - Duration::from_secs(1);
    assert_eq!(
        history.windows(&hybrid()),
        Windows::Predicted {
            prewarm: idle.mul_f64(0.85),
            keep_alive: idle.mul_f64(0.3)
        }
    );
}

#[test]
fn overlapping_invocations_make_one_idle_time() {
    let mut history = History::new(MIN, 240);
    history.on_start(Duration::ZERO);
    history.on_start(Duration::from_secs(1));
    history.on_end(Duration::from_secs(2));
    assert_eq!(history.idle_since(), None, "one still in flight");
    history.on_end(Duration::from_secs(3));
    assert_eq!(history.idle_since(), Some(Duration::from_secs(3)));
    history.on_start(Duration::from_secs(200));
    assert_eq!(history.n_samples(), 1);
}

#[test]
fn a_schedule_pre_warm_starts_a_lead_before_the_fire() {
    let fire = 10 * MIN;
    assert_eq!(
        schedule_prewarm(fire, Duration::from_secs(2), Duration::from_secs(5)),
        Prewarm {
            at: fire - Duration::from_secs(2),
            until: fire + Duration::from_secs(5),
            reason: WarmReason::Schedule
        }
    );
}

#[test]
fn full_bins_halve_and_keep_their_shape() {
    let mut history = History::new(Duration::from_secs(1), 4);
    for _ in 0..(u32::from(u16::MAX) + 10) {
        history.record_idle(Duration::from_millis(1500));
    }
    history.record_idle(Duration::from_millis(500));
    assert!(history.bins[1] < u16::MAX && history.bins[1] > 30_000);
    assert_eq!(history.bins[0], 1);
}

#[test]
fn long_idle_times_that_do_not_repeat_are_not_forecast() {
    let hours = [5u64, 9, 6, 14, 7, 11, 5, 8, 20, 6];
    let mut starts = vec![Duration::ZERO];
    for h in hours {
        let last = *starts.last().expect("one");
        starts.push(last + Duration::from_secs(3600 * h));
    }
    let history = history_of(&starts, Duration::from_secs(1));
    assert_eq!(
        history.windows(&hybrid()),
        Windows::Fixed {
            keep_alive: 10 * MIN,
            why: Unpredicted::Irregular
        }
    );
}

#[test]
fn a_scale_outs_extra_instances_keep_the_fixed_keep_alive() {
    let policy = hybrid();
    let starts: Vec<Duration> = (0..50).map(|i| Duration::from_secs(10 * i)).collect();
    let history = history_of(&starts, Duration::from_millis(100));
    let last = Duration::from_secs(400);
    let extra = IdleInstance {
        is_newest: false,
        ..idle(last)
    };
    assert_eq!(
        history.stop_at(&policy, extra, LEAD),
        (last + 10 * MIN, WarmReason::KeepAlive)
    );
}

#[test]
fn a_pre_warm_looked_at_after_its_window_is_dropped() {
    let policy = hybrid();
    let mut history = periodic(20 * MIN, 72);
    let planned = history.next_prewarm(&policy, LEAD).expect("a pre-warm");
    assert_eq!(history.take_prewarm(&policy, planned.until, LEAD), None);
    assert_eq!(
        history.next_prewarm(&policy, LEAD),
        None,
        "not planned again"
    );
}
