//! The web dashboard at `/_nimbus` on the control port: server-rendered pages (a little
//! JS for the live log tail) over the same store readers and service operations the CLI
//! and the services API use, behind the admin token (a sign-in page sets a cookie).

mod html;
mod observe;
mod resources;

use std::convert::Infallible;
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

/// A proxy in front (`nimbus server`) names the prefix its users see in this header; it is
/// believed only on requests that carry the admin token as a bearer token.
const PREFIX_HEADER: &str = "x-nimbus-dashboard-prefix";

const STYLE_CSS: &str = include_str!("dashboard/style.css");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");

/// What the dashboard's handlers share.
pub(crate) struct DashboardState {
    pub(crate) api: Arc<ApiState>,
    /// Ends live tails when the server stops, so they do not hold its drain.
    pub(crate) shutdown: Shutdown,
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
    let state = Arc::new(DashboardState { api, shutdown });
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
        let api = Api::from_request_parts(parts, &state.api)
            .await
            .map_err(IntoResponse::into_response)?;
        let by_bearer = api.authorize_operator(&parts.headers).is_ok();
        let by_cookie =
            session_token(&parts.headers).is_some_and(|token| token_matches(&state.api, &token));
        if !by_bearer && !by_cookie {
            let prefix = prefix(&parts.headers, false);
            if parts.method == http::Method::GET {
                return Err(Redirect::to(&format!("{prefix}/login")).into_response());
            }
            return Err(
                (StatusCode::UNAUTHORIZED, "sign in to the dashboard first").into_response()
            );
        }
        Ok(Dash {
            api,
            prefix: prefix(&parts.headers, by_bearer),
            shutdown: state.shutdown.clone(),
        })
    }
}

/// The prefix of links: `PREFIX`, or what a trusted proxy says.
fn prefix(headers: &HeaderMap, trusted: bool) -> String {
    let proxied = headers
        .get(PREFIX_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|p| trusted && p.starts_with('/') && !p.contains(['"', '<', '>', '\'']));
    proxied.unwrap_or(PREFIX).trim_end_matches('/').to_owned()
}

fn token_matches(state: &ApiState, token: &str) -> bool {
    crate::admin::constant_time_eq(token.as_bytes(), state.admin_token.as_bytes())
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
    if !token_matches(&state.api, token) {
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
