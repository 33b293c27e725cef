//! The control API on loopback, behind bearer tokens: Lambda's Invoke API, the function
//! list, metrics, and (from `api.rs`) the services.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use nimbus_core::Outcome;

use crate::ServerConfig;
use crate::api::{Api, ApiState};
use crate::error::ApiError;
use crate::functions::InvokeRequest;
use crate::generation::Current;
use crate::telemetry::{QueueDepth, Trigger};

/// Lambda's synchronous payload limit applies to direct invocations too.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

pub(crate) fn router(current: Arc<Current>, cfg: &ServerConfig) -> Router {
    let state = Arc::new(ApiState {
        current,
        admin_token: cfg.admin_token.clone(),
    });
    Router::new()
        // The path of Lambda's Invoke API, so tools that speak it find their way.
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route("/functions", get(list))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
        .with_state(state.clone())
        .merge(crate::api::routes(state))
}

async fn invoke(
    api: Api,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Functions may invoke the functions they are granted (`lambda:InvokeFunction`).
    api.authorize(
        &headers,
        "lambda:InvokeFunction",
        &format!("function:{name}"),
    )?;
    let Some(function_idx) = api.generation.functions.index(&name) else {
        return Err(ApiError::typed(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: {name}"),
        ));
    };
    let payload = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    if serde_json::from_slice::<serde_json::Value>(&payload).is_err() {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "the event must be JSON",
        ));
    }
    let trace = crate::gateway::incoming_trace(&headers);
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    match invocation_type {
        "RequestResponse" => {}
        "Event" => {
            let payload = String::from_utf8_lossy(&payload).into_owned();
            let sent = api
                .events
                .invoke_async(&name, payload, &trace, "event")
                .await?;
            let body = serde_json::json!({ "messageId": sent.message_id }).to_string();
            // Lambda's Invoke API answers an accepted `Event` invocation with 202.
            return Ok((
                StatusCode::ACCEPTED,
                [(http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response());
        }
        "DryRun" => return Ok(StatusCode::NO_CONTENT.into_response()),
        other => {
            return Err(ApiError::typed(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                format!(
                    "X-Amz-Invocation-Type {other:?} is not one of RequestResponse, Event, DryRun"
                ),
            ));
        }
    }
    let request_id = crate::telemetry::trace::new_request_id();
    let report = api
        .generation
        .functions
        .invoke_detached(
            function_idx,
            InvokeRequest {
                request_id: request_id.clone(),
                payload: payload.to_vec(),
                trace: trace.clone(),
                trigger: Trigger::Invoke,
            },
        )
        .await?;
    let outcome = &report.outcome;
    let mut res = (StatusCode::OK, outcome.payload(&request_id)).into_response();
    let headers = res.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("content-type", "application/json".to_owned());
    set("x-amz-request-id", request_id);
    set("x-amz-executed-version", "$LATEST".to_owned());
    set("x-nimbus-outcome", outcome.label().to_owned());
    set("x-nimbus-cold-start", report.cold_start.to_string());
    set("x-nimbus-trace-id", trace.trace_id);
    if !matches!(outcome, Outcome::Ok(_)) {
        // As Lambda's Invoke API: status 200, the error in the body, flagged by this header.
        set("x-amz-function-error", "Unhandled".to_owned());
    }
    Ok(res)
}

async fn list(api: Api, headers: HeaderMap) -> Result<Response, ApiError> {
    api.authorize_operator(&headers)?;
    let functions: Vec<serde_json::Value> = api
        .generation
        .functions
        .list
        .iter()
        .map(|f| {
            let stats = f.executor.stats();
            serde_json::json!({
                "name": f.spec.name,
                "runtime": f.spec.runtime.to_string(),
                "memoryMb": f.spec.memory_mb,
                "instances": stats.n_instances,
                "busy": stats.n_busy,
            })
        })
        .collect();
    let body = serde_json::json!({ "functions": functions }).to_string();
    Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Prometheus text exposition (scrape it with `authorization: { credentials: <token> }`).
async fn metrics(api: Api, headers: HeaderMap) -> Result<Response, ApiError> {
    api.authorize_operator(&headers)?;
    let functions = &api.generation.functions;
    let depths = api
        .events
        .store(|store| {
            let mut depths = Vec::new();
            for queue in store.list_queues()? {
                if queue.starts_with(crate::events::INTERNAL_QUEUE_PREFIX) {
                    continue;
                }
                let stats = store.queue_stats(&queue)?;
                let depth = QueueDepth {
                    visible: stats.visible,
                    in_flight: stats.in_flight,
                    delayed: stats.delayed,
                    oldest_age_seconds: stats.oldest_age.map_or(0.0, |age| age.as_secs_f64()),
                };
                depths.push((queue, depth));
            }
            Ok(depths)
        })
        .await?;
    for (queue, depth) in &depths {
        functions.telemetry.metrics.set_queue(queue, depth);
    }
    let text = functions.telemetry.metrics.render(
        functions
            .list
            .iter()
            .map(|f| (f.spec.name.as_str(), f.executor.stats())),
    );
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Compares without an early exit, so the token cannot be guessed byte by byte by timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
