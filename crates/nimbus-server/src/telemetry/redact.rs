//! Secret values hidden as `****`: in function output (`RedactingLogSink`) and in what is
//! recorded about failed invocations (`Redactor`, applied to the stored error message).

use std::sync::Arc;

use nimbus_core::{LogLine, LogSink};

/// What a secret's value is replaced with.
pub const REDACTED: &str = "****";

/// The texts one function must not leak: its secrets' values.
pub struct Redactor {
    /// The texts to hide, longest first, so a value that contains another is hidden whole.
    values: Vec<String>,
}

impl Redactor {
    /// Hides `values`. A value spanning several lines is also hidden line by line (lines
    /// of 4 characters or more: shorter ones would hide ordinary text), since executors
    /// hand over output one line at a time.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for value in values {
            if value.contains('\n') {
                needles.extend(
                    value
                        .lines()
                        .map(|line| line.trim_end_matches('\r'))
                        .filter(|line| line.trim().chars().count() >= 4)
                        .map(str::to_owned),
                );
            }
            needles.push(value);
        }
        needles.retain(|needle| !needle.is_empty());
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Redactor { values: needles }
    }

    /// `text` with every value replaced; `None` when it holds none.
    pub fn redact(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for value in &self.values {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(value.as_str()) {
                out = Some(current.replace(value.as_str(), REDACTED));
            }
        }
        out
    }
}

/// A `LogSink` in front of another that replaces every secret value in a line with `****`
/// before the line is stored or echoed.
///
/// Only functions whose environment holds secrets get one (the binary wraps their
/// executor's sink), so the output of every other function pays nothing. For those that
/// do, a line without a secret costs one substring search per value and no allocation.
pub struct RedactingLogSink {
    inner: Arc<dyn LogSink>,
    redactor: Arc<Redactor>,
}

impl RedactingLogSink {
    /// Hides what `redactor` hides from the lines passed on to `inner`.
    pub fn new(inner: Arc<dyn LogSink>, redactor: Arc<Redactor>) -> Self {
        RedactingLogSink { inner, redactor }
    }
}

impl LogSink for RedactingLogSink {
    fn log(&self, line: LogLine<'_>) {
        match self.redactor.redact(line.text) {
            Some(text) => self.inner.log(LogLine {
                text: &text,
                ..line
            }),
            None => self.inner.log(line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use nimbus_core::LogStream;

    use super::*;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl LogSink for Lines {
        fn log(&self, line: LogLine<'_>) {
            self.0
                .lock()
                .expect("not poisoned")
                .push(line.text.to_owned());
        }
    }

    fn check(values: &[&str], text: &str, expected: &str) {
        let lines = Arc::new(Lines::default());
        let sink = RedactingLogSink::new(
            lines.clone(),
            Arc::new(Redactor::new(
                values.iter().map(|value| (*value).to_owned()),
            )),
        );
        sink.log(LogLine {
            function: "f",
            request_id: None,
            stream: LogStream::Stdout,
            text,
        });
        let seen = lines.0.lock().expect("not poisoned").clone();
        assert_eq!(seen, [expected]);
    }

    #[test]
    fn secret_values_are_replaced_wherever_they_appear() {
        check(&["hunter2"], "no secret here", "no secret here");
        check(&["hunter2"], "password=hunter2", "password=****");
        check(&["hunter2"], "hunter2 hunter2", "**** ****");
        check(&["tok", "hunter2"], "tok and hunter2", "**** and ****");
        // The longer value first, so no tail of it is left showing.
        check(&["abc", "abcdef"], "key abcdef", "key ****");
        check(&["a\nsecond line"], "second line and a", "**** and a");
        check(&[""], "nothing to hide", "nothing to hide");
    }
}
