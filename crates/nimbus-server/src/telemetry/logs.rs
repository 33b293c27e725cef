//! Reading the lines functions write: Lambda log prefixes, JSON log lines and CloudWatch
//! Embedded Metric Format.

use nimbus_core::LogStream;

/// A function's output line, understood.
#[derive(Debug, PartialEq)]
pub(crate) struct ParsedLine<'a> {
    pub(crate) level: &'static str,
    /// The message without the runtime's `time\trequest id\tLEVEL\t` prefix.
    pub(crate) message: &'a str,
    /// The message, when it is a JSON object: kept as structured fields.
    pub(crate) fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One metric value from an EMF line.
#[derive(Debug, PartialEq)]
pub(crate) struct EmfSample {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) dimensions: Vec<(String, String)>,
    pub(crate) value: f64,
}

const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// Splits off the prefixes Lambda's Node.js (`2024-01-01T00:00:00.000Z\t<id>\tINFO\t`) and
/// Python (`[INFO]\t2024-01-01T00:00:00.000Z\t<id>\t`) runtimes put on log lines.
pub(crate) fn parse_line(text: &str, stream: LogStream) -> ParsedLine<'_> {
    let default_level = match stream {
        LogStream::Stdout => "INFO",
        LogStream::Stderr => "ERROR",
    };
    let (mut level, message) = split_prefix(text).unwrap_or((default_level, text));
    let fields = if message.starts_with('{') {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(message).ok()
    } else {
        None
    };
    if let Some(fields) = &fields {
        // Structured loggers (pino, Powertools, structlog) name the level in a field.
        for key in ["level", "levelname", "severity", "log.level"] {
            if let Some(named) = fields
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(known_level)
            {
                level = named;
                break;
            }
        }
    }
    ParsedLine {
        level,
        message,
        fields,
    }
}

fn split_prefix(text: &str) -> Option<(&'static str, &str)> {
    let mut parts = text.splitn(4, '\t');
    let first = parts.next()?;
    if let Some(level) = first.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        // Python: [LEVEL]\ttime\trequest id\tmessage
        let level = known_level(level)?;
        let (_time, _id, message) = (parts.next()?, parts.next()?, parts.next()?);
        return Some((level, message));
    }
    // Node.js: time\trequest id\tLEVEL\tmessage
    if !first.ends_with('Z') || !first.contains('T') {
        return None;
    }
    let (_id, level, message) = (parts.next()?, parts.next()?, parts.next()?);
    Some((known_level(level)?, message))
}

fn known_level(level: &str) -> Option<&'static str> {
    let upper = level.to_ascii_uppercase();
    let upper = match upper.as_str() {
        "WARNING" => "WARN",
        "CRITICAL" => "FATAL",
        other => other,
    };
    LEVELS.iter().find(|l| **l == upper).copied()
}

/// The metric values of a CloudWatch Embedded Metric Format object, if it is one
/// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
pub(crate) fn emf_samples(fields: &serde_json::Map<String, serde_json::Value>) -> Vec<EmfSample> {
    let Some(directives) = fields
        .get("_aws")
        .and_then(|aws| aws.get("CloudWatchMetrics"))
        .and_then(|m| m.as_array())
    else {
        return Vec::new();
    };
    let mut samples = Vec::new();
    for directive in directives {
        let namespace = directive
            .get("Namespace")
            .and_then(|n| n.as_str())
            .unwrap_or("default");
        // Each dimension set is a list of keys whose values are top-level members; one
        // Prometheus series per metric uses the first set, which is what dashboards group by.
        let dimensions: Vec<(String, String)> = directive
            .get("Dimensions")
            .and_then(|d| d.as_array())
            .and_then(|sets| sets.first())
            .and_then(|set| set.as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str())
                    .filter_map(|k| {
                        let value = fields.get(k)?;
                        let value = value
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| value.to_string());
                        Some((k.to_owned(), value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some(metrics) = directive.get("Metrics").and_then(|m| m.as_array()) else {
            continue;
        };
        for metric in metrics {
            let Some(name) = metric.get("Name").and_then(|n| n.as_str()) else {
                continue;
            };
            let unit = metric
                .get("Unit")
                .and_then(|u| u.as_str())
                .unwrap_or("None");
            let values: Vec<f64> = match fields.get(name) {
                Some(serde_json::Value::Number(n)) => n.as_f64().into_iter().collect(),
                Some(serde_json::Value::Array(items)) => {
                    items.iter().filter_map(|v| v.as_f64()).collect()
                }
                _ => Vec::new(),
            };
            for value in values {
                samples.push(EmfSample {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    unit: unit.to_owned(),
                    dimensions: dimensions.clone(),
                    value,
                });
            }
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use nimbus_core::LogStream;

    use super::{emf_samples, parse_line};

    fn check(line: &str, stream: LogStream, expect: Expect) {
        let parsed = parse_line(line, stream);
        let fields = parsed
            .fields
            .as_ref()
            .map(|f| serde_json::Value::Object(f.clone()).to_string());
        let emf = parsed.fields.as_ref().map(emf_samples).unwrap_or_default();
        expect.assert_eq(&format!(
            "{} | {} | {} | {:?}",
            parsed.level,
            parsed.message,
            fields.unwrap_or_default(),
            emf
        ));
    }

    #[test]
    fn lines() {
        check(
            "hello",
            LogStream::Stdout,
            expect![[r#"INFO | hello |  | []"#]],
        );
        check(
            "oops",
            LogStream::Stderr,
            expect![[r#"ERROR | oops |  | []"#]],
        );
        check(
            "2024-01-01T00:00:00.000Z\tabc-123\tWARN\tdisk low",
            LogStream::Stdout,
            expect![[r#"WARN | disk low |  | []"#]],
        );
        check(
            "[ERROR]\t2024-01-01T00:00:00.000Z\tabc-123\tboom",
            LogStream::Stdout,
            expect![[r#"ERROR | boom |  | []"#]],
        );
        check(
            r#"{"level":"warn","msg":"slow","ms":900}"#,
            LogStream::Stdout,
            expect![[
                r#"WARN | {"level":"warn","msg":"slow","ms":900} | {"level":"warn","ms":900,"msg":"slow"} | []"#
            ]],
        );
        check(
            "2024-01-01T00:00:00.000Z\tid\tINFO\tnot\tjson",
            LogStream::Stdout,
            expect![[r#"INFO | not	json |  | []"#]],
        );
        check(
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"shop","Dimensions":[["Service"]],"Metrics":[{"Name":"Orders","Unit":"Count"}]}]},"Service":"cart","Orders":[2,3]}"#,
            LogStream::Stdout,
            expect![[
                r#"INFO | {"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"shop","Dimensions":[["Service"]],"Metrics":[{"Name":"Orders","Unit":"Count"}]}]},"Service":"cart","Orders":[2,3]} | {"Orders":[2,3],"Service":"cart","_aws":{"CloudWatchMetrics":[{"Dimensions":[["Service"]],"Metrics":[{"Name":"Orders","Unit":"Count"}],"Namespace":"shop"}],"Timestamp":1}} | [EmfSample { namespace: "shop", name: "Orders", unit: "Count", dimensions: [("Service", "cart")], value: 2.0 }, EmfSample { namespace: "shop", name: "Orders", unit: "Count", dimensions: [("Service", "cart")], value: 3.0 }]"#
            ]],
        );
    }
}
