//! The HTTP gateway: API Gateway's REST (payload 1.0) and HTTP API (payload 2.0) proxy
//! integrations in front of the functions.

mod apigw;
mod files;
mod policy;
mod routes;
mod webhooks;
pub(crate) mod websocket;

pub(crate) use policy::Policies;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts as _, Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use nimbus_core::{HttpMethod, Outcome, Runtime};
use nimbus_store::SpanRecord;

use crate::error::ApiError;
use crate::functions::InvokeRequest;
use crate::gateway::routes::RouteTable;
use crate::generation::{Current, Generation};
use crate::telemetry::Trigger;
use crate::telemetry::trace::{self, TraceContext};
use crate::{App, ServerConfig};

/// API Gateway's and Lambda's limit for a synchronous request payload.
const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// The gateway of one app: its generations, its stage and the keys its AWS endpoint takes.
pub(crate) struct Gateway {
    pub(crate) current: Arc<Current>,
    stage: String,
    aws_keys: crate::aws::AwsKeys,
}

impl Gateway {
    pub(crate) fn new(
        current: Arc<Current>,
        stage: String,
        aws_keys: crate::aws::AwsKeys,
    ) -> Gateway {
        Gateway {
            current,
            stage,
            aws_keys,
        }
    }
}

/// The routes and policies of one generation of the app.
pub(crate) struct Routing {
    routes: RouteTable,
    policies: Policies,
    stage_path: nimbus_core::policy::StagePath,
    static_sites: files::StaticSites,
    webhooks: webhooks::Webhooks,
    websocket: nimbus_core::websocket::WebSocketApi,
    /// The `http` events of state machines. Their routes share the table with the
    /// functions' (so the same precedence, stage path and policies apply); a match's index
    /// past the functions is `functions.len() + ` an index here.
    machine_routes: Vec<MachineTarget>,
    n_functions: usize,
}

/// A route that starts an execution.
struct MachineTarget {
    machine: String,
    sync: bool,
}

impl Routing {
    /// The route table of `app`'s functions (indexed as `app.functions`) and its
    /// policies; fails if a JWKS document does not parse.
    pub(crate) fn new(app: &App) -> Result<Routing, String> {
        let policies = Policies::new(&app.policies, &app.events.region)?;
        let n_functions = app.functions.len();
        let mut routes: Vec<(usize, nimbus_core::HttpRoute)> = app
            .functions
            .iter()
            .enumerate()
            .flat_map(|(idx, f)| f.spec.http_routes.iter().map(move |r| (idx, r.clone())))
            .collect();
        let mut machine_routes = Vec::new();
        for machine in &app.events.resources.state_machines {
            for event in &machine.http {
                routes.push((n_functions + machine_routes.len(), event.route.clone()));
                machine_routes.push(MachineTarget {
                    machine: machine.name.clone(),
                    sync: event.sync,
                });
            }
        }
        let routes = RouteTable::new(routes);
        Ok(Routing {
            machine_routes,
            n_functions,
            routes,
            policies,
            stage_path: app.policies.stage_path,
            static_sites: files::StaticSites::new(&app.policies.static_sites),
            webhooks: webhooks::Webhooks::new(&app.policies.webhooks),
            websocket: app.policies.websocket.clone(),
        })
    }
}

pub(crate) fn router(current: Arc<Current>, cfg: &ServerConfig) -> Router {
    let gateway = Arc::new(Gateway::new(current, cfg.stage.clone(), cfg.aws_keys));
    Router::new().fallback(handle).with_state(gateway)
}

/// The trace a request belongs to: its W3C `traceparent`, else its X-Ray
/// `X-Amzn-Trace-Id`, else a new one.
pub(crate) fn incoming_trace(headers: &http::HeaderMap) -> TraceContext {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("traceparent")
        .and_then(TraceContext::from_traceparent)
        .or_else(|| header("x-amzn-trace-id").and_then(TraceContext::from_xray))
        .unwrap_or_else(TraceContext::new_root)
}

/// Serves one request with the generation current when it arrives, to its end.
pub(crate) async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let start = SystemTime::now();
    // The generation this request is served by, to its end, even if a reload swaps it.
    let generation = gateway.current.load();
    let trace = incoming_trace(req.headers());
    let span_id = trace::new_span_id();
    let method = req.method().clone();
    let mut route_key = None;
    let mut res = match serve(
        &gateway,
        &generation,
        peer,
        req,
        &trace,
        &span_id,
        &mut route_key,
    )
    .await
    {
        Ok(res) => res,
        Err(e) => e.into_response(),
    };
    let status = res.status().as_u16();
    let route_label = route_key.as_deref().unwrap_or("none");
    let telemetry = &generation.functions.telemetry;
    telemetry.metrics.http_request(route_label, status);
    if let Ok(value) = http::HeaderValue::from_str(&trace.trace_id) {
        res.headers_mut().insert("x-nimbus-trace-id", value);
    }
    if !telemetry.keeps_spans() {
        return res;
    }
    telemetry.span(SpanRecord {
        trace_id: trace.trace_id.clone(),
        span_id,
        parent_span_id: trace.parent_span_id.clone(),
        name: route_key.unwrap_or_else(|| format!("{method} (no route)")),
        kind: "server".to_owned(),
        start,
        end: SystemTime::now(),
        attributes: vec![
            ("http.request.method".to_owned(), method.to_string()),
            ("http.response.status_code".to_owned(), status.to_string()),
        ],
        status: if status >= 500 { "error" } else { "ok" }.to_owned(),
    });
    res
}

async fn serve(
    gateway: &Gateway,
    generation: &Generation,
    peer: SocketAddr,
    req: Request,
    trace: &TraceContext,
    span_id: &str,
    route_key: &mut Option<String>,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    if let Some(service) = crate::aws::service_of(&parts) {
        *route_key = Some(format!("aws {service:?}"));
        return Ok(crate::aws::handle(service, generation, gateway.aws_keys, parts, body).await);
    }
    let routing = &generation.routing;
    if websocket::is_upgrade(
        &parts,
        &routing.websocket,
        &gateway.stage,
        routing.stage_path,
    ) {
        *route_key = Some("websocket $connect".to_owned());
        let current = gateway.current.clone();
        let trace = trace.child_of(span_id);
        return Ok(
            websocket::connect(current, generation, &gateway.stage, parts, peer, &trace).await,
        );
    }
    // Any other upgrade may be a worker's: it answers 101 with a WebSocketPair's end.
    let socket_upgrade = if websocket::workers::wants_upgrade(&parts) {
        axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .ok()
    } else {
        None
    };
    let path = parts.uri.path();
    // A webhook's own path goes to its bus, before the app's routes (on AWS it is an API
    // of its own).
    if let Some(webhook) = routing.webhooks.find(&parts.method, path) {
        *route_key = Some(format!("webhook {}", webhook.id));
        let body = read_body(&parts, body).await?;
        let req = webhooks::WebhookRequest {
            parts: &parts,
            body: &body,
            source_ip: peer.ip().to_string(),
            request_id: crate::telemetry::trace::new_request_id(),
            trace,
        };
        return Ok(webhooks::serve(webhook, generation, req).await);
    }
    let matched = routing
        .routes
        .select(&parts.method, path, &gateway.stage, routing.stage_path);
    // With `cors: true` the Serverless Framework adds an OPTIONS method answering the
    // preflight; only a route that names OPTIONS itself reaches the function.
    let explicit_options = matched
        .as_ref()
        .is_some_and(|m| m.route.method == HttpMethod::Named("OPTIONS".to_owned()));
    if parts.method == Method::OPTIONS
        && !explicit_options
        && routing
            .routes
            .allows_cors_preflight(path, &gateway.stage, routing.stage_path)
    {
        return Ok(apigw::preflight_response(&parts.headers).map(Body::from));
    }
    let Some(matched) = matched else {
        if let Some(res) = routing.static_sites.serve(&parts.method, path).await {
            return Ok(res);
        }
        return Err(ApiError::client(StatusCode::NOT_FOUND, "Not Found"));
    };
    *route_key = Some(format!("{} {}", matched.route.method, matched.route.path));
    let request_id = crate::telemetry::trace::new_request_id();
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
        account_id: policy::ACCOUNT_ID,
        api_id: policy::API_ID,
        domain_name: host,
        authorizer: None,
        api_key: None,
    };
    let trace = trace.child_of(span_id);
    let admitted = if matched.route.has_policies() {
        let req = policy::PolicyRequest {
            matched: &matched,
            parts: &parts,
            peer: peer.ip(),
            ctx: &ctx,
            functions: &generation.functions,
            trace: &trace,
        };
        match generation.routing.policies.admit(&req).await {
            Ok(admitted) => admitted,
            Err(denied) => return Ok(denied.into_response()),
        }
    } else {
        policy::Admitted::default()
    };
    let body = read_body(&parts, body).await?;
    let function_idx = matched.function_idx;
    if let Some(target) = function_idx
        .checked_sub(routing.n_functions)
        .and_then(|idx| routing.machine_routes.get(idx))
    {
        return Ok(start_execution(
            generation,
            target,
            &body,
            request_id,
            trace,
            matched.route.cors,
        )
        .await);
    }
    let function = &generation.functions.list[function_idx];
    let ctx = apigw::EventContext {
        authorizer: admitted.authorizer.as_ref(),
        api_key: admitted
            .api_key
            .as_ref()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        ..ctx
    };
    let event = apigw::build_event(&matched, &parts, &body, &ctx);
    let api = matched.route.api;
    let cors = matched.route.cors;
    let report = generation
        .functions
        .invoke_detached(
            function_idx,
            InvokeRequest {
                request_id: request_id.clone(),
                payload: event,
                trace,
                trigger: Trigger::Http,
            },
        )
        .await?;
    if let (Some(upgrade), Outcome::Ok(payload)) = (socket_upgrade, &report.outcome)
        && function.spec.runtime == Runtime::Workers
        && let Some(accepted) = websocket::workers::accepted_socket(payload)
    {
        let user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        return Ok(websocket::workers::accept(
            gateway.current.clone(),
            generation,
            function_idx,
            accepted,
            upgrade,
            peer,
            user_agent,
        ));
    }
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
        // A trapped wasm guest is the host's 500, as `wasmtime serve` and Spin answer it;
        // a process runtime that dies is API Gateway's 502 for a failed integration.
        Outcome::Crashed(_) if function.spec.runtime == Runtime::Wasm => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"message":"Internal Server Error"}"#,
        )
            .into_response(),
        // A worker that throws, or goes over its CPU or memory limit, answers 500 as
        // Cloudflare's errors 1101 and 1102 do; the stack is in the function's log.
        Outcome::Error(_) | Outcome::OutOfMemory { .. } | Outcome::Crashed(_)
            if function.spec.runtime == Runtime::Workers =>
        {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                match &report.outcome {
                    Outcome::Error(_) => "Worker threw exception",
                    _ => "Worker exceeded resource limits",
                },
            )
                .into_response()
        }
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

/// An `http` event of a state machine: API Gateway's Step Functions integration as
/// serverless-step-functions' default template sets it up. The JSON body (`{}` when empty)
/// is the input and the request id the execution's name; the answer is StartExecution's
/// (or StartSyncExecution's), and Step Functions' error with status 400.
async fn start_execution(
    generation: &Generation,
    target: &MachineTarget,
    body: &[u8],
    request_id: String,
    trace: TraceContext,
    cors: bool,
) -> Response {
    let workflows = &generation.workflows;
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        "{}".to_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let res = match workflows.machine(&target.machine) {
        Ok(machine) => {
            let request = crate::workflows::StartRequest {
                name: Some(request_id.clone()),
                input,
                trace: Some(trace),
                parent: None,
            };
            crate::aws::stepfunctions::start(workflows, &machine, request, target.sync).await
        }
        Err(e) => Err(e.into()),
    };
    let mut res = match res {
        Ok(answer) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            answer.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    };
    let headers = res.headers_mut();
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    if cors {
        apigw::add_cors_headers(headers);
    }
    res
}

fn internal_server_error() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [(http::header::CONTENT_TYPE, "application/json")],
        r#"{"message":"Internal server error"}"#,
    )
        .into_response()
}

/// The request body, up to API Gateway's and Lambda's payload limit.
async fn read_body(parts: &http::request::Parts, body: Body) -> Result<bytes::Bytes, ApiError> {
    let declared_len = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|len| len > MAX_REQUEST_BYTES) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "Bad Request: body could not be read",
        )),
    }
}

fn too_large() -> ApiError {
    ApiError::client(StatusCode::PAYLOAD_TOO_LARGE, "Request Too Long")
}
