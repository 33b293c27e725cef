//! A nimbus-world function: one component that takes any event, HTTP or not, as the
//! JSON a Lambda handler would get, and counts HTTP visits in a KV namespace through the
//! nimbus:function imports.

use nimbus_function::{Context, Error, Handler, kv};

struct Events;

impl Handler for Events {
    fn handle(event: String, ctx: Context) -> Result<String, Error> {
        if event.trim().is_empty() || !event.trim_start().starts_with('{') {
            return Err(Error::new("InvalidEvent", "expected a JSON object"));
        }
        println!("handling {} bytes", event.len());
        let kind = if event.contains("\"routeKey\"") || event.contains("\"httpMethod\"") {
            "http"
        } else if event.contains("\"Records\"") {
            "records"
        } else {
            "other"
        };
        if kind == "http" {
            // Count visits in the app's KV namespace `visits` (granted in nimbus.yaml).
            let visits = kv("visits");
            let n = visits
                .get_string("count")?
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            visits.put("count", n.to_string())?;
            // API Gateway events get a proxy response back.
            return Ok(format!(
                r#"{{"statusCode":200,"headers":{{"content-type":"application/json"}},"body":"{{\"kind\":\"http\",\"requestId\":\"{}\",\"visits\":{n}}}"}}"#,
                ctx.request_id
            ));
        }
        Ok(format!(
            r#"{{"kind":"{kind}","requestId":"{}","functionName":"{}","bytes":{}}}"#,
            ctx.request_id,
            ctx.function_name,
            event.len()
        ))
    }
}

nimbus_function::export!(Events);
