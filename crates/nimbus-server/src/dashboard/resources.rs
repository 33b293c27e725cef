//! The service pages: queues (with a redrive action), topics, buckets and KV browsers,
//! schedules with their next fire, tables, streams and Durable Objects' storage. Each reads through the operations
//! the services API calls, as the operator.

use std::fmt::Write as _;
use std::time::SystemTime;

use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use nimbus_core::durable_objects::{DurableObjectStore as _, ListOptions, ObjectName};
use nimbus_core::events::EventSource;

use super::Dash;
use super::html::{self, Cell, Table, esc, seg};
use crate::error::ApiError;
use crate::services::{self, Principal};

/// Objects, keys and items a browser page shows at most.
const BROWSE_LIMIT: usize = 100;

/// Links to the functions with an event source `source` accepts.
fn functions_with(dash: &Dash, source: impl Fn(&EventSource) -> bool) -> Vec<String> {
    dash.api
        .generation
        .functions
        .list
        .iter()
        .filter(|f| f.spec.events.iter().any(&source))
        .map(|f| function_link(&dash.prefix, &f.spec.name))
        .collect()
}

fn function_link(prefix: &str, name: &str) -> String {
    format!(
        "<a href=\"{prefix}/functions/{}\">{}</a>",
        seg(name),
        esc(name)
    )
}

/// A list of links, one per item, or a note when there are none.
fn link_list(items: impl IntoIterator<Item = (String, String)>, empty: &str) -> String {
    let mut body = String::from("<ul class=\"plain\">");
    let mut n_items = 0;
    for (href, label) in items {
        n_items += 1;
        let _ = write!(body, "<li><a href=\"{href}\">{}</a></li>", esc(&label));
    }
    body.push_str("</ul>");
    if n_items == 0 {
        let _ = write!(body, "<p class=\"empty\">{}</p>", esc(empty));
    }
    body
}

pub(crate) async fn queues(dash: Dash, uri: http::Uri) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let events = &dash.api.events;
    let queues = services::list_queues(events, Principal::Operator).await?;
    let specs = {
        let names: Vec<String> = queues.iter().map(|(name, _)| name.clone()).collect();
        events
            .store(move |store| {
                let mut specs = Vec::new();
                for name in names {
                    specs.push(store.queue(&name)?);
                }
                Ok(specs)
            })
            .await?
    };
    let mut body = String::new();
    let query = crate::api::query(&uri);
    if let (Some(moved), Some(to)) = (query.get("moved"), query.get("to")) {
        let _ = write!(
            body,
            "<p class=\"notice\" role=\"status\">Moved {} messages back to {}.</p>",
            esc(moved),
            esc(to)
        );
    }
    let mut table = Table::new(
        "queues",
        &[
            "Queue",
            "Visible",
            "In flight",
            "Delayed",
            "Oldest",
            "Dead-letter queue",
            "Consumers",
            "",
        ],
    );
    for ((name, stats), spec) in queues.iter().zip(&specs) {
        let consumers = functions_with(
            &dash,
            |e| matches!(e, EventSource::Sqs(sqs) if sqs.queue == *name),
        );
        // A queue some other queue's redrive policy names is a dead-letter queue.
        let sources: Vec<&str> = queues
            .iter()
            .zip(&specs)
            .filter(|(_, s)| {
                s.as_ref()
                    .and_then(|s| s.redrive.as_ref())
                    .is_some_and(|r| r.dead_letter_queue == *name)
            })
            .map(|((source, _), _)| source.as_str())
            .collect();
        let dlq = spec
            .as_ref()
            .and_then(|s| s.redrive.as_ref())
            .map(|r| {
                format!(
                    "{} (after {} receives)",
                    esc(&r.dead_letter_queue),
                    r.max_receive_count
                )
            })
            .unwrap_or_else(|| "-".to_owned());
        let action = if sources.is_empty() {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"{prefix}/queues/{}/redrive\">\
<button type=\"submit\" data-redrive=\"{}\">Redrive to {}</button></form>",
                seg(name),
                esc(name),
                esc(&sources.join(", "))
            )
        };
        table.row(
            &format!("data-queue=\"{}\"", esc(name)),
            [
                Cell::Head(format!(
                    "{}{}",
                    esc(name),
                    if sources.is_empty() {
                        ""
                    } else {
                        " <small>(DLQ)</small>"
                    }
                )),
                Cell::Classed("visible", stats.visible.to_string()),
                Cell::Classed("in-flight", stats.in_flight.to_string()),
                Cell::Data(stats.delayed.to_string()),
                Cell::Data(stats.oldest_age.map_or("-".to_owned(), html::age)),
                Cell::Data(dlq),
                Cell::Data(html::list_or_dash(&consumers, ", ")),
                Cell::Data(action),
            ],
        );
    }
    body.push_str(&table.finish("This app has no queues."));
    Ok(html::page(prefix, "/queues", "Queues", &body))
}

/// Moves a dead-letter queue's messages back to their source queue, then shows the
/// queues again with what moved.
pub(crate) async fn redrive(dash: Dash, Path(queue): Path<String>) -> Result<Response, ApiError> {
    let redriven = services::redrive_queue(&dash.api.events, Principal::Operator, &queue).await?;
    Ok(Redirect::to(&format!(
        "{}/queues?moved={}&to={}",
        dash.prefix,
        redriven.moved,
        seg(&redriven.source)
    ))
    .into_response())
}

pub(crate) async fn topics(dash: Dash) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let events = &dash.api.events;
    let topics = services::list_topics(events, Principal::Operator).await?;
    let subscriptions = services::list_subscriptions(events, Principal::Operator, None).await?;
    let mut table = Table::new("", &["Topic", "Subscribers"]);
    for topic in &topics {
        let mut subscribers: Vec<String> = functions_with(
            &dash,
            |e| matches!(e, EventSource::Sns(sns) if sns.topic == *topic),
        )
        .into_iter()
        .map(|link| format!("function {link}"))
        .collect();
        subscribers.extend(
            subscriptions
                .iter()
                .filter(|s| s.topic == *topic)
                .map(|s| format!("{} {}", esc(&s.protocol), esc(&s.target))),
        );
        table.row(
            "",
            [
                Cell::Head(esc(topic)),
                Cell::Data(html::list_or_dash(&subscribers, "<br>")),
            ],
        );
    }
    let body = table.finish("This app has no topics.");
    Ok(html::page(prefix, "/topics", "Topics", &body))
}

pub(crate) async fn buckets(dash: Dash) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let buckets = services::list_buckets(&dash.api.events, Principal::Operator).await?;
    let body = link_list(
        buckets
            .iter()
            .map(|b| (format!("{prefix}/buckets/{}", seg(b)), b.clone())),
        "This app has no buckets.",
    );
    Ok(html::page(prefix, "/buckets", "Buckets", &body))
}

pub(crate) async fn bucket(
    dash: Dash,
    Path(bucket): Path<String>,
    uri: http::Uri,
) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let events = &dash.api.events;
    let buckets = services::list_buckets(events, Principal::Operator).await?;
    if !buckets.contains(&bucket) {
        return Ok(html::not_found(
            prefix,
            &format!("There is no bucket named `{bucket}`."),
        ));
    }
    let query = crate::api::query(&uri);
    let key_prefix = query.get("prefix").cloned().filter(|p| !p.is_empty());
    let start_after = query.get("after").cloned().filter(|a| !a.is_empty());
    let list = services::list_objects(
        events,
        Principal::Operator,
        &bucket,
        key_prefix.clone(),
        start_after,
        BROWSE_LIMIT,
    )
    .await?;
    let base = format!("{prefix}/buckets/{}", seg(&bucket));
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"{base}\"><label>Key prefix \
<input name=\"prefix\" value=\"{}\"></label><button type=\"submit\">List</button></form>",
        esc(key_prefix.as_deref().unwrap_or_default())
    );
    let mut table = Table::new("", &["Key", "Size", "Type", "Last modified", "ETag"]);
    for object in &list.objects {
        table.row(
            "",
            [
                Cell::Data(format!("<code>{}</code>", esc(&object.key))),
                Cell::Data(format!("{} B", object.size)),
                Cell::Data(esc(object.content_type.as_deref().unwrap_or("-"))),
                Cell::Data(html::time(object.last_modified)),
                Cell::Data(format!("<code>{}</code>", esc(&object.etag))),
            ],
        );
    }
    body.push_str(&table.finish("No objects."));
    if let Some(next) = &list.next_start_after {
        let _ = write!(
            body,
            "<p><a href=\"{base}?prefix={}&amp;after={}\">Next page</a></p>",
            seg(key_prefix.as_deref().unwrap_or_default()),
            seg(next)
        );
    }
    Ok(html::page(
        prefix,
        "/buckets",
        &format!("Bucket {bucket}"),
        &body,
    ))
}

pub(crate) async fn kv_namespaces(dash: Dash) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let namespaces = &dash.api.events.resources.kv_namespaces;
    let body = link_list(
        namespaces
            .iter()
            .map(|n| (format!("{prefix}/kv/{}", seg(n)), n.clone())),
        "This app has no KV namespaces.",
    );
    Ok(html::page(prefix, "/kv", "KV namespaces", &body))
}

pub(crate) async fn kv_namespace(
    dash: Dash,
    Path(namespace): Path<String>,
    uri: http::Uri,
) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let events = &dash.api.events;
    if !events.resources.kv_namespaces.contains(&namespace) {
        return Ok(html::not_found(
            prefix,
            &format!("There is no KV namespace named `{namespace}`."),
        ));
    }
    let query = crate::api::query(&uri);
    let key_prefix = query.get("prefix").cloned().filter(|p| !p.is_empty());
    let cursor = query.get("cursor").cloned().filter(|c| !c.is_empty());
    let query = nimbus_core::kv::KvListQuery {
        prefix: key_prefix.clone(),
        cursor,
        limit: BROWSE_LIMIT,
    };
    let list = services::kv_list(events, Principal::Operator, &namespace, query).await?;
    let base = format!("{prefix}/kv/{}", seg(&namespace));
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"{base}\"><label>Key prefix \
<input name=\"prefix\" value=\"{}\"></label><button type=\"submit\">List</button></form>",
        esc(key_prefix.as_deref().unwrap_or_default())
    );
    let mut table = Table::new("", &["Key", "Value", "Expires", "Metadata"]);
    for key in &list.keys {
        let entry = services::kv_get(events, Principal::Operator, &namespace, &key.name).await?;
        let value = entry.map_or("-".to_owned(), |entry| preview(&entry.value));
        table.row(
            "",
            [
                Cell::Data(format!("<code>{}</code>", esc(&key.name))),
                Cell::Data(format!("<code>{}</code>", esc(&value))),
                Cell::Data(key.expiration.map_or("-".to_owned(), html::time)),
                Cell::Data(format!(
                    "<code>{}</code>",
                    esc(key.metadata.as_deref().unwrap_or("-"))
                )),
            ],
        );
    }
    body.push_str(&table.finish("No keys."));
    if let Some(cursor) = &list.cursor {
        let _ = write!(
            body,
            "<p><a href=\"{base}?prefix={}&amp;cursor={}\">Next page</a></p>",
            seg(key_prefix.as_deref().unwrap_or_default()),
            seg(cursor)
        );
    }
    Ok(html::page(
        prefix,
        "/kv",
        &format!("KV namespace {namespace}"),
        &body,
    ))
}

/// The start of a value as text, or its size when it is not UTF-8.
fn preview(value: &[u8]) -> String {
    const MAX: usize = 200;
    match std::str::from_utf8(value) {
        Ok(text) if text.chars().count() > MAX => {
            format!("{}…", text.chars().take(MAX).collect::<String>())
        }
        Ok(text) => text.to_owned(),
        Err(_) => format!("({} bytes of binary)", value.len()),
    }
}

pub(crate) async fn schedules(dash: Dash) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let mut schedules = Vec::new();
    for function in &dash.api.generation.functions.list {
        for source in &function.spec.events {
            if let EventSource::Schedule(schedule) = source {
                schedules.push((function.spec.name.clone(), schedule.clone()));
            }
        }
    }
    let names: Vec<String> = schedules.iter().map(|(_, s)| s.name.clone()).collect();
    let now = SystemTime::now();
    // A schedule fires next at the slot after its stored anchor, as its trigger and
    // `nimbus up`'s banner reckon it.
    let anchors = dash
        .api
        .events
        .store(move |store| {
            let mut anchors = Vec::new();
            for name in names {
                anchors.push(store.schedule_anchor(&name, now).ok());
            }
            Ok(anchors)
        })
        .await?;
    let mut table = Table::new("", &["Schedule", "Expression", "Function", "Next fire"]);
    for ((function, schedule), anchor) in schedules.iter().zip(anchors) {
        let next = if !schedule.enabled {
            "disabled".to_owned()
        } else {
            match schedule.expression.next_after(anchor.unwrap_or(now)) {
                Some(at) => html::time(at.max(now)),
                None => "never again".to_owned(),
            }
        };
        table.row(
            "",
            [
                Cell::Head(esc(&schedule.name)),
                Cell::Data(format!(
                    "<code>{}</code>",
                    esc(&schedule.expression.to_string())
                )),
                Cell::Data(function_link(prefix, function)),
                Cell::Data(next),
            ],
        );
    }
    let body = table.finish("This app has no schedules.");
    Ok(html::page(prefix, "/schedules", "Schedules", &body))
}

pub(crate) async fn tables(dash: Dash) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let list = crate::api::tables::table_list(&dash.api.events, Principal::Operator).await?;
    let mut table = Table::new(
        "",
        &[
            "Table",
            "Partition key",
            "Sort key",
            "Items",
            "Size",
            "Stream",
        ],
    );
    for summary in &list.tables {
        table.row(
            "",
            [
                Cell::Head(format!(
                    "<a href=\"{prefix}/tables/{}\">{}</a>",
                    seg(&summary.name),
                    esc(&summary.name)
                )),
                Cell::Data(esc(&summary.partition_key)),
                Cell::Data(esc(summary.sort_key.as_deref().unwrap_or("-"))),
                Cell::Data(summary.item_count.to_string()),
                Cell::Data(format!("{} B", summary.size_bytes)),
                Cell::Data(esc(summary.stream_view_type.as_deref().unwrap_or("-"))),
            ],
        );
    }
    let body = table.finish("This app has no tables.");
    Ok(html::page(prefix, "/tables", "Tables", &body))
}

pub(crate) async fn table(dash: Dash, Path(table): Path<String>) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let events = &dash.api.events;
    let list = crate::api::tables::table_list(events, Principal::Operator).await?;
    if !list.tables.iter().any(|t| t.name == table) {
        return Ok(html::not_found(
            prefix,
            &format!("There is no table named `{table}`."),
        ));
    }
    let request = crate::wire::ReadTable {
        key_condition: None,
        filter: None,
        index: None,
        names: Default::default(),
        values: Default::default(),
        limit: Some(BROWSE_LIMIT),
        start_key: None,
        forward: None,
    };
    let items =
        crate::api::tables::read_items(events, Principal::Operator, table.clone(), request).await?;
    let mut body = format!(
        "<p class=\"lead\">The first {} items in key order.</p><ol class=\"items\">",
        items.items.len()
    );
    for item in &items.items {
        let text = serde_json::to_string_pretty(item).unwrap_or_default();
        let _ = write!(body, "<li><pre>{}</pre></li>", esc(&text));
    }
    body.push_str("</ol>");
    Ok(html::page(
        prefix,
        "/tables",
        &format!("Table {table}"),
        &body,
    ))
}

pub(crate) async fn streams(dash: Dash) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let list = crate::api::streams::stream_list(&dash.api.events, Principal::Operator).await?;
    let mut table = Table::new(
        "",
        &[
            "Stream",
            "Kind",
            "Shards",
            "Retention",
            "Created",
            "Consumers",
        ],
    );
    for stream in &list.streams {
        let consumers = functions_with(
            &dash,
            |e| matches!(e, EventSource::Stream(s) if s.stream == stream.name),
        );
        table.row(
            "",
            [
                Cell::Head(esc(&stream.name)),
                Cell::Data(esc(&stream.kind)),
                Cell::Data(stream.shards.to_string()),
                Cell::Data(format!("{} h", stream.retention_hours)),
                Cell::Data(esc(&stream.created_at)),
                Cell::Data(html::list_or_dash(&consumers, ", ")),
            ],
        );
    }
    let body = table.finish("This app has no streams.");
    Ok(html::page(prefix, "/streams", "Streams", &body))
}

/// The Durable Objects that hold storage or an alarm, as the store lists them.
pub(crate) async fn durable_objects(dash: Dash) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let objects = dash
        .api
        .events
        .store(|store| Ok(store.objects(None)))
        .await?
        .map_err(|e| ApiError::platform(e.to_string()))?;
    let mut table = Table::new("objects", &["Class", "Object id", "Keys", "Size", "Alarm"]);
    for summary in &objects {
        let object = &summary.object;
        table.row(
            &format!("data-object=\"{}\"", esc(&object.id)),
            [
                Cell::Head(esc(&object.class)),
                Cell::Data(format!(
                    "<a href=\"{prefix}/durable-objects/{}/{}\"><code>{}</code></a>",
                    seg(&object.class),
                    seg(&object.id),
                    esc(&object.id)
                )),
                Cell::Classed("keys", summary.n_keys.to_string()),
                Cell::Data(format!("{} B", summary.size_bytes)),
                Cell::Data(summary.alarm.map_or("-".to_owned(), html::time)),
            ],
        );
    }
    let body = table.finish("No Durable Object holds storage or an alarm.");
    Ok(html::page(
        prefix,
        "/durable-objects",
        "Durable Objects",
        &body,
    ))
}

/// One Durable Object's storage: its first keys in order, their values, and its alarm.
pub(crate) async fn durable_object(
    dash: Dash,
    Path((class, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let prefix = &dash.prefix;
    let object = ObjectName {
        class: class.clone(),
        id: id.clone(),
    };
    let found = dash
        .api
        .events
        .store(move |store| {
            let read = || {
                let listed = store.list(
                    &object,
                    &ListOptions {
                        limit: Some(BROWSE_LIMIT),
                        ..ListOptions::default()
                    },
                )?;
                let alarm = store.alarm(&object)?;
                Ok::<_, nimbus_core::durable_objects::DurableObjectError>((listed, alarm))
            };
            Ok(read())
        })
        .await?
        .map_err(|e| ApiError::platform(e.to_string()))?;
    let (entries, alarm) = found;
    if entries.is_empty() && alarm.is_none() {
        return Ok(html::not_found(
            prefix,
            &format!("No Durable Object {class} `{id}` holds storage or an alarm."),
        ));
    }
    let mut body = format!(
        "<dl class=\"facts\"><dt>Class</dt><dd>{}</dd><dt>Id</dt><dd><code>{}</code></dd>\
<dt>Alarm</dt><dd>{}</dd></dl>",
        esc(&class),
        esc(&id),
        alarm.map_or("-".to_owned(), |a| format!(
            "{} (retry {})",
            html::time(a.at),
            a.retry_count
        )),
    );
    let mut table = Table::new("storage", &["Key", "Value", "Size"]);
    for (key, value) in &entries {
        table.row(
            &format!("data-key=\"{}\"", esc(key)),
            [
                Cell::Data(format!("<code>{}</code>", esc(key))),
                Cell::Classed("value", format!("<code>{}</code>", esc(&v8_preview(value)))),
                Cell::Data(format!("{} B", value.len())),
            ],
        );
    }
    let _ = write!(
        body,
        "<h2>Storage</h2><p class=\"hint\">The first {BROWSE_LIMIT} keys in order; values as \
V8 serialized them (strings, numbers, booleans and null shown, others by size).</p>{}",
        table.finish("No keys.")
    );
    Ok(html::page(
        prefix,
        "/durable-objects",
        &format!("Durable Object {class}"),
        &body,
    ))
}

/// A value V8 serialized (`v8.serialize`, as Durable Object storage keeps them) as text
/// when it is a primitive: V8's value serializer writes a 0xFF version header, then a
/// tag (`"` one-byte string, `c` two-byte string, `I` zigzag int32, `N` double, `T`, `F`,
/// `0` null, `_` undefined). Anything else is shown by its kind only.
fn v8_preview(bytes: &[u8]) -> String {
    fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let decoded = (|| {
        let mut at = 0;
        // Header(s): 0xFF then the version; skip padding V8 may write.
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
            varint(bytes, &mut at)?;
        }
        while bytes.get(at) == Some(&0x00) {
            at += 1;
        }
        let tag = *bytes.get(at)?;
        at += 1;
        Some(match tag {
            b'"' => {
                let n = usize::try_from(varint(bytes, &mut at)?).ok()?;
                let text: String = bytes
                    .get(at..at + n)?
                    .iter()
                    .map(|&b| char::from(b))
                    .collect();
                serde_json::to_string(&text).ok()?
            }
            b'c' => {
                let n = usize::try_from(varint(bytes, &mut at)?).ok()?;
                let units: Vec<u16> = bytes
                    .get(at..at + n)?
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                serde_json::to_string(&String::from_utf16_lossy(&units)).ok()?
            }
            b'I' => {
                let zigzag = varint(bytes, &mut at)?;
                ((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64)).to_string()
            }
            b'N' => f64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?).to_string(),
            b'T' => "true".to_owned(),
            b'F' => "false".to_owned(),
            b'0' => "null".to_owned(),
            b'_' => "undefined".to_owned(),
            b'o' => "(an object)".to_owned(),
            b'A' | b'a' => "(an array)".to_owned(),
            b';' => "(a Map)".to_owned(),
            b'\'' => "(a Set)".to_owned(),
            b'D' => "(a Date)".to_owned(),
            _ => return None,
        })
    })();
    decoded.unwrap_or_else(|| format!("({} bytes)", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::v8_preview;

    #[test]
    fn v8_values_preview_as_primitives() {
        // What Node's v8.serialize writes (version 15) for 'x', 'é✓', 7, -3, 1.5, true, null, {}.
        let cases: [(&[u8], &str); 8] = [
            (&[0xFF, 0x0F, 0x22, 0x01, 0x78], "\"x\""),
            (&[0xFF, 0x0F, 0x63, 0x04, 0xE9, 0x00, 0x13, 0x27], "\"é✓\""),
            (&[0xFF, 0x0F, 0x49, 0x0E], "7"),
            (&[0xFF, 0x0F, 0x49, 0x05], "-3"),
            (&[0xFF, 0x0F, 0x4E, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F], "1.5"),
            (&[0xFF, 0x0F, 0x54], "true"),
            (&[0xFF, 0x0F, 0x30], "null"),
            (&[0xFF, 0x0F, 0x6F, 0x7B, 0x00], "(an object)"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(v8_preview(bytes), expected, "{bytes:?}");
        }
        assert_eq!(v8_preview(&[0xFF]), "(1 bytes)");
    }
}
