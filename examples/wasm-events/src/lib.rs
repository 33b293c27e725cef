//! A nimbus-world function: one component that takes any event, HTTP or not, as the
//! JSON a Lambda handler would get.

use nimbus_function::{Context, Error, Handler};

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
            // API Gateway events get a proxy response back.
            return Ok(format!(
                r#"{{"statusCode":200,"headers":{{"content-type":"application/json"}},"body":"{{\"kind\":\"http\",\"requestId\":\"{}\"}}"}}"#,
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
