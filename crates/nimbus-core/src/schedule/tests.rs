//! Data-driven tests for schedule expressions: fire times from a fixed start, and errors.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use expect_test::{Expect, expect};

use super::ScheduleExpression;
use crate::time::{civil_from_days, days_from_civil};

/// 2024-02-27 10:17:30 UTC, a Tuesday two days before a leap day.
fn start() -> SystemTime {
    let days = days_from_civil(2024, 2, 27);
    UNIX_EPOCH + Duration::from_secs(days as u64 * 86_400 + 10 * 3600 + 17 * 60 + 30)
}

/// `2024-02-29 12:00 Thu`.
fn show(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let weekday =
        ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][(days + 4).rem_euclid(7) as usize];
    let secs_of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}{} {weekday}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        match secs_of_day % 60 {
            0 => String::new(),
            s => format!(":{s:02}"),
        },
    )
}

/// One line per expression: the next three fire times after `start()`, or the error.
fn check(expressions: &[&str], expect: Expect) {
    let mut out = String::new();
    for text in expressions {
        let _ = write!(out, "{text:<32} ");
        match ScheduleExpression::parse(text) {
            Ok(expression) => {
                let mut after = start();
                let mut times = Vec::new();
                for _ in 0..3 {
                    match expression.next_after(after) {
                        Some(next) => {
                            times.push(show(next));
                            after = next;
                        }
                        None => {
                            times.push("never".to_owned());
                            break;
                        }
                    }
                }
                let _ = writeln!(out, "{}", times.join(" | "));
            }
            Err(message) => {
                let _ = writeln!(out, "error: {message}");
            }
        }
    }
    expect.assert_eq(&out);
}

#[test]
fn rates_count_from_the_previous_fire_time() {
    check(
        &[
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 hour)",
            "rate(2 days)",
            " rate( 10 minutes ) ",
            "rate(1 second)",
            "rate(90 seconds)",
        ],
        expect![[r#"
            rate(1 minute)                   2024-02-27 10:18:30 Tue | 2024-02-27 10:19:30 Tue | 2024-02-27 10:20:30 Tue
            rate(5 minutes)                  2024-02-27 10:22:30 Tue | 2024-02-27 10:27:30 Tue | 2024-02-27 10:32:30 Tue
            rate(1 hour)                     2024-02-27 11:17:30 Tue | 2024-02-27 12:17:30 Tue | 2024-02-27 13:17:30 Tue
            rate(2 days)                     2024-02-29 10:17:30 Thu | 2024-03-02 10:17:30 Sat | 2024-03-04 10:17:30 Mon
             rate( 10 minutes )              2024-02-27 10:27:30 Tue | 2024-02-27 10:37:30 Tue | 2024-02-27 10:47:30 Tue
            rate(1 second)                   2024-02-27 10:17:31 Tue | 2024-02-27 10:17:32 Tue | 2024-02-27 10:17:33 Tue
            rate(90 seconds)                 2024-02-27 10:19 Tue | 2024-02-27 10:20:30 Tue | 2024-02-27 10:22 Tue
        "#]],
    );
}

#[test]
fn rates_display_as_written() {
    let shown: Vec<String> = [
        "rate(1 minute)",
        "rate(90 minutes)",
        "rate(3 hours)",
        "rate(1 day)",
        "rate(1 second)",
        "rate(45 seconds)",
        "rate(120 seconds)",
    ]
    .iter()
    .filter_map(|text| ScheduleExpression::parse(text).ok())
    .map(|expression| expression.to_string())
    .collect();
    assert_eq!(
        shown,
        [
            "rate(1 minute)",
            "rate(90 minutes)",
            "rate(3 hours)",
            "rate(1 day)",
            "rate(1 second)",
            "rate(45 seconds)",
            "rate(2 minutes)"
        ]
    );
}

#[test]
fn cron_plain_fields() {
    check(
        &[
            "cron(0 12 * * ? *)",
            "cron(* * * * ? *)",
            "cron(*/15 * * * ? *)",
            "cron(10/15 * * * ? *)",
            "cron(0 9-11/2 * * ? *)",
            "cron(5,35 14 * * ? *)",
            "cron(0 0 1 * ? *)",
            "cron(0 0 1 JAN,jul ? *)",
            "cron(0 0 1 MAR-MAY ? *)",
            "cron(30 2 29 2 ? *)",
            "cron(0 0 31 * ? *)",
            "cron(0 0 1 1 ? 2026,2030)",
            "cron(0 0 1 1 ? 2020-2023)",
            "cron(0 0 30 2 ? *)",
            "cron(17 10 27 2 ? 2024)",
            "cron(18 10 27 2 ? 2024)",
        ],
        expect![[r#"
            cron(0 12 * * ? *)               2024-02-27 12:00 Tue | 2024-02-28 12:00 Wed | 2024-02-29 12:00 Thu
            cron(* * * * ? *)                2024-02-27 10:18 Tue | 2024-02-27 10:19 Tue | 2024-02-27 10:20 Tue
            cron(*/15 * * * ? *)             2024-02-27 10:30 Tue | 2024-02-27 10:45 Tue | 2024-02-27 11:00 Tue
            cron(10/15 * * * ? *)            2024-02-27 10:25 Tue | 2024-02-27 10:40 Tue | 2024-02-27 10:55 Tue
            cron(0 9-11/2 * * ? *)           2024-02-27 11:00 Tue | 2024-02-28 09:00 Wed | 2024-02-28 11:00 Wed
            cron(5,35 14 * * ? *)            2024-02-27 14:05 Tue | 2024-02-27 14:35 Tue | 2024-02-28 14:05 Wed
            cron(0 0 1 * ? *)                2024-03-01 00:00 Fri | 2024-04-01 00:00 Mon | 2024-05-01 00:00 Wed
            cron(0 0 1 JAN,jul ? *)          2024-07-01 00:00 Mon | 2025-01-01 00:00 Wed | 2025-07-01 00:00 Tue
            cron(0 0 1 MAR-MAY ? *)          2024-03-01 00:00 Fri | 2024-04-01 00:00 Mon | 2024-05-01 00:00 Wed
            cron(30 2 29 2 ? *)              2024-02-29 02:30 Thu | 2028-02-29 02:30 Tue | 2032-02-29 02:30 Sun
            cron(0 0 31 * ? *)               2024-03-31 00:00 Sun | 2024-05-31 00:00 Fri | 2024-07-31 00:00 Wed
            cron(0 0 1 1 ? 2026,2030)        2026-01-01 00:00 Thu | 2030-01-01 00:00 Tue | never
            cron(0 0 1 1 ? 2020-2023)        never
            cron(0 0 30 2 ? *)               never
            cron(17 10 27 2 ? 2024)          never
            cron(18 10 27 2 ? 2024)          2024-02-27 10:18 Tue | never
        "#]],
    );
}

#[test]
fn cron_days_of_the_week() {
    check(
        &[
            "cron(0 8 ? * MON-FRI *)",
            "cron(0 8 ? * 2-6 *)",
            "cron(0 18 ? * SUN *)",
            "cron(0 18 ? * 1,7 *)",
            "cron(0 18 ? * sat,SUN *)",
            "cron(0 0 ? * L *)",
            "cron(0 0 ? * 6L *)",
            "cron(0 0 ? * FRIL *)",
            "cron(0 0 ? * 3#2 *)",
            "cron(0 0 ? * MON#1,FRI#5 *)",
            "cron(0 0 ? * */3 *)",
        ],
        expect![[r#"
            cron(0 8 ? * MON-FRI *)          2024-02-28 08:00 Wed | 2024-02-29 08:00 Thu | 2024-03-01 08:00 Fri
            cron(0 8 ? * 2-6 *)              2024-02-28 08:00 Wed | 2024-02-29 08:00 Thu | 2024-03-01 08:00 Fri
            cron(0 18 ? * SUN *)             2024-03-03 18:00 Sun | 2024-03-10 18:00 Sun | 2024-03-17 18:00 Sun
            cron(0 18 ? * 1,7 *)             2024-03-02 18:00 Sat | 2024-03-03 18:00 Sun | 2024-03-09 18:00 Sat
            cron(0 18 ? * sat,SUN *)         2024-03-02 18:00 Sat | 2024-03-03 18:00 Sun | 2024-03-09 18:00 Sat
            cron(0 0 ? * L *)                2024-03-02 00:00 Sat | 2024-03-09 00:00 Sat | 2024-03-16 00:00 Sat
            cron(0 0 ? * 6L *)               2024-03-29 00:00 Fri | 2024-04-26 00:00 Fri | 2024-05-31 00:00 Fri
            cron(0 0 ? * FRIL *)             2024-03-29 00:00 Fri | 2024-04-26 00:00 Fri | 2024-05-31 00:00 Fri
            cron(0 0 ? * 3#2 *)              2024-03-12 00:00 Tue | 2024-04-09 00:00 Tue | 2024-05-14 00:00 Tue
            cron(0 0 ? * MON#1,FRI#5 *)      2024-03-04 00:00 Mon | 2024-03-29 00:00 Fri | 2024-04-01 00:00 Mon
            cron(0 0 ? * */3 *)              2024-02-28 00:00 Wed | 2024-03-02 00:00 Sat | 2024-03-03 00:00 Sun
        "#]],
    );
}

#[test]
fn cron_last_and_nearest_weekday() {
    check(
        &[
            "cron(0 0 L * ? *)",
            "cron(0 0 LW * ? *)",
            "cron(0 0 15W * ? *)",
            "cron(0 0 1W * ? *)",
            "cron(0 0 31W * ? *)",
            "cron(0 0 1,L * ? *)",
        ],
        expect![[r#"
            cron(0 0 L * ? *)                2024-02-29 00:00 Thu | 2024-03-31 00:00 Sun | 2024-04-30 00:00 Tue
            cron(0 0 LW * ? *)               2024-02-29 00:00 Thu | 2024-03-29 00:00 Fri | 2024-04-30 00:00 Tue
            cron(0 0 15W * ? *)              2024-03-15 00:00 Fri | 2024-04-15 00:00 Mon | 2024-05-15 00:00 Wed
            cron(0 0 1W * ? *)               2024-03-01 00:00 Fri | 2024-04-01 00:00 Mon | 2024-05-01 00:00 Wed
            cron(0 0 31W * ? *)              2024-03-29 00:00 Fri | 2024-05-31 00:00 Fri | 2024-07-31 00:00 Wed
            cron(0 0 1,L * ? *)              2024-02-29 00:00 Thu | 2024-03-01 00:00 Fri | 2024-03-31 00:00 Sun
        "#]],
    );
}

#[test]
fn malformed_expressions_are_explained() {
    check(
        &[
            "",
            "every 5 minutes",
            "rate(5)",
            "rate(0 minutes)",
            "rate(-1 minutes)",
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 seconds)",
            "rate(1 seconds)",
            "rate(2 weeks)",
            "rate(1.5 hours)",
            "rate(99999999999 days)",
            "cron(0 12 * * *)",
            "cron(0 12 * * ? * *)",
            "cron(60 * * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 0 0 * ? *)",
            "cron(0 0 32 * ? *)",
            "cron(0 0 1 13 ? *)",
            "cron(0 0 1 JANX ? *)",
            "cron(0 0 ? * MONX *)",
            "cron(0 0 ? * 8 *)",
            "cron(0 0 ? * 0 *)",
            "cron(0 0 1 * ? 1969)",
            "cron(0 0 1 * ? 2200)",
            "cron(0 0 * * * *)",
            "cron(0 0 ? * ? *)",
            "cron(0 0 1 * MON *)",
            "cron(*/0 * * * ? *)",
            "cron(5/x * * * ? *)",
            "cron(0 20-5 * * ? *)",
            "cron(0 0 ? * 3#6 *)",
            "cron(0 0 ? * 3#0 *)",
            "cron(0 0 ? * 9#1 *)",
            "cron(0 0 W * ? *)",
            "cron(0 0 L-2 * ? *)",
            "cron(? 0 1 * ? *)",
            "cron(0 0 1, * ? *)",
            "cron(0 0 1 * ? L)",
        ],
        expect![[r#"
                                             error: `` is not a schedule expression; write `rate(5 minutes)` or `cron(0 12 * * ? *)`
            every 5 minutes                  error: `every 5 minutes` is not a schedule expression; write `rate(5 minutes)` or `cron(0 12 * * ? *)`
            rate(5)                          error: `rate(5)` needs a value and a unit; write `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)` or `rate(2 days)`
            rate(0 minutes)                  error: `rate(0 minutes)`: the value must be a whole number of at least 1; write `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)` or `rate(2 days)`
            rate(-1 minutes)                 error: `rate(-1 minutes)`: the value must be a whole number of at least 1; write `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)` or `rate(2 days)`
            rate(1 minutes)                  error: `rate(1 minutes)`: EventBridge wants a singular unit for 1 and a plural one otherwise; write `rate(1 minute)`
            rate(5 minute)                   error: `rate(5 minute)`: EventBridge wants a singular unit for 1 and a plural one otherwise; write `rate(5 minutes)`
            rate(0 seconds)                  error: `rate(0 seconds)`: the value must be a whole number of at least 1; write `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)` or `rate(2 days)`
            rate(1 seconds)                  error: `rate(1 seconds)`: EventBridge wants a singular unit for 1 and a plural one otherwise; write `rate(1 second)`
            rate(2 weeks)                    error: `rate(2 weeks)`: unknown unit `weeks`; use minute(s), hour(s) or day(s) (or second(s), nimbus's extension)
            rate(1.5 hours)                  error: `rate(1.5 hours)`: the value must be a whole number of at least 1; write `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)` or `rate(2 days)`
            rate(99999999999 days)           error: `rate(99999999999 days)` is too long; at most 100 years
            cron(0 12 * * *)                 error: `cron(0 12 * * *)` has 5 fields; an EventBridge cron has 6: minutes hours day-of-month month day-of-week year, as in `cron(0 12 * * ? *)`
            cron(0 12 * * ? * *)             error: `cron(0 12 * * ? * *)` has 7 fields; an EventBridge cron has 6: minutes hours day-of-month month day-of-week year, as in `cron(0 12 * * ? *)`
            cron(60 * * * ? *)               error: cron field 1 (minutes) `60`: 60 is out of range; expected 0-59, * or a-b/n
            cron(0 24 * * ? *)               error: cron field 2 (hours) `24`: 24 is out of range; expected 0-23, * or a-b/n
            cron(0 0 0 * ? *)                error: cron field 3 (day-of-month) `0`: 0 is out of range; expected 1-31, *, ?, L, LW or nW
            cron(0 0 32 * ? *)               error: cron field 3 (day-of-month) `32`: 32 is out of range; expected 1-31, *, ?, L, LW or nW
            cron(0 0 1 13 ? *)               error: cron field 4 (month) `13`: 13 is out of range; expected 1-12, JAN-DEC or *
            cron(0 0 1 JANX ? *)             error: cron field 4 (month) `JANX`: expected 1-12, JAN-DEC or *
            cron(0 0 ? * MONX *)             error: cron field 5 (day-of-week) `MONX`: expected 1-7, SUN-SAT, *, ?, L or #
            cron(0 0 ? * 8 *)                error: cron field 5 (day-of-week) `8`: 8 is out of range; expected 1-7, SUN-SAT, *, ?, L or #
            cron(0 0 ? * 0 *)                error: cron field 5 (day-of-week) `0`: 0 is out of range; expected 1-7, SUN-SAT, *, ?, L or #
            cron(0 0 1 * ? 1969)             error: cron field 6 (year) `1969`: 1969 is out of range; expected 1970-2199 or *
            cron(0 0 1 * ? 2200)             error: cron field 6 (year) `2200`: 2200 is out of range; expected 1970-2199 or *
            cron(0 0 * * * *)                error: `cron(0 0 * * * *)`: exactly one of day-of-month (field 3) and day-of-week (field 5) must be `?`, got `*` and `*`; write `cron(0 12 * * ? *)` or `cron(0 12 ? * MON *)`
            cron(0 0 ? * ? *)                error: `cron(0 0 ? * ? *)`: exactly one of day-of-month (field 3) and day-of-week (field 5) must be `?`, got `?` and `?`; write `cron(0 12 * * ? *)` or `cron(0 12 ? * MON *)`
            cron(0 0 1 * MON *)              error: `cron(0 0 1 * MON *)`: exactly one of day-of-month (field 3) and day-of-week (field 5) must be `?`, got `1` and `MON`; write `cron(0 12 * * ? *)` or `cron(0 12 ? * MON *)`
            cron(*/0 * * * ? *)              error: cron field 1 (minutes) `*/0`: the step after `/` must be a whole number of at least 1
            cron(5/x * * * ? *)              error: cron field 1 (minutes) `5/x`: the step after `/` must be a whole number of at least 1
            cron(0 20-5 * * ? *)             error: cron field 2 (hours) `20-5`: the range runs backwards; write it as two ranges, 20-23 and 0-5
            cron(0 0 ? * 3#6 *)              error: cron field 5 (day-of-week) `3#6`: the number after `#` must be 1 to 5, as in `3#2` (the second Tuesday)
            cron(0 0 ? * 3#0 *)              error: cron field 5 (day-of-week) `3#0`: the number after `#` must be 1 to 5, as in `3#2` (the second Tuesday)
            cron(0 0 ? * 9#1 *)              error: cron field 5 (day-of-week) `9#1`: 9 is out of range; expected 1-7, SUN-SAT, *, ?, L or #
            cron(0 0 W * ? *)                error: cron field 3 (day-of-month) `W`: expected 1-31, *, ?, L, LW or nW
            cron(0 0 L-2 * ? *)              error: cron field 3 (day-of-month) `L-2`: expected 1-31, *, ?, L, LW or nW
            cron(? 0 1 * ? *)                error: cron field 1 (minutes) `?`: expected 0-59, * or a-b/n
            cron(0 0 1, * ? *)               error: cron field 3 (day-of-month) ``: an empty list item; remove the stray `,`
            cron(0 0 1 * ? L)                error: cron field 6 (year) `L`: expected 1970-2199 or *
        "#]],
    );
}

/// Broken input is data: no expression panics, whatever the characters.
#[test]
fn odd_expressions_never_panic() {
    let pieces = [
        "", "*", "?", "L", "W", "#", "/", "-", ",", "0", "1", "7", "59", "99", "2199", "LW", "5L",
        "3#2", "*/0", "1-", "-1", "MON", "x",
    ];
    for a in pieces {
        for b in pieces {
            let texts = [
                format!("cron({a} {b} * * ? *)"),
                format!("cron(0 0 {a} * {b} *)"),
                format!("cron(0 0 {b} {a} ? {a})"),
                format!("rate({a} {b})"),
            ];
            for text in texts {
                if let Ok(expression) = ScheduleExpression::parse(&text) {
                    let _ = expression.next_after(start());
                }
            }
        }
    }
}
