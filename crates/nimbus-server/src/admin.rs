//! The control API on loopback, behind bearer tokens: Lambda's Invoke API, the function
//! list, metrics, and (from `api.rs`) the services.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::HeaderMap;

use crate::api::{Api, ApiState, Source};
use crate::error::ApiError;
use crate::generation::Current;
use crate::services;
use crate::telemetry::QueueDepth;
use crate::{ServerConfig, Shutdown};

/// Lambda's synchronous payload limit applies to direct invocations too.
const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

pub(crate) fn router(current: Arc<Current>, cfg: &ServerConfig, shutdown: &Shutdown) -> Router {
    let state = Arc::new(ApiState {
        apps: Source::One(current),
        admin_token: cfg.admin_token.clone(),
    });
    with_state(state.clone()).merge(crate::dashboard::router(state, shutdown.clone()))
}

/// The control API of many apps (`nimbus server`): each call is served by the app of the
/// function whose token it carries. No operator token is accepted here.
pub(crate) fn router_for_apps(apps: Arc<crate::apps::Apps>) -> Router {
    with_state(Arc::new(ApiState {
        apps: Source::Many(apps),
        // Never disclosed: the operator of `nimbus server` uses its admin API instead.
        admin_token: uuid::Uuid::new_v4().simple().to_string(),
    }))
}

fn with_state(state: Arc<ApiState>) -> Router {
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
    let principal = api.principal(&headers)?;
    let trace = crate::gateway::incoming_trace(&headers);
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    let invoked = services::invoke_function(
        &api.generation,
        principal,
        &name,
        body,
        invocation_type,
        &trace,
    )
    .await?;
    Ok(invoked.into_response(&trace))
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
            // Why each instance is warm (`nimbus top`'s WHY), by reason.
            let warm: serde_json::Map<String, serde_json::Value> = f
                .executor
                .warm_reasons()
                .iter()
                .map(|(reason, n)| (reason.label().to_owned(), n.into()))
                .collect();
            serde_json::json!({
                "name": f.spec.name,
                "runtime": f.spec.runtime.to_string(),
                "memoryMb": f.spec.memory_mb,
                "instances": stats.n_instances,
                "busy": stats.n_busy,
                "warm": warm,
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
    let queues = &api.events.queues;
    let mut depths = Vec::new();
    for queue in queues.list_queues().await? {
        if queue.starts_with(crate::events::INTERNAL_QUEUE_PREFIX) {
            continue;
        }
        let stats = queues.queue_stats(queue.clone()).await?;
        let depth = QueueDepth {
            visible: stats.visible,
            in_flight: stats.in_flight,
            delayed: stats.delayed,
            oldest_age_seconds: stats.oldest_age.map_or(0.0, |age| age.as_secs_f64()),
        };
        depths.push((queue, depth));
    }
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
