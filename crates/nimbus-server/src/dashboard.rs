//! The web dashboard at `/_nimbus` on the control port: server-rendered pages (a little
//! JS for the live log tail) over the same store readers and service operations the CLI
//! and the services API use, behind the admin token (a sign-in page sets a cookie).

mod html;
mod observe;
mod resources;
mod workflows;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;

use crate::Shutdown;
use crate::api::{Api, ApiState};

pub(crate) use html::not_found;

/// Where the dashboard is mounted on the control port.
pub(crate) const PREFIX: &str = "/_nimbus";

const STYLE_CSS: &str = include_str!("dashboard/style.css");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");

/// What the dashboard's handlers share.
pub(crate) struct DashboardState {
    pub(crate) api: Arc<ApiState>,
    /// Ends live tails when the server stops, so they do not hold its drain.
    pub(crate) shutdown: Shutdown,
    /// Which tokens sign in.
    gate: Gate,
}

/// Which tokens sign in to a dashboard.
enum Gate {
    /// The control API's admin token (`nimbus up`).
    AdminToken,
    /// Whatever the host says (`nimbus server`: its admin tokens).
    Check(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

/// The dashboard of `nimbus server`, on its admin port at `/_nimbus`: a sign-in page for
/// its admin tokens, the apps with their aliases and versions, and each app's pages for
/// the version `live` serves.
#[derive(Clone)]
pub struct AppsDashboard {
    router: Router,
}

/// The app a `nimbus server` dashboard request was routed to, after its token was checked.
#[derive(Clone)]
struct Scoped {
    generation: Arc<crate::generation::Generation>,
    prefix: String,
}

struct AppsState {
    dashboard: Arc<DashboardState>,
    apps: Arc<crate::apps::Apps>,
    pages: Router,
}

/// A signed-in request: the control port's view (the generation current when it came)
/// and the prefix links are made with.
pub(crate) struct Dash {
    pub(crate) api: Api,
    pub(crate) prefix: String,
    pub(crate) shutdown: Shutdown,
}

/// The dashboard's routes, all under `PREFIX`, to be merged into the control port's.
pub(crate) fn router(api: Arc<ApiState>, shutdown: Shutdown) -> Router {
    pages(Arc::new(DashboardState {
        api,
        shutdown,
        gate: Gate::AdminToken,
    }))
}

fn pages(state: Arc<DashboardState>) -> Router {
    let routes: Vec<(&str, axum::routing::MethodRouter<Arc<DashboardState>>)> = vec![
        ("", get(observe::overview)),
        ("/", get(observe::overview)),
        ("/functions/{name}", get(observe::function)),
        ("/invocations/{request_id}", get(observe::invocation)),
        ("/logs", get(observe::logs)),
        ("/logs/stream", get(observe::log_stream)),
        ("/cost", get(observe::cost)),
        ("/queues", get(resources::queues)),
        ("/queues/{queue}/redrive", post(resources::redrive)),
        ("/topics", get(resources::topics)),
        ("/buckets", get(resources::buckets)),
        ("/buckets/{bucket}", get(resources::bucket)),
        ("/kv", get(resources::kv_namespaces)),
        ("/kv/{namespace}", get(resources::kv_namespace)),
        ("/schedules", get(resources::schedules)),
        ("/tables", get(resources::tables)),
        ("/tables/{table}", get(resources::table)),
        ("/streams", get(resources::streams)),
        ("/durable-objects", get(resources::durable_objects)),
        (
            "/durable-objects/{class}/{id}",
            get(resources::durable_object),
        ),
        ("/workflows", get(workflows::machines)),
        ("/workflows/{name}", get(workflows::machine)),
        ("/executions/{arn}", get(workflows::execution)),
        ("/login", get(sign_in_page).post(sign_in)),
        ("/logout", post(sign_out)),
        ("/assets/style.css", get(style)),
        ("/assets/dashboard.js", get(script)),
        // Any other path under the prefix: the 404 page (for the signed in).
        ("/{*rest}", get(unknown_page).post(unknown_page)),
    ];
    let mut router = Router::new();
    for (path, route) in routes {
        router = router.route(&format!("{PREFIX}{path}"), route);
    }
    router.with_state(state)
}

impl FromRequestParts<Arc<DashboardState>> for Dash {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<DashboardState>,
    ) -> Result<Dash, Response> {
        // `nimbus server`'s dashboard checked the token and chose the app already.
        if let Some(scoped) = parts.extensions.get::<Scoped>().cloned() {
            return Ok(Dash {
                api: Api::for_generation(scoped.generation, state.api.clone()),
                prefix: scoped.prefix,
                shutdown: state.shutdown.clone(),
            });
        }
        if !signed_in(state, &parts.headers) {
            return Err(refuse(&parts.method));
        }
        if let crate::api::Source::Many(_) = state.api.apps {
            return Err(not_found(
                PREFIX,
                "Choose an app first: its pages are under /_nimbus/apps/SERVICE/STAGE/.",
            ));
        }
        let api = Api::from_request_parts(parts, &state.api)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Dash {
            api,
            prefix: PREFIX.to_owned(),
            shutdown: state.shutdown.clone(),
        })
    }
}

/// Whether the request carries a token that signs in, as a bearer token or the cookie.
fn signed_in(state: &DashboardState, headers: &HeaderMap) -> bool {
    session_allows(headers, &|token| token_matches(state, token))
}

/// Whether the request's bearer token or dashboard cookie is one `is_valid` accepts (the
/// deploys page's buttons, served by `nimbus server`'s host).
pub(crate) fn session_allows(headers: &HeaderMap, is_valid: &dyn Fn(&str) -> bool) -> bool {
    crate::api::bearer(headers).is_some_and(is_valid)
        || session_token(headers).is_some_and(|token| is_valid(&token))
}

/// Text percent-encoded for a query string value.
pub(crate) fn query_value(text: &str) -> String {
    html::seg(text)
}

/// The answer to a request that is not signed in: the sign-in page for a `GET`, 401
/// for anything else.
fn refuse(method: &http::Method) -> Response {
    if method == http::Method::GET {
        return Redirect::to(&format!("{PREFIX}/login")).into_response();
    }
    (StatusCode::UNAUTHORIZED, "sign in to the dashboard first").into_response()
}

fn token_matches(state: &DashboardState, token: &str) -> bool {
    match &state.gate {
        Gate::AdminToken => {
            crate::admin::constant_time_eq(token.as_bytes(), state.api.admin_token.as_bytes())
        }
        Gate::Check(check) => check(token),
    }
}

/// The cookie's name: one per port, since browsers share cookies between the ports of a
/// host and two apps on one machine have two tokens.
fn cookie_name(headers: &HeaderMap) -> String {
    let port = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|host| host.rsplit_once(':'))
        .map(|(_, port)| port)
        .filter(|port| port.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("80");
    format!("nimbus_dashboard_{port}")
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    let name = cookie_name(headers);
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The sign-in form; `?token=` (the link `nimbus up` prints) signs in at once.
async fn sign_in_page(
    axum::extract::State(state): axum::extract::State<Arc<DashboardState>>,
    headers: HeaderMap,
    uri: http::Uri,
) -> Response {
    let token = crate::api::query(&uri).remove("token");
    match token {
        Some(token) => sign_in_with(&state, &headers, &token),
        None => sign_in_form(StatusCode::OK, None),
    }
}

async fn sign_in(
    axum::extract::State(state): axum::extract::State<Arc<DashboardState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = form_urlencoded::parse(&body)
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    sign_in_with(&state, &headers, &token)
}

fn sign_in_with(state: &DashboardState, headers: &HeaderMap, token: &str) -> Response {
    if !token_matches(state, token) {
        return sign_in_form(
            StatusCode::UNAUTHORIZED,
            Some("That token is not this server's admin token."),
        );
    }
    // HttpOnly keeps it from scripts; SameSite=Strict keeps other sites' forms (a redrive
    // posted from elsewhere) from carrying it.
    let cookie = format!(
        "{}={token}; Path={PREFIX}; HttpOnly; SameSite=Strict",
        cookie_name(headers)
    );
    (
        StatusCode::SEE_OTHER,
        [
            (http::header::SET_COOKIE, cookie),
            (http::header::LOCATION, format!("{PREFIX}/")),
        ],
    )
        .into_response()
}

async fn sign_out(headers: HeaderMap) -> Response {
    let cookie = format!(
        "{}=; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age=0",
        cookie_name(&headers)
    );
    (
        StatusCode::SEE_OTHER,
        [
            (http::header::SET_COOKIE, cookie),
            (http::header::LOCATION, format!("{PREFIX}/login")),
        ],
    )
        .into_response()
}

fn sign_in_form(status: StatusCode, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"notice\" role=\"alert\">{}</p>", html::esc(e)))
        .unwrap_or_default();
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\"><title>Sign in · nimbus</title>\
<link rel=\"stylesheet\" href=\"{PREFIX}/assets/style.css\"></head>\
<body class=\"sign-in\"><main><h1>nimbus dashboard</h1>{error}\
<form method=\"post\" action=\"{PREFIX}/login\"><label for=\"token\">Admin token</label>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
<button type=\"submit\">Sign in</button></form>\
<p class=\"hint\"><code>nimbus up</code> prints a link that signs you in; its token is also \
<code>token</code> in <code>.nimbus/up.json</code>. On <code>nimbus server</code>, use a token \
from <code>nimbus server token create</code>.</p></main></body></html>\n"
    );
    (status, Html(page)).into_response()
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (http::header::CONTENT_TYPE, content_type),
            (http::header::CACHE_CONTROL, "max-age=300"),
        ],
        text,
    )
        .into_response()
}

/// Any other path: a 404 page for the signed in, the sign-in page for others.
async fn unknown_page(dash: Dash, uri: http::Uri) -> Response {
    not_found(
        &dash.prefix,
        &format!("There is no dashboard page at {}.", uri.path()),
    )
}

/// A response body fed by a channel: the live tail's server-sent events.
pub(crate) struct EventStream(pub(crate) mpsc::Receiver<Bytes>);

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

impl AppsDashboard {
    /// The dashboard of the apps in `apps`; `is_admin_token` says whether a token signs in.
    pub fn new(
        apps: Arc<crate::apps::Apps>,
        is_admin_token: Arc<dyn Fn(&str) -> bool + Send + Sync>,
        shutdown: Shutdown,
    ) -> AppsDashboard {
        let api = Arc::new(ApiState {
            apps: crate::api::Source::Many(apps.clone()),
            // Never used: the gate below decides who signs in.
            admin_token: uuid::Uuid::new_v4().simple().to_string(),
        });
        let dashboard = Arc::new(DashboardState {
            api,
            shutdown,
            gate: Gate::Check(is_admin_token),
        });
        let pages = pages(dashboard.clone());
        let state = Arc::new(AppsState {
            dashboard,
            apps,
            pages: pages.clone(),
        });
        let router = Router::new()
            .route(PREFIX, get(apps_index))
            .route(&format!("{PREFIX}/"), get(apps_index))
            .route(
                &format!("{PREFIX}/apps/{{service}}/{{stage}}"),
                axum::routing::any(scoped_page),
            )
            .route(
                &format!("{PREFIX}/apps/{{service}}/{{stage}}/"),
                axum::routing::any(scoped_page),
            )
            .route(
                &format!("{PREFIX}/apps/{{service}}/{{stage}}/{{*rest}}"),
                axum::routing::any(scoped_page),
            )
            .with_state(state)
            // Sign-in, sign-out, assets and unknown paths.
            .fallback_service(pages);
        AppsDashboard { router }
    }

    /// The dashboard's routes (under `/_nimbus`), for the admin API to serve beside its
    /// own.
    pub(crate) fn router(&self) -> Router {
        self.router.clone()
    }

    /// Whether a request to `path` is the dashboard's.
    pub fn handles(path: &str) -> bool {
        path == PREFIX || path.starts_with(&format!("{PREFIX}/"))
    }

    /// Answers a request whose path `handles` said is the dashboard's.
    pub async fn serve(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<DashboardBody> {
        let res = match tower_service::Service::call(&mut self.router.clone(), req).await {
            Ok(res) => res,
            Err(infallible) => match infallible {},
        };
        res.map(|body| DashboardBody(std::sync::Mutex::new(body)))
    }
}

/// `nimbus server`'s list of apps, each with its aliases and their versions.
async fn apps_index(
    axum::extract::State(state): axum::extract::State<Arc<AppsState>>,
    headers: HeaderMap,
    method: http::Method,
    uri: http::Uri,
) -> Response {
    if !signed_in(&state.dashboard, &headers) {
        return refuse(&method);
    }
    let mut body = String::new();
    let query = crate::api::query(&uri);
    if let Some(done) = query.get("done") {
        let _ = write!(
            body,
            "<p class=\"notice\" role=\"status\">{}.</p>",
            html::esc(done)
        );
    }
    if let Some(error) = query.get("error") {
        let _ = write!(
            body,
            "<p class=\"notice\" role=\"alert\">{}</p>",
            html::esc(error)
        );
    }
    body.push_str(
        "<table class=\"apps\"><thead><tr><th>Service</th><th>Stage</th><th>Aliases → versions (weight %)</th><th>Deploys</th></tr></thead><tbody>",
    );
    let routes = state.apps.routes();
    for (service, stage, aliases) in &routes {
        let base = format!("{PREFIX}/apps/{}/{}", html::seg(service), html::seg(stage));
        // Promote moves `live` fully to its canary, so it is offered only with one.
        let has_canary = aliases
            .iter()
            .any(|(alias, targets)| alias == "live" && targets.len() > 1);
        let promote = if has_canary {
            format!(
                "<form method=\"post\" action=\"{base}/promote\"><button type=\"submit\" data-promote>Promote canary</button></form>"
            )
        } else {
            String::new()
        };
        let actions = format!(
            "{promote}<form method=\"post\" action=\"{base}/rollback\"><button type=\"submit\" data-rollback>Roll back</button></form>"
        );
        let aliases: Vec<String> = aliases
            .iter()
            .map(|(alias, targets)| {
                let targets: Vec<String> = targets
                    .iter()
                    .map(|(version, weight)| format!("v{version} ({weight}%)"))
                    .collect();
                format!("<code>{}</code> → {}", html::esc(alias), targets.join(", "))
            })
            .collect();
        body.push_str(&format!(
            "<tr data-app=\"{}/{}\"><th scope=\"row\"><a href=\"{base}/\">{}</a></th><td>{}</td><td class=\"aliases\">{}</td><td class=\"actions\">{actions}</td></tr>",
            html::esc(service),
            html::esc(stage),
            html::esc(service),
            html::esc(stage),
            aliases.join("<br>"),
        ));
    }
    body.push_str("</tbody></table>");
    if routes.is_empty() {
        body.push_str(
            "<p class=\"empty\">Nothing is deployed yet: <code>nimbus deploy</code>.</p>",
        );
    }
    html::plain_page(PREFIX, "Apps", &body)
}

/// An app's page: checks the token, finds the version `live` serves first, and hands the
/// request to the pages with that version's generation and the app's prefix.
async fn scoped_page(
    axum::extract::State(state): axum::extract::State<Arc<AppsState>>,
    req: axum::extract::Request,
) -> Response {
    if !signed_in(&state.dashboard, req.headers()) {
        return refuse(req.method());
    }
    let path = req.uri().path().to_owned();
    let rest = path
        .strip_prefix(&format!("{PREFIX}/apps/"))
        .unwrap_or_default();
    let mut parts = rest.splitn(3, '/');
    let (service, stage) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let inner = parts.next().unwrap_or_default();
    let Some((_version, generation)) = state.apps.live_generation(service, stage) else {
        return not_found(
            PREFIX,
            &format!("Nothing is deployed at {service}/{stage}."),
        );
    };
    let target = match req.uri().query() {
        Some(query) => format!("{PREFIX}/{inner}?{query}"),
        None => format!("{PREFIX}/{inner}"),
    };
    let Ok(uri) = target.parse::<http::Uri>() else {
        return not_found(PREFIX, "That is not a dashboard address.");
    };
    // A new request rather than the same one with another URI: this route's path
    // parameters live in its extensions, and the pages' routes have their own.
    let (parts, body) = req.into_parts();
    let mut req = axum::extract::Request::new(body);
    *req.method_mut() = parts.method;
    *req.uri_mut() = uri;
    *req.headers_mut() = parts.headers;
    req.extensions_mut().insert(Scoped {
        generation,
        prefix: format!("{PREFIX}/apps/{service}/{stage}"),
    });
    match tower_service::Service::call(&mut state.pages.clone(), req).await {
        Ok(res) => res,
        Err(infallible) => match infallible {},
    }
}

/// A dashboard answer's body as hyper serves it; it never fails (the pages' bodies are
/// buffers and the live tail's channel). The mutex makes it `Sync`, as boxed bodies must
/// be; polling takes `&mut self`, so it is never locked.
pub struct DashboardBody(std::sync::Mutex<axum::body::Body>);

impl hyper::body::Body for DashboardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let body = self
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!("a dashboard answer failed: {e}");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
