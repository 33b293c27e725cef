//! The HTTP gateway: API Gateway's REST (payload 1.0) and HTTP API (payload 2.0) proxy
//! integrations in front of the functions.

mod apigw;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use nimbus_core::{HttpMethod, Invocation, Outcome};

use crate::ServerConfig;
use crate::error::ApiError;
use crate::functions::Functions;
use crate::gateway::routes::RouteTable;

/// API Gateway's and Lambda's limit for a synchronous request payload.
const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

struct Gateway {
    functions: Arc<Functions>,
    routes: RouteTable,
    stage: String,
}

pub(crate) fn router(functions: Arc<Functions>, cfg: &ServerConfig) -> Router {
    let routes = RouteTable::new(
        functions
            .list
            .iter()
            .enumerate()
            .flat_map(|(idx, f)| f.spec.http_routes.iter().map(move |r| (idx, r.clone())))
            .collect(),
    );
    let gateway = Arc::new(Gateway {
        functions,
        routes,
        stage: cfg.stage.clone(),
    });
    Router::new().fallback(handle).with_state(gateway)
}

/// A new X-Ray style trace header value (`Root=1-<epoch hex>-<96 random bits>`), the
/// form Lambda puts in `Lambda-Runtime-Trace-Id`.
pub(crate) fn new_trace_id() -> String {
    let epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{epoch:08x}-{};Sampled=0", &random[..24])
}

async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let matched = gateway.routes.find(&parts.method, path);
    // With `cors: true` the Serverless Framework adds an OPTIONS method answering the
    // preflight; only a route that names OPTIONS itself reaches the function.
    let explicit_options = matched
        .as_ref()
        .is_some_and(|m| m.route.method == HttpMethod::Named("OPTIONS".to_owned()));
    if parts.method == Method::OPTIONS
        && !explicit_options
        && gateway.routes.allows_cors_preflight(path)
    {
        return Ok(apigw::preflight_response(&parts.headers).map(Body::from));
    }
    let Some(matched) = matched else {
        return Err(ApiError::client(StatusCode::NOT_FOUND, "Not Found"));
    };
    let declared_len = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|len| len > MAX_REQUEST_BYTES) {
        return Err(too_large());
    }
    let body = match http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => {
            return Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                "Bad Request: body could not be read",
            ));
        }
    };
    let function = &gateway.functions.list[matched.function_idx];
    let request_id = uuid::Uuid::new_v4().to_string();
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let source_ip = peer.ip().to_string();
    let ctx = apigw::EventContext {
        request_id: &request_id,
        stage: &gateway.stage,
        source_ip: &source_ip,
        time: SystemTime::now(),
        account_id: "123456789012",
        api_id: "nimbus",
        domain_name: host,
    };
    let event = apigw::build_event(&matched, &parts, &body, &ctx);
    let api = matched.route.api;
    let cors = matched.route.cors;
    let trace_id = parts
        .headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(new_trace_id);
    let invocation = Invocation {
        request_id: request_id.clone(),
        payload: event,
        trace_id,
    };
    let report = function.invoke(invocation).await?;
    let mut res = match &report.outcome {
        Outcome::Ok(payload) => match apigw::map_response(api, payload) {
            Ok(res) => res.map(Body::from).into_response(),
            Err(e) => {
                tracing::warn!(function = %function.spec.name, request_id = %request_id, "malformed Lambda proxy response: {e}");
                internal_server_error()
            }
        },
        // API Gateway's answers to an integration timeout and to a failed function.
        Outcome::Timeout(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"message":"Endpoint request timed out"}"#,
        )
            .into_response(),
        Outcome::Error(_) | Outcome::OutOfMemory { .. } | Outcome::Crashed(_) => {
            internal_server_error()
        }
    };
    let headers = res.headers_mut();
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        headers.insert("apigw-requestid", value.clone());
        headers.insert("x-amzn-requestid", value);
    }
    if cors {
        apigw::add_cors_headers(headers);
    }
    Ok(res)
}

fn internal_server_error() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [(http::header::CONTENT_TYPE, "application/json")],
        r#"{"message":"Internal server error"}"#,
    )
        .into_response()
}

fn too_large() -> ApiError {
    ApiError::client(StatusCode::PAYLOAD_TOO_LARGE, "Request Too Long")
}
