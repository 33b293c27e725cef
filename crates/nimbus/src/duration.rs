//! Durations on the command line: `500ms`, `30s`, `5m`, `1h`, `7d`.

use std::time::Duration;

/// Parses a number followed by ms, s, m, h or d.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: write it like 500ms, 30s, 5m, 1h or 7d")
    })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}: use ms, s, m, h or d"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// The shortest of `90s`-style spellings that `parse` reads back.
pub(crate) fn display(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    for (unit, size) in [("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)] {
        if secs >= size && (secs / size).fract() == 0.0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{}ms", duration.as_millis())
}

#[cfg(test)]
mod tests {
    use super::parse;

    use std::time::Duration;

    #[test]
    fn parses_each_unit_and_rejects_unknown_ones() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2"), Ok(Duration::from_secs(2)));
        assert!(parse("5 parsecs").is_err());
        assert!(parse("fast").is_err());
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86400)));
        for text in ["30d", "2h", "5m", "90s", "250ms"] {
            let duration = parse(text).expect("valid");
            assert_eq!(parse(&super::display(duration)), Ok(duration), "{text}");
        }
    }
}
