//! Lift's `webhook` constructs: an HTTP endpoint whose requests, once the construct's
//! authorizer function allows them (an HTTP API Lambda authorizer, payload 2.0, simple
//! responses; it sees the headers, not the body, as on AWS), become EventBridge events on
//! the construct's bus: `source` the construct's id, `detail-type` its `eventType`,
//! `detail` the JSON body. The answer is EventBridge's PutEvents answer, as API Gateway's
//! integration returns it.

use std::time::SystemTime;

use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use http::{Method, StatusCode};
use nimbus_core::Outcome;
use nimbus_core::policy::{Webhook, WebhookEventType};
use serde_json::{Map, Value, json};

use crate::events::PutEvent;
use crate::functions::InvokeRequest;
use crate::generation::Generation;
use crate::telemetry::{TraceContext, Trigger};

/// The app's webhooks, matched by method and exact path.
pub(crate) struct Webhooks {
    list: Vec<Webhook>,
}

impl Webhooks {
    pub(crate) fn new(list: &[Webhook]) -> Webhooks {
        Webhooks {
            list: list.to_vec(),
        }
    }

    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&Webhook> {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        self.list
            .iter()
            .find(|webhook| webhook.method == method.as_str() && webhook.path == path)
    }
}

/// What a webhook request carries to its authorizer and its event.
pub(crate) struct WebhookRequest<'a> {
    pub(crate) parts: &'a http::request::Parts,
    pub(crate) body: &'a [u8],
    pub(crate) source_ip: String,
    pub(crate) request_id: String,
    pub(crate) trace: &'a TraceContext,
}

/// Authorizes a request and puts its event on the bus; the HTTP answer.
pub(crate) async fn serve(
    webhook: &Webhook,
    generation: &Generation,
    req: WebhookRequest<'_>,
) -> Response {
    if let Some(authorizer) = &webhook.authorizer {
        match authorize(authorizer, webhook, generation, &req).await {
            Ok(true) => {}
            Ok(false) => return message(StatusCode::FORBIDDEN, "Forbidden"),
            Err(why) => {
                tracing::warn!(
                    webhook = %webhook.id,
                    authorizer = %authorizer,
                    request_id = %req.request_id,
                    "webhook authorizer failed, answering 500: {why}"
                );
                return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        }
    }
    let detail = match serde_json::from_slice::<Value>(req.body) {
        Ok(detail @ Value::Object(_)) => detail,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "the webhook's body must be a JSON object: it becomes the event's detail",
            );
        }
    };
    let detail_type = match &webhook.event_type {
        WebhookEventType::Fixed(text) => text.clone(),
        WebhookEventType::BodyPath(path) => {
            let found = path.iter().try_fold(&detail, |value, name| value.get(name));
            match found {
                Some(Value::String(text)) => text.clone(),
                Some(other @ (Value::Number(_) | Value::Bool(_))) => other.to_string(),
                _ => {
                    let wanted = format!("$request.body.{}", path.join("."));
                    return message(
                        StatusCode::BAD_REQUEST,
                        &format!("the body has no {wanted}, which names the event's type"),
                    );
                }
            }
        }
    };
    let event = PutEvent {
        bus: webhook.bus.clone(),
        source: webhook.id.clone(),
        detail_type,
        detail,
        resources: Vec::new(),
        time: None,
    };
    match generation.events.put_events(vec![event], req.trace).await {
        Ok(ids) => {
            let entries: Vec<Value> = ids.into_iter().map(|id| json!({ "EventId": id })).collect();
            let body = json!({ "Entries": entries, "FailedEntryCount": 0 });
            json_response(StatusCode::OK, &body)
        }
        Err(e) => {
            tracing::error!(webhook = %webhook.id, error = %e, "putting a webhook's event");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// Invokes the authorizer with HTTP API's payload 2.0 and reads its simple response.
async fn authorize(
    function: &str,
    webhook: &Webhook,
    generation: &Generation,
    req: &WebhookRequest<'_>,
) -> Result<bool, String> {
    let functions = &generation.functions;
    let idx = functions
        .index(function)
        .ok_or_else(|| format!("no function `{function}` is served"))?;
    let event = authorizer_event(webhook, generation, req);
    let report = functions
        .invoke_detached(
            idx,
            InvokeRequest {
                request_id: req.request_id.clone(),
                payload: event.to_string().into_bytes(),
                trace: req.trace.clone(),
                trigger: Trigger::Http,
            },
        )
        .await
        .map_err(|e| format!("invoking it: {}", e.message))?;
    let Outcome::Ok(payload) = &report.outcome else {
        return Err(format!("it ended {}", report.outcome.label()));
    };
    let answer: Value =
        serde_json::from_slice(payload).map_err(|e| format!("its answer is not JSON: {e}"))?;
    answer
        .get("isAuthorized")
        .and_then(Value::as_bool)
        .ok_or_else(|| "its answer has no boolean `isAuthorized` (a simple response)".to_owned())
}

/// HTTP API's Lambda authorizer event, payload format 2.0, of a `REQUEST` authorizer.
fn authorizer_event(webhook: &Webhook, generation: &Generation, req: &WebhookRequest<'_>) -> Value {
    let parts = req.parts;
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            // Repeated headers are joined with commas, as HTTP APIs join them.
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let raw_query = parts.uri.query().unwrap_or_default();
    let query: Map<String, Value> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect();
    let route_key = format!("{} {}", webhook.method, webhook.path);
    let now = SystemTime::now();
    let epoch_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    json!({
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": format!(
            "arn:aws:execute-api:{}:{}:{}/$default/{}{}",
            generation.events.region,
            nimbus_core::ACCOUNT_ID,
            webhook.id,
            webhook.method,
            webhook.path
        ),
        "identitySource": [],
        "routeKey": route_key,
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "queryStringParameters": query,
        "requestContext": {
            "accountId": nimbus_core::ACCOUNT_ID,
            "apiId": webhook.id,
            "domainName": header("host"),
            "http": {
                "method": webhook.method,
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": req.source_ip,
                "userAgent": header("user-agent"),
            },
            "requestId": req.request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": nimbus_core::time::rfc3339_millis(now),
            "timeEpoch": epoch_ms,
        },
    })
}

fn message(status: StatusCode, text: &str) -> Response {
    json_response(status, &json!({ "message": text }))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response()
}
