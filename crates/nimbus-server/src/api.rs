//! The services API on the control port: queues, topics, buckets and KV, for users (the
//! admin token) and for functions (their own token, limited to their grants). See
//! docs/api.md. Handlers turn HTTP into the operations of `services.rs` and back.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, Uri};
use nimbus_core::services::Access;
use nimbus_store::{MessageAttribute, NewMessage, SentMessage};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::events::{Events, Publish};
use crate::gateway::incoming_trace;
use crate::generation::{Current, Generation};
use crate::services::{self, Principal, bad_request};

/// KV values may be up to 25 MiB, objects up to this much per request.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What every handler of the control port shares.
pub(crate) struct ApiState {
    pub(crate) current: Arc<Current>,
    pub(crate) admin_token: String,
}

/// The control port as one request sees it: the app generation current when it arrived
/// (loaded once, kept to its end) and the shared state.
pub(crate) struct Api {
    pub(crate) generation: Arc<Generation>,
    pub(crate) events: Arc<Events>,
    state: Arc<ApiState>,
}

impl FromRequestParts<Arc<ApiState>> for Api {
    type Rejection = Infallible;

    async fn from_request_parts(
        _parts: &mut http::request::Parts,
        state: &Arc<ApiState>,
    ) -> Result<Api, Infallible> {
        let generation = state.current.load();
        Ok(Api {
            events: generation.events.clone(),
            generation,
            state: state.clone(),
        })
    }
}

pub(crate) fn routes(api: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/queues", get(list_queues))
        .route("/v1/queues/{queue}/messages", post(send_message))
        .route(
            "/v1/queues/{queue}/messages/batch",
            post(send_message_batch),
        )
        .route("/v1/queues/{queue}/receive", post(receive_messages))
        .route("/v1/queues/{queue}/delete", post(delete_message))
        .route("/v1/queues/{queue}/visibility", post(change_visibility))
        .route("/v1/queues/{queue}/purge", post(purge_queue))
        .route("/v1/topics/{topic}/publish", post(publish))
        .route("/v1/buckets/{bucket}/objects", get(list_objects))
        .route(
            "/v1/buckets/{bucket}/objects/{*key}",
            get(get_object)
                .head(head_object)
                .put(put_object)
                .delete(delete_object),
        )
        .route("/v1/kv/{namespace}/keys", get(kv_list))
        .route(
            "/v1/kv/{namespace}/keys/{*key}",
            get(kv_get).put(kv_put).delete(kv_delete),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

impl Api {
    /// Resolves the bearer token to a caller: the operator's token, or a function's.
    pub(crate) fn principal(&self, headers: &HeaderMap) -> Result<Principal<'_>, ApiError> {
        let token = bearer(headers).ok_or_else(unauthorized)?;
        if crate::admin::constant_time_eq(token.as_bytes(), self.state.admin_token.as_bytes()) {
            return Ok(Principal::Operator);
        }
        match self.generation.functions.by_token(token) {
            Some(function) => Ok(Principal::Function(&function.spec)),
            None => Err(unauthorized()),
        }
    }

    /// Resolves the bearer token and checks that its holder may do `action` on
    /// `resource` (`function:worker`, ...). The operator's token allows everything; a
    /// function's token what its grants allow.
    pub(crate) fn authorize(
        &self,
        headers: &HeaderMap,
        action: &str,
        resource: &str,
    ) -> Result<(), ApiError> {
        self.principal(headers)?.check(action, resource)
    }

    /// Checks that the bearer token is the operator's.
    pub(crate) fn authorize_operator(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match bearer(headers) {
            Some(token)
                if crate::admin::constant_time_eq(
                    token.as_bytes(),
                    self.state.admin_token.as_bytes(),
                ) =>
            {
                Ok(())
            }
            _ => Err(unauthorized()),
        }
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn unauthorized() -> ApiError {
    ApiError::client(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::typed(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            format!("the body must be a JSON object: {e}"),
        )
    })
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `{"k": {"dataType": "String", "value": "v"}}` or `{"k": "v"}` / `{"k": 3}`; the
/// operations refuse reserved names.
pub(crate) fn attributes(
    value: Option<&Value>,
) -> Result<BTreeMap<String, MessageAttribute>, ApiError> {
    let mut attributes = BTreeMap::new();
    let Some(value) = value else {
        return Ok(attributes);
    };
    let Some(object) = value.as_object() else {
        return Err(bad_request("attributes must be an object"));
    };
    for (name, attribute) in object {
        let (data_type, value) = match attribute {
            Value::String(text) => ("String".to_owned(), text.clone()),
            Value::Number(number) => ("Number".to_owned(), number.to_string()),
            Value::Object(typed) => {
                let data_type = typed
                    .get("dataType")
                    .or_else(|| typed.get("DataType"))
                    .and_then(Value::as_str)
                    .unwrap_or("String");
                let value = typed
                    .get("value")
                    .or_else(|| typed.get("stringValue"))
                    .or_else(|| typed.get("StringValue"))
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .ok_or_else(|| bad_request(format!("attribute {name:?} has no value")))?;
                (data_type.to_owned(), value)
            }
            other => ("String".to_owned(), other.to_string()),
        };
        attributes.insert(name.clone(), MessageAttribute { data_type, value });
    }
    Ok(attributes)
}

async fn list_queues(api: Api, headers: HeaderMap) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let queues = services::list_queues(&api.events, principal).await?;
    let queues: Vec<Value> = queues
        .into_iter()
        .map(|(name, stats)| {
            json!({
                "name": name,
                "visible": stats.visible,
                "inFlight": stats.in_flight,
                "delayed": stats.delayed,
                "oldestAgeSeconds": stats.oldest_age.map(|age| age.as_secs_f64()),
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, json!({ "queues": queues })))
}

/// A message to send, from the JSON a client sent (one entry of a batch, or the whole body).
fn new_message(request: &Value) -> Result<NewMessage, ApiError> {
    let Some(text) = request.get("body").and_then(Value::as_str) else {
        return Err(bad_request("`body` (a string) is required"));
    };
    let delay = match request.get("delaySeconds") {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(Duration::from_secs(value.as_u64().ok_or_else(|| {
                bad_request("delaySeconds must be a whole number")
            })?))
        }
    };
    Ok(NewMessage {
        body: text.to_owned(),
        delay,
        attributes: attributes(request.get("attributes"))?,
        group_id: request
            .get("groupId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        deduplication_id: request
            .get("deduplicationId")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn sent_json(sent: &SentMessage) -> Value {
    let mut value = json!({ "messageId": sent.message_id, "md5OfBody": sent.md5_of_body });
    if let Some(sequence) = &sent.sequence_number {
        value["sequenceNumber"] = json!(sequence);
    }
    value
}

async fn send_message(
    api: Api,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let message = new_message(&json_body(&body)?)?;
    // Carry the sender's trace, so the consumer's invocation joins it.
    let trace = incoming_trace(&headers);
    let sent = services::send_message(&api.events, principal, &queue, message, &trace).await?;
    Ok(json_response(StatusCode::OK, sent_json(&sent)))
}

/// SQS's SendMessageBatch: up to 10 entries, committed together; an entry that is invalid
/// is reported under `failed` and the others are still sent.
async fn send_message_batch(
    api: Api,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let request = json_body(&body)?;
    let Some(entries) = request.get("entries").and_then(Value::as_array) else {
        return Err(bad_request(
            "`entries` (an array of 1 to 10 {id, body, ...} objects) is required",
        ));
    };
    let mut ids: Vec<String> = Vec::with_capacity(entries.len());
    let mut messages = Vec::with_capacity(entries.len());
    for (idx, entry) in entries.iter().enumerate() {
        let id = entry.get("id").and_then(Value::as_str).unwrap_or_default();
        if !services::valid_batch_entry_id(id) {
            return Err(bad_request(format!(
                "entries[{idx}].id must be 1 to 80 letters, digits, `-` or `_`"
            )));
        }
        if ids.iter().any(|seen| seen == id) {
            return Err(ApiError::typed(
                StatusCode::BAD_REQUEST,
                "BatchEntryIdsNotDistinct",
                format!("two entries have the id `{id}`"),
            ));
        }
        ids.push(id.to_owned());
        messages.push(new_message(entry));
    }
    let trace = incoming_trace(&headers);
    let results =
        services::send_message_batch(&api.events, principal, &queue, messages, &trace).await?;
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(sent) => {
                let mut value = sent_json(&sent);
                value["id"] = json!(id);
                successful.push(value);
            }
            Err(error) => failed.push(json!({
                "id": id,
                "code": error.error_type.unwrap_or("InternalError"),
                "message": error.message,
                "senderFault": error.status.is_client_error(),
            })),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        json!({ "successful": successful, "failed": failed }),
    ))
}

async fn receive_messages(
    api: Api,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let request = json_body(&body)?;
    let max = request
        .get("maxMessages")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let visibility = match request.get("visibilityTimeout").and_then(Value::as_f64) {
        Some(seconds) => Some(
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| bad_request("visibilityTimeout must be 0 to 43200 seconds"))?,
        ),
        None => None,
    };
    let messages =
        services::receive_messages(&api.events, principal, &queue, max, visibility).await?;
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .filter(|(k, _)| !k.starts_with("nimbus."))
                .map(|(k, a)| (k.clone(), json!({ "dataType": a.data_type, "value": a.value })))
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "md5OfBody": m.md5_of_body,
                "attributes": attributes,
                "receiveCount": m.receive_count,
                "sentTimestamp": m.sent_at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                "groupId": m.group_id,
                "sequenceNumber": m.sequence_number,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({ "messages": messages }),
    ))
}

fn receipt_handle(request: &Value) -> Result<String, ApiError> {
    request
        .get("receiptHandle")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| bad_request("`receiptHandle` is required"))
}

async fn delete_message(
    api: Api,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let handle = receipt_handle(&json_body(&body)?)?;
    services::delete_message(&api.events, principal, &queue, handle).await?;
    Ok(json_response(StatusCode::OK, json!({})))
}

async fn change_visibility(
    api: Api,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let request = json_body(&body)?;
    let handle = receipt_handle(&request)?;
    let timeout = request
        .get("visibilityTimeout")
        .and_then(Value::as_f64)
        .filter(|t| (0.0..=43_200.0).contains(t))
        .ok_or_else(|| bad_request("visibilityTimeout must be 0 to 43200 seconds"))?;
    services::change_visibility(
        &api.events,
        principal,
        &queue,
        handle,
        Duration::from_secs_f64(timeout),
    )
    .await?;
    Ok(json_response(StatusCode::OK, json!({})))
}

async fn purge_queue(
    api: Api,
    Path(queue): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let purged = services::purge_queue(&api.events, principal, &queue).await?;
    Ok(json_response(StatusCode::OK, json!({ "purged": purged })))
}

async fn publish(
    api: Api,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let request = json_body(&body)?;
    let Some(message) = request.get("message").and_then(Value::as_str) else {
        return Err(bad_request("`message` (a string) is required"));
    };
    let publish = Publish {
        message: message.to_owned(),
        subject: request
            .get("subject")
            .and_then(Value::as_str)
            .map(str::to_owned),
        attributes: attributes(request.get("attributes"))?,
    };
    let trace = incoming_trace(&headers);
    let message_id = services::publish(&api.events, principal, &topic, publish, &trace).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "messageId": message_id }),
    ))
}

/// Decodes `a=1&b=x%20y` into pairs.
pub(crate) fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_encoding::percent_decode_str(&text.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// A page size parameter: 1 to 1000, 1000 when absent (as S3 and Workers KV).
fn page_size(params: &HashMap<String, String>, name: &str) -> Result<usize, ApiError> {
    let n = match params.get(name) {
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| bad_request(format!("{name} must be a whole number")))?,
        ),
        None => None,
    };
    Ok(services::page_size(n))
}

fn http_date(time: SystemTime) -> String {
    // RFC 9110 IMF-fixdate, as S3 writes Last-Modified.
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let (year, month, day) = nimbus_core::time::civil_from_days(i64::try_from(days).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[usize::from(month.saturating_sub(1)).min(11)],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn object_headers(meta: &nimbus_store::ObjectMeta) -> Vec<(http::HeaderName, String)> {
    vec![
        (
            http::header::CONTENT_TYPE,
            meta.content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
        ),
        (http::header::ETAG, format!("\"{}\"", meta.etag)),
        (http::header::LAST_MODIFIED, http_date(meta.last_modified)),
        (http::header::CONTENT_LENGTH, meta.size.to_string()),
    ]
}

fn with_headers(
    status: StatusCode,
    headers: Vec<(http::HeaderName, String)>,
    body: Vec<u8>,
) -> Response {
    let mut res = (status, body).into_response();
    for (name, value) in headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, value);
        }
    }
    res
}

fn no_such_key(bucket: &str, key: &str) -> ApiError {
    ApiError::typed(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        format!("no object `{key}` in bucket `{bucket}`"),
    )
}

async fn put_object(
    api: Api,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let trace = incoming_trace(&headers);
    let meta = services::put_object(
        &api.events,
        principal,
        &bucket,
        &key,
        body.to_vec(),
        content_type,
        &trace,
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "key": meta.key, "size": meta.size, "eTag": meta.etag }),
    ))
}

async fn get_object(
    api: Api,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    match services::get_object(&api.events, principal, &bucket, &key).await? {
        Some((meta, data)) => Ok(with_headers(StatusCode::OK, object_headers(&meta), data)),
        None => Err(no_such_key(&bucket, &key)),
    }
}

async fn head_object(
    api: Api,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = Access::bucket_get(&bucket, &key);
    api.principal(&headers)?
        .check(access.action, &access.resource)?;
    let (b, k) = (bucket.clone(), key.clone());
    match api
        .events
        .store(move |store| store.head_object(&b, &k))
        .await?
    {
        Some(meta) => Ok(with_headers(
            StatusCode::OK,
            object_headers(&meta),
            Vec::new(),
        )),
        None => Err(no_such_key(&bucket, &key)),
    }
}

async fn delete_object(
    api: Api,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let trace = incoming_trace(&headers);
    services::delete_object(&api.events, principal, &bucket, &key, &trace).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_objects(
    api: Api,
    Path(bucket): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let params = query(&uri);
    let max_keys = page_size(&params, "maxKeys")?;
    let prefix = params.get("prefix").cloned();
    let start_after = params.get("startAfter").cloned();
    let list = services::list_objects(
        &api.events,
        principal,
        &bucket,
        prefix,
        start_after,
        max_keys,
    )
    .await?;
    let objects: Vec<Value> = list
        .objects
        .iter()
        .map(|m| json!({ "key": m.key, "size": m.size, "eTag": m.etag, "lastModified": nimbus_core::time::rfc3339_millis(m.last_modified) }))
        .collect();
    let mut value = json!({ "objects": objects, "isTruncated": list.is_truncated });
    if let Some(next) = list.next_start_after {
        value["nextStartAfter"] = json!(next);
    }
    Ok(json_response(StatusCode::OK, value))
}

async fn kv_get(
    api: Api,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    match services::kv_get(&api.events, principal, &namespace, &key).await? {
        Some(entry) => {
            let mut headers = vec![(
                http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            )];
            if let Some(metadata) = entry.metadata {
                headers.push((http::HeaderName::from_static("x-nimbus-metadata"), metadata));
            }
            if let Some(expiration) = entry.expiration {
                let secs = expiration
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                headers.push((
                    http::HeaderName::from_static("x-nimbus-expiration"),
                    secs.to_string(),
                ));
            }
            Ok(with_headers(StatusCode::OK, headers, entry.value))
        }
        None => Err(ApiError::typed(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            format!("no key `{key}` in namespace `{namespace}`"),
        )),
    }
}

async fn kv_put(
    api: Api,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let params = query(&uri);
    let now = SystemTime::now();
    let expiration = match (params.get("expirationTtl"), params.get("expiration")) {
        (Some(ttl), _) => {
            let ttl: f64 = ttl
                .parse()
                .map_err(|_| bad_request("expirationTtl must be a number of seconds"))?;
            Some(
                now + Duration::try_from_secs_f64(ttl)
                    .map_err(|_| bad_request("expirationTtl must be positive"))?,
            )
        }
        (None, Some(at)) => {
            let at: u64 = at
                .parse()
                .map_err(|_| bad_request("expiration must be seconds since the epoch"))?;
            Some(UNIX_EPOCH + Duration::from_secs(at))
        }
        (None, None) => None,
    };
    let metadata = match headers.get("x-nimbus-metadata") {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| bad_request("X-Nimbus-Metadata must be JSON text"))?;
            serde_json::from_str::<Value>(text)
                .map_err(|e| bad_request(format!("X-Nimbus-Metadata is not JSON: {e}")))?;
            Some(text.to_owned())
        }
        None => None,
    };
    services::kv_put(
        &api.events,
        principal,
        &namespace,
        &key,
        body,
        expiration,
        metadata,
    )
    .await?;
    Ok(json_response(StatusCode::OK, json!({})))
}

async fn kv_delete(
    api: Api,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    services::kv_delete(&api.events, principal, &namespace, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn kv_list(
    api: Api,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let principal = api.principal(&headers)?;
    let params = query(&uri);
    let limit = page_size(&params, "limit")?;
    let prefix = params.get("prefix").cloned();
    let cursor = params.get("cursor").cloned();
    let list = services::kv_list(&api.events, principal, &namespace, prefix, cursor, limit).await?;
    let keys: Vec<Value> = list
        .keys
        .iter()
        .map(|k| {
            let mut key = json!({ "name": k.name });
            if let Some(expiration) = k.expiration {
                key["expiration"] = json!(
                    expiration
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                );
            }
            if let Some(metadata) = k
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            {
                key["metadata"] = metadata;
            }
            key
        })
        .collect();
    let mut value = json!({ "keys": keys, "list_complete": list.list_complete });
    if let Some(cursor) = list.cursor {
        value["cursor"] = json!(cursor);
    }
    Ok(json_response(StatusCode::OK, value))
}
