//! EventBridge schedule expressions: `rate(5 minutes)` and `cron(0 12 * * ? *)`, in UTC.
//!
//! STUB: the parser is being written; this file fixes the API.

use std::time::{Duration, SystemTime};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpression {
    /// `rate(N unit)`: every N minutes, hours or days.
    Rate(Duration),
    /// `cron(minutes hours day-of-month month day-of-week year)`.
    Cron(Cron),
}

/// The six fields of an EventBridge cron expression, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The expression as written, for display.
    pub text: String,
}

impl ScheduleExpression {
    /// Parses `rate(...)` or `cron(...)`; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<ScheduleExpression, String> {
        Err(format!("schedule expressions are not parsed yet: {text}"))
    }

    /// The first fire time strictly after `after` (for a rate, `after` plus the rate).
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        match self {
            ScheduleExpression::Rate(every) => Some(after + *every),
            ScheduleExpression::Cron(_) => None,
        }
    }
}
