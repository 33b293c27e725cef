//! EventBridge schedule expressions: `rate(5 minutes)` and `cron(0 12 * * ? *)`, in UTC.
//!
//! The syntax is EventBridge's ("Schedule expressions for rules" in the EventBridge user
//! guide): a rate names one unit, singular for 1 and plural otherwise; a cron has six
//! fields, `minutes hours day-of-month month day-of-week year`, with `1` = Sunday, and
//! exactly one of day-of-month and day-of-week is `?`. `L`, `W` and `#` follow Quartz,
//! which EventBridge's cron is modelled on.
//!
//! One nimbus extension: `rate(N second(s))`. EventBridge's shortest rate is one minute;
//! seconds let a cluster's schedule show one fire per slot in a test of half a minute, and
//! the manifest warns that AWS would reject them.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time::{civil_from_days, days_from_civil};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpression {
    /// `rate(N unit)`: every N seconds (nimbus's extension), minutes, hours or days.
    Rate(Duration),
    /// `cron(minutes hours day-of-month month day-of-week year)`.
    Cron(Cron),
}

/// The six fields of an EventBridge cron expression, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The expression as written (trimmed), for display.
    pub text: String,
    /// Bit `n` set: fires at minute `n` of the hour.
    minutes: u64,
    /// Bit `n` set: fires in hour `n` of the day.
    hours: u32,
    /// Bit `n` set: fires in month `n` (1 to 12).
    months: u16,
    /// Bit `n` set: fires in year `FIRST_YEAR + n`.
    years: [u64; 4],
    /// Which days of a month fire; the other day field is `?`.
    days: Days,
}

/// The first and last years a cron expression may name, as in EventBridge.
const FIRST_YEAR: i64 = 1970;
const LAST_YEAR: i64 = 2199;

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The day fields of a cron expression: whichever is not `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    /// Day-of-week is `?`.
    OfMonth(DayOfMonth),
    /// Day-of-month is `?`.
    OfWeek(DayOfWeek),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DayOfMonth {
    /// Bit `n` set: day `n` (1 to 31).
    days: u32,
    /// `L`: the last day of the month.
    last: bool,
    /// `LW`: the last weekday (Monday to Friday) of the month.
    last_weekday: bool,
    /// `nW`, bit `n` set: the weekday nearest day `n`, within the month.
    nearest_weekday: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DayOfWeek {
    /// Bit `n` set: weekday `n` (1 = Sunday to 7 = Saturday).
    days: u8,
    /// `nL`, bit `n` set: the last weekday `n` of the month.
    last: u8,
    /// `n#k`: the `k`th weekday `n` of the month.
    nth: Vec<(u8, u8)>,
}

/// One cron field's description, for parsing and for error messages.
struct Field {
    /// 1-based position in the expression.
    idx: usize,
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ...
    names: &'static [&'static str],
    /// What the field accepts, for "expected ..." messages.
    allowed: &'static str,
}

const FIELDS: [Field; 6] = [
    Field {
        idx: 1,
        name: "minutes",
        min: 0,
        max: 59,
        names: &[],
        allowed: "0-59, * or a-b/n",
    },
    Field {
        idx: 2,
        name: "hours",
        min: 0,
        max: 23,
        names: &[],
        allowed: "0-23, * or a-b/n",
    },
    Field {
        idx: 3,
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        allowed: "1-31, *, ?, L, LW or nW",
    },
    Field {
        idx: 4,
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        allowed: "1-12, JAN-DEC or *",
    },
    Field {
        idx: 5,
        name: "day-of-week",
        min: 1,
        max: 7,
        names: WEEKDAYS,
        allowed: "1-7, SUN-SAT, *, ?, L or #",
    },
    Field {
        idx: 6,
        name: "year",
        min: FIRST_YEAR as u32,
        max: LAST_YEAR as u32,
        names: &[],
        allowed: "1970-2199 or *",
    },
];

impl ScheduleExpression {
    /// Parses `rate(...)` or `cron(...)`; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<ScheduleExpression, String> {
        let text = text.trim();
        if let Some(body) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
            return parse_rate(body).map(ScheduleExpression::Rate);
        }
        if let Some(body) = text.strip_prefix("cron(").and_then(|t| t.strip_suffix(')')) {
            return Cron::parse(text, body).map(ScheduleExpression::Cron);
        }
        Err(format!(
            "`{text}` is not a schedule expression; write `rate(5 minutes)` or `cron(0 12 * * ? *)`"
        ))
    }

    /// The first fire time strictly after `after`, at minute resolution for a cron;
    /// `None` when a cron never fires again. A rate counts from `after`, the previous fire
    /// time (or the schedule's start), as EventBridge counts from the rule's creation.
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        match self {
            ScheduleExpression::Rate(every) => after.checked_add(*every),
            ScheduleExpression::Cron(cron) => cron.next_after(after),
        }
    }
}

impl Cron {
    fn parse(text: &str, body: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = body.split_whitespace().collect();
        let [minutes, hours, day_of_month, month, day_of_week, year] = parts.as_slice() else {
            return Err(format!(
                "`{text}` has {} fields; an EventBridge cron has 6: minutes hours day-of-month month day-of-week year, as in `cron(0 12 * * ? *)`",
                parts.len()
            ));
        };
        let [f_min, f_hour, f_dom, f_month, f_dow, f_year] = &FIELDS;
        let minutes = plain_field(f_min, minutes)?;
        let hours = plain_field(f_hour, hours)?;
        let months = plain_field(f_month, month)?;
        let year_bits = plain_field(f_year, year)?;
        let days = match (*day_of_month == "?", *day_of_week == "?") {
            (false, true) => Days::OfMonth(day_of_month_field(f_dom, day_of_month)?),
            (true, false) => Days::OfWeek(day_of_week_field(f_dow, day_of_week)?),
            _ => {
                return Err(format!(
                    "`{text}`: exactly one of day-of-month (field 3) and day-of-week (field 5) must be `?`, got `{day_of_month}` and `{day_of_week}`; write `cron(0 12 * * ? *)` or `cron(0 12 ? * MON *)`"
                ));
            }
        };
        let mut years = [0u64; 4];
        for (offset, word) in years.iter_mut().enumerate() {
            let shift = offset * 64;
            *word = bits_window(&year_bits, shift);
        }
        Ok(Cron {
            text: text.to_owned(),
            minutes: bits_window(&minutes, 0),
            hours: bits_window(&hours, 0) as u32,
            // Bit 0 is month 1 in the bitmap; shift so that bit `n` is month `n`.
            months: (bits_window(&months, 0) << 1) as u16,
            years,
            days,
        })
    }

    fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        // The first whole minute strictly after `after`.
        let mut minute_idx = match after.duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs() / 60).ok()? + 1,
            Err(_) => 0,
        };
        loop {
            let day = minute_idx.div_euclid(1440);
            let minute_of_day = minute_idx.rem_euclid(1440);
            let (year, month, day_of_month) = civil_from_days(day);
            if year > LAST_YEAR {
                return None;
            }
            if !self.has_year(year) {
                minute_idx = days_from_civil(year + 1, 1, 1) * 1440;
                continue;
            }
            if self.months & (1 << month) == 0 {
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                minute_idx = days_from_civil(next_year, next_month, 1) * 1440;
                continue;
            }
            if self.day_matches(day, year, month, day_of_month)
                && let Some(minute) = self.first_minute_from(minute_of_day)
            {
                let secs = u64::try_from((day * 1440 + minute) * 60).ok()?;
                return Some(UNIX_EPOCH + Duration::from_secs(secs));
            }
            minute_idx = (day + 1) * 1440;
        }
    }

    fn has_year(&self, year: i64) -> bool {
        let Ok(offset) = usize::try_from(year - FIRST_YEAR) else {
            return false;
        };
        self.years
            .get(offset / 64)
            .is_some_and(|word| word & (1 << (offset % 64)) != 0)
    }

    /// The first minute of the day at or after `from` whose hour and minute fire.
    fn first_minute_from(&self, from: i64) -> Option<i64> {
        for hour in from / 60..24 {
            if self.hours & (1 << hour) == 0 {
                continue;
            }
            let first = if hour == from / 60 { from % 60 } else { 0 };
            let left = self.minutes >> first;
            if left != 0 {
                return Some(hour * 60 + first + i64::from(left.trailing_zeros()));
            }
        }
        None
    }

    fn day_matches(&self, day: i64, year: i64, month: u8, day_of_month: u8) -> bool {
        let last = last_day_of_month(year, month);
        // 1 = Sunday, as EventBridge counts; 1970-01-01 was a Thursday.
        let weekday = (day + 4).rem_euclid(7) as u8 + 1;
        match &self.days {
            Days::OfMonth(spec) => {
                spec.days & (1 << day_of_month) != 0
                    || (spec.last && day_of_month == last)
                    || (spec.last_weekday
                        && day_of_month
                            == nearest_weekday(
                                day - i64::from(day_of_month) + i64::from(last),
                                last,
                                last,
                            ))
                    || (1..=31u8).any(|target| {
                        spec.nearest_weekday & (1 << target) != 0
                            && target <= last
                            && day_of_month
                                == nearest_weekday(
                                    day - i64::from(day_of_month) + i64::from(target),
                                    target,
                                    last,
                                )
                    })
            }
            Days::OfWeek(spec) => {
                spec.days & (1 << weekday) != 0
                    || (spec.last & (1 << weekday) != 0 && day_of_month + 7 > last)
                    || spec.nth.iter().any(|&(nth_weekday, n)| {
                        nth_weekday == weekday && (day_of_month - 1) / 7 + 1 == n
                    })
            }
        }
    }
}

impl fmt::Display for ScheduleExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleExpression::Rate(every) => {
                let secs = every.as_secs();
                let minutes = secs / 60;
                let (n, unit) = if secs % 60 != 0 {
                    (secs, "second")
                } else if minutes % 1440 == 0 {
                    (minutes / 1440, "day")
                } else if minutes % 60 == 0 {
                    (minutes / 60, "hour")
                } else {
                    (minutes, "minute")
                };
                let plural = if n == 1 { "" } else { "s" };
                write!(f, "rate({n} {unit}{plural})")
            }
            ScheduleExpression::Cron(cron) => f.write_str(&cron.text),
        }
    }
}

/// `N unit`, the inside of `rate(...)`.
fn parse_rate(body: &str) -> Result<Duration, String> {
    let hint = "write `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)` or `rate(2 days)`";
    let parts: Vec<&str> = body.split_whitespace().collect();
    let [value, unit] = parts.as_slice() else {
        return Err(format!("`rate({body})` needs a value and a unit; {hint}"));
    };
    let value: u64 = match value.parse() {
        Ok(value) if value >= 1 => value,
        _ => {
            return Err(format!(
                "`rate({body})`: the value must be a whole number of at least 1; {hint}"
            ));
        }
    };
    let (singular, unit_secs) = match *unit {
        "second" | "seconds" => ("second", 1),
        "minute" | "minutes" => ("minute", 60),
        "hour" | "hours" => ("hour", 3600),
        "day" | "days" => ("day", 86_400),
        _ => {
            return Err(format!(
                "`rate({body})`: unknown unit `{unit}`; use minute(s), hour(s) or day(s) (or second(s), nimbus's extension)"
            ));
        }
    };
    // EventBridge rejects `rate(1 minutes)` and `rate(5 minute)`.
    let expected_plural = value != 1;
    if unit.ends_with('s') != expected_plural {
        let right = if expected_plural {
            format!("{value} {singular}s")
        } else {
            format!("1 {singular}")
        };
        return Err(format!(
            "`rate({body})`: EventBridge wants a singular unit for 1 and a plural one otherwise; write `rate({right})`"
        ));
    }
    match value.checked_mul(unit_secs) {
        Some(secs) if secs <= 100 * 365 * 86_400 => Ok(Duration::from_secs(secs)),
        _ => Err(format!("`rate({body})` is too long; at most 100 years")),
    }
}

/// A field of plain values, ranges and steps, as a bitmap indexed by value - min over
/// up to 256 values.
fn plain_field(field: &Field, text: &str) -> Result<Vec<bool>, String> {
    let mut bits = vec![false; (field.max - field.min + 1) as usize];
    for item in text.split(',') {
        let (start, end, step) = plain_item(field, item)?;
        let mut value = start;
        while value <= end {
            bits[(value - field.min) as usize] = true;
            value += step;
        }
    }
    Ok(bits)
}

/// `*`, `a`, `a-b`, `*/n`, `a/n` or `a-b/n`, as (first, last, step).
fn plain_item(field: &Field, item: &str) -> Result<(u32, u32, u32), String> {
    if item.is_empty() {
        return Err(field_error(
            field,
            item,
            "an empty list item; remove the stray `,`",
        ));
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step = match step.parse::<u32>() {
                Ok(step) if step >= 1 => step,
                _ => {
                    return Err(field_error(
                        field,
                        item,
                        "the step after `/` must be a whole number of at least 1",
                    ));
                }
            };
            (range, Some(step))
        }
        None => (item, None),
    };
    let (start, end) = if range == "*" {
        (field.min, field.max)
    } else if let Some((start, end)) = range.split_once('-') {
        let (start, end) = (value(field, start, item)?, value(field, end, item)?);
        if start > end {
            let message = format!(
                "the range runs backwards; write it as two ranges, {}-{} and {}-{}",
                start, field.max, field.min, end
            );
            return Err(field_error(field, item, &message));
        }
        (start, end)
    } else {
        let start = value(field, range, item)?;
        // `a/n` means every n from a to the end of the range.
        (start, if step.is_some() { field.max } else { start })
    };
    Ok((start, end, step.unwrap_or(1)))
}

/// A number or a name (case-insensitive) within the field's range.
fn value(field: &Field, token: &str, item: &str) -> Result<u32, String> {
    if let Ok(number) = token.parse::<u32>() {
        if (field.min..=field.max).contains(&number) {
            return Ok(number);
        }
        let message = format!("{number} is out of range; expected {}", field.allowed);
        return Err(field_error(field, item, &message));
    }
    match field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(token))
    {
        Some(name_idx) => Ok(field.min + name_idx as u32),
        None => Err(expected(field, item)),
    }
}

fn day_of_month_field(field: &Field, text: &str) -> Result<DayOfMonth, String> {
    let mut spec = DayOfMonth::default();
    for item in text.split(',') {
        if item == "L" {
            spec.last = true;
        } else if item == "LW" {
            spec.last_weekday = true;
        } else if let Some(target) = item.strip_suffix('W') {
            let target = value(field, target, item)?;
            spec.nearest_weekday |= 1 << target;
        } else {
            let (start, end, step) = plain_item(field, item)?;
            for day in (start..=end).step_by(step as usize) {
                spec.days |= 1 << day;
            }
        }
    }
    Ok(spec)
}

fn day_of_week_field(field: &Field, text: &str) -> Result<DayOfWeek, String> {
    let mut spec = DayOfWeek::default();
    for item in text.split(',') {
        if item == "L" {
            // `L` alone is the last day of the week, Saturday (Quartz).
            spec.days |= 1 << 7;
        } else if let Some(weekday) = item.strip_suffix('L') {
            spec.last |= 1 << value(field, weekday, item)?;
        } else if let Some((weekday, n)) = item.split_once('#') {
            let weekday = value(field, weekday, item)? as u8;
            let n = match n.parse::<u8>() {
                Ok(n) if (1..=5).contains(&n) => n,
                _ => {
                    return Err(field_error(
                        field,
                        item,
                        "the number after `#` must be 1 to 5, as in `3#2` (the second Tuesday)",
                    ));
                }
            };
            spec.nth.push((weekday, n));
        } else {
            let (start, end, step) = plain_item(field, item)?;
            for weekday in (start..=end).step_by(step as usize) {
                spec.days |= 1 << weekday;
            }
        }
    }
    Ok(spec)
}

fn expected(field: &Field, item: &str) -> String {
    field_error(field, item, &format!("expected {}", field.allowed))
}

fn field_error(field: &Field, item: &str, message: &str) -> String {
    format!(
        "cron field {} ({}) `{item}`: {message}",
        field.idx, field.name
    )
}

/// Bits `shift..shift + 64` of a bitmap, as a word.
fn bits_window(bits: &[bool], shift: usize) -> u64 {
    bits.iter()
        .skip(shift)
        .take(64)
        .enumerate()
        .filter(|(_, set)| **set)
        .fold(0, |word, (bit_idx, _)| word | 1 << bit_idx)
}

fn last_day_of_month(year: i64, month: u8) -> u8 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let last = days_from_civil(next_year, next_month, 1) - 1;
    civil_from_days(last).2
}

/// The day of the month of the weekday nearest `target` without leaving the month
/// (Quartz's `W`): a Saturday moves back to Friday unless that is in the previous month,
/// a Sunday moves on to Monday unless that is in the next one. `day` is `target`'s
/// day number since the epoch.
fn nearest_weekday(day: i64, target: u8, last: u8) -> u8 {
    // 0 = Sunday.
    match (day + 4).rem_euclid(7) {
        6 if target == 1 => target + 2,
        6 => target - 1,
        0 if target == last => target - 2,
        0 => target + 1,
        _ => target,
    }
}

#[cfg(test)]
mod tests;
