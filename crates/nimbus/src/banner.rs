//! What `nimbus up` and `nimbus dev` print once serving: the URLs to call, the schedules
//! with their next fire, the event sources wired, and the events nimbus does not serve.

use std::net::SocketAddr;
use std::time::SystemTime;

use nimbus_core::events::{EventSource, ScheduleEvent};
use nimbus_core::manifest::Manifest;
use nimbus_core::policy::StagePath;
use nimbus_core::{ApiKind, HttpRoute};

/// The banner's lines after `listening on`, each to be indented by the caller; `scheme`
/// is `http` or `https`. `next_fire` says when a schedule fires next (it knows the
/// schedule's stored anchor).
pub(crate) fn lines(
    manifest: &Manifest,
    scheme: &str,
    gateway: SocketAddr,
    next_fire: &mut dyn FnMut(&ScheduleEvent) -> Option<SystemTime>,
) -> Vec<String> {
    let mut routes = Vec::new();
    let mut sources = Vec::new();
    let mut ignored = Vec::new();
    for spec in &manifest.functions {
        for route in &spec.http_routes {
            let url = route_url(
                route,
                &format!("{scheme}://{gateway}"),
                &manifest.stage,
                manifest.policies.stage_path,
            );
            routes.push(format!(
                "{:<7} {url} -> {}",
                route.method.to_string(),
                spec.name
            ));
        }
        for source in &spec.events {
            sources.push(format!(
                "{} -> {}",
                source_text(source, next_fire),
                spec.name
            ));
        }
        for kind in &spec.ignored_events {
            ignored.push(format!(
                "`{kind}` event of {} (not yet served by nimbus)",
                spec.name
            ));
        }
    }
    for webhook in &manifest.policies.webhooks {
        routes.push(format!(
            "{:<7} {scheme}://{gateway}{} -> webhook {} (bus {})",
            webhook.method, webhook.path, webhook.id, webhook.bus
        ));
    }
    // The WebSocket API at its stage, where `serverless deploy` prints
    // `wss://API.execute-api.REGION.amazonaws.com/{stage}`.
    let websocket = &manifest.policies.websocket;
    if websocket.is_served() {
        let path = match manifest.policies.stage_path {
            StagePath::Off => String::new(),
            StagePath::Optional | StagePath::Required => format!("/{}", manifest.stage),
        };
        let websocket_routes: Vec<String> = websocket
            .routes
            .iter()
            .map(|route| format!("{} -> {}", route.route_key, route.function))
            .collect();
        routes.push(format!(
            "{:<7} ws://{gateway}{path} ({})",
            "WS",
            websocket_routes.join(", ")
        ));
    }
    let mut out = Vec::new();
    if routes.is_empty() {
        out.push("no HTTP routes".to_owned());
    }
    out.extend(routes);
    if !sources.is_empty() {
        out.push("events:".to_owned());
        out.extend(sources.into_iter().map(|line| format!("  {line}")));
    }
    if !ignored.is_empty() {
        out.push("not served:".to_owned());
        out.extend(ignored.into_iter().map(|line| format!("  {line}")));
    }
    out
}

/// The dashboard's address on the control port, with the admin token so the link signs
/// in (as Jupyter prints its link); the page then drops the token from the address bar.
pub(crate) fn dashboard_line(admin: SocketAddr, admin_token: &str) -> String {
    format!("dashboard: http://{admin}/_nimbus/login?token={admin_token}")
}

/// The URL to call for `route`: a REST route under its stage unless the stage path is
/// off (noting the other form when both answer); an HTTP API route at its own path.
fn route_url(route: &HttpRoute, gateway: &str, stage: &str, stage_path: StagePath) -> String {
    let path = if route.path == "*" { "/*" } else { &route.path };
    match (route.api, stage_path) {
        (ApiKind::Http, _) | (ApiKind::Rest, StagePath::Off) => format!("{gateway}{path}"),
        (ApiKind::Rest, StagePath::Required) => format!("{gateway}/{stage}{path}"),
        (ApiKind::Rest, StagePath::Optional) => {
            format!("{gateway}/{stage}{path} (also {path})")
        }
    }
}

fn source_text(
    source: &EventSource,
    next_fire: &mut dyn FnMut(&ScheduleEvent) -> Option<SystemTime>,
) -> String {
    match source {
        EventSource::Sqs(sqs) => format!("sqs {} (batch {})", sqs.queue, sqs.batch_size),
        EventSource::Sns(sns) => format!("sns {}", sns.topic),
        EventSource::Stream(stream) => {
            match nimbus_core::streams::table_of_stream(&stream.stream) {
                Some(table) => format!("dynamodb {table} (batch {})", stream.batch_size),
                None => format!("kinesis {} (batch {})", stream.stream, stream.batch_size),
            }
        }
        EventSource::S3(s3) => format!("s3 {} ({})", s3.bucket, s3.events.join(", ")),
        EventSource::EventBridge(rule) => match &rule.pattern {
            Some(pattern) => format!("eventBridge {} {pattern}", rule.bus),
            None => format!("eventBridge {}", rule.bus),
        },
        EventSource::Schedule(schedule) if !schedule.enabled => {
            format!(
                "schedule {} {} (disabled)",
                schedule.name, schedule.expression
            )
        }
        EventSource::Schedule(schedule) => {
            let next = match next_fire(schedule) {
                Some(at) => format!("next {}", nimbus_core::time::rfc3339_millis(at)),
                None => "never fires again".to_owned(),
            };
            format!(
                "schedule {} {} ({next})",
                schedule.name, schedule.expression
            )
        }
    }
}
