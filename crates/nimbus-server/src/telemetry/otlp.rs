//! Export of spans to an OpenTelemetry collector over OTLP/HTTP with JSON encoding.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use nimbus_store::SpanRecord;
use tokio::sync::mpsc;

const BATCH: usize = 512;

/// Starts the exporter task; spans sent to the returned channel are posted in batches to
/// `<endpoint>/v1/traces` at least once a second.
pub(crate) fn spawn_exporter(endpoint: String) -> mpsc::Sender<SpanRecord> {
    let (tx, rx) = mpsc::channel(8192);
    tokio::spawn(export(endpoint, rx));
    tx
}

async fn export(endpoint: String, mut rx: mpsc::Receiver<SpanRecord>) {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let Some((authority, path)) = url.strip_prefix("http://").and_then(|rest| {
        rest.split_once('/')
            .map(|(a, p)| (a.to_owned(), format!("/{p}")))
    }) else {
        tracing::warn!(
            "OTEL_EXPORTER_OTLP_ENDPOINT {endpoint:?} is not an http:// URL; spans are kept locally only"
        );
        return;
    };
    let mut batch = Vec::new();
    loop {
        let deadline = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= BATCH { break; }
                    }
                    None => {
                        if !batch.is_empty() {
                            post(&authority, &path, &batch).await;
                        }
                        return;
                    }
                },
                () = &mut deadline => break,
            }
        }
        if !batch.is_empty() {
            post(&authority, &path, &batch).await;
            batch.clear();
        }
    }
}

async fn post(authority: &str, path: &str, spans: &[SpanRecord]) {
    let body = encode(spans).to_string();
    let res = async {
        let stream = tokio::net::TcpStream::connect(authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let req = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let _ = res.into_body().collect().await;
        anyhow::ensure!(status.is_success(), "collector answered {status}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(
            "exporting {} spans to http://{authority}{path}: {e:#}",
            spans.len()
        );
    }
}

/// The OTLP JSON encoding of `ExportTraceServiceRequest` (trace and span ids in hex, as
/// the OTLP/JSON mapping requires, times as decimal strings of nanoseconds).
fn encode(spans: &[SpanRecord]) -> serde_json::Value {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|span| {
            let mut value = serde_json::json!({
                "traceId": span.trace_id,
                "spanId": span.span_id,
                "name": span.name,
                "kind": match span.kind.as_str() {
                    "server" => 2,
                    "client" => 3,
                    "producer" => 4,
                    "consumer" => 5,
                    _ => 1,
                },
                "startTimeUnixNano": nanos(span.start).to_string(),
                "endTimeUnixNano": nanos(span.end).to_string(),
                "attributes": span.attributes.iter().map(|(k, v)| serde_json::json!({
                    "key": k, "value": { "stringValue": v }
                })).collect::<Vec<_>>(),
                "status": { "code": if span.status == "ok" { 1 } else { 2 } },
            });
            if let Some(parent) = &span.parent_span_id {
                value["parentSpanId"] = serde_json::Value::String(parent.clone());
            }
            value
        })
        .collect();
    serde_json::json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "nimbus" } }
            ]},
            "scopeSpans": [{ "scope": { "name": "nimbus" }, "spans": spans }]
        }]
    })
}

fn nanos(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
