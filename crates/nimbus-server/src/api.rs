//! The services API on the control port: queues, topics, buckets, KV, streams and tables,
//! for users (the admin token) and for functions (their own token, limited to their
//! grants). See docs/api.md. Handlers turn HTTP into the operations of `services.rs` and
//! back; the JSON bodies and query strings are the types of `wire`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, Uri};
use nimbus_core::services::Access;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::ApiError;
use crate::events::Events;
use crate::gateway::incoming_trace;
use crate::generation::{Current, Generation};
use crate::services::{self, Principal, bad_request};

mod connections;
pub(crate) mod observe;
pub(crate) mod streams;
pub(crate) mod tables;
pub mod wire;
mod workflows;

/// KV values may be up to 25 MiB, objects up to this much per request.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What every handler of the control port shares.
pub(crate) struct ApiState {
    pub(crate) apps: Source,
    pub(crate) admin_token: String,
}

/// Where a call finds the generation it is served by.
pub(crate) enum Source {
    /// One app (`nimbus up`): its current generation.
    One(Arc<Current>),
    /// Many (`nimbus server`): the caller's token names its function, and so its app.
    Many(Arc<crate::apps::Apps>),
}

/// The control port as one request sees it: the app generation current when it arrived
/// (loaded once, kept to its end) and the shared state.
pub(crate) struct Api {
    pub(crate) generation: Arc<Generation>,
    pub(crate) events: Arc<Events>,
    state: Arc<ApiState>,
}

impl Api {
    /// The view of one generation chosen by the caller (the dashboard of `nimbus server`,
    /// once it has checked the operator's token itself).
    pub(crate) fn for_generation(generation: Arc<Generation>, state: Arc<ApiState>) -> Api {
        Api {
            events: generation.events.clone(),
            generation,
            state,
        }
    }
}

impl FromRequestParts<Arc<ApiState>> for Api {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<ApiState>,
    ) -> Result<Api, ApiError> {
        let generation = match &state.apps {
            Source::One(current) => current.load(),
            Source::Many(apps) => bearer(&parts.headers)
                .and_then(|token| apps.generation_by_token(token))
                .ok_or_else(unauthorized)?,
        };
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
        .route("/v1/queues/{queue}/redrive", post(redrive_queue))
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
        .route(
            "/v1/connections/{id}",
            post(connections::post_to_connection)
                .get(connections::get_connection)
                .delete(connections::delete_connection),
        )
        .route("/v1/streams", get(streams::list_streams))
        .route(
            "/v1/streams/{stream}/records",
            get(streams::read_records).post(streams::put_records),
        )
        .route("/v1/invocations", get(observe::list_invocations))
        .route("/v1/invocations/{request_id}", get(observe::get_invocation))
        .route("/v1/traces/{trace_id}", get(observe::get_trace))
        .route("/v1/logs", get(observe::list_logs))
        .route("/v1/workflows", get(workflows::list_machines))
        .route(
            "/v1/workflows/{machine}/executions",
            get(workflows::list_executions).post(workflows::start_execution),
        )
        .route("/v1/executions/{arn}", get(workflows::describe_execution))
        .route(
            "/v1/executions/{arn}/history",
            get(workflows::execution_history),
        )
        .route("/v1/executions/{arn}/stop", post(workflows::stop_execution))
        .route("/v1/tables", get(tables::list_tables))
        .route(
            "/v1/tables/{table}/items",
            axum::routing::put(tables::put_item),
        )
        .route("/v1/tables/{table}/get", post(tables::get_item))
        .route("/v1/tables/{table}/delete", post(tables::delete_item))
        .route("/v1/tables/{table}/query", post(tables::query))
        .route("/v1/tables/{table}/scan", post(tables::scan))
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

/// A JSON request body as `T`, or a JSON answer.
///
/// Unlike axum's `Json`, it reads an empty body as `{}` and needs no `Content-Type` (the
/// clients have never had to send one), and it answers a body that does not fit `T` the way
/// every services-API error is answered: `{"message", "type"}` with 400.
pub(crate) struct Json<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Json<T>, Response> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let text: &[u8] = if body.is_empty() { b"{}" } else { &body };
        match serde_json::from_slice(text) {
            Ok(value) => Ok(Json(value)),
            Err(e) => Err(ApiError::typed(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                format!("invalid JSON body: {e}"),
            )
            .into_response()),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => (
                StatusCode::OK,
                [(http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Err(e) => ApiError::platform(format!("writing a JSON answer: {e}")).into_response(),
        }
    }
}

/// A query string as `T`: `?a=1&b=x%20y`, each value text (see `wire::url_query`).
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Query<T>, ApiError> {
        parse_query(&parts.uri).map(Query)
    }
}

/// Reads a URI's query as `T`; a name given twice counts once, with its last value.
pub(crate) fn parse_query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    let fields: serde_json::Map<String, serde_json::Value> = query(uri)
        .into_iter()
        .map(|(name, value)| (name, serde_json::Value::String(value)))
        .collect();
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| bad_request(format!("invalid query string: {e}")))
}

/// The caller of a services-API request, known from its bearer token before anything else
/// of the request is read: without a valid token the answer is 401, whatever the body.
pub(crate) struct Caller {
    api: Api,
    /// The calling function, by its index in the generation's functions; `None` for the
    /// operator.
    function_idx: Option<usize>,
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<ApiState>,
    ) -> Result<Caller, ApiError> {
        let api = Api::from_request_parts(parts, state).await?;
        let function_idx = match api.principal(&parts.headers)? {
            Principal::Operator => None,
            Principal::Function(spec) => Some(
                api.generation
                    .functions
                    .index(&spec.name)
                    .ok_or_else(unauthorized)?,
            ),
        };
        Ok(Caller { api, function_idx })
    }
}

impl Caller {
    fn principal(&self) -> Principal<'_> {
        match self.function_idx {
            Some(idx) => Principal::Function(&self.api.generation.functions.list[idx].spec),
            None => Principal::Operator,
        }
    }

    fn events(&self) -> &Events {
        &self.api.events
    }
}

async fn list_queues(caller: Caller) -> Result<Json<wire::QueueList>, ApiError> {
    let queues = services::list_queues(caller.events(), caller.principal()).await?;
    Ok(Json(wire::QueueList {
        queues: queues.into_iter().map(wire::QueueSummary::from).collect(),
    }))
}

async fn send_message(
    caller: Caller,
    Path(queue): Path<String>,
    headers: HeaderMap,
    Json(request): Json<wire::SendMessage>,
) -> Result<Json<wire::SentMessage>, ApiError> {
    let message = request.into_message()?;
    // Carry the sender's trace, so the consumer's invocation joins it.
    let trace = incoming_trace(&headers);
    let sent = services::send_message(caller.events(), caller.principal(), &queue, message, &trace)
        .await?;
    Ok(Json(wire::SentMessage::from(sent)))
}

/// SQS's SendMessageBatch: up to 10 entries, committed together; an entry that is invalid
/// is reported under `failed` and the others are still sent.
async fn send_message_batch(
    caller: Caller,
    Path(queue): Path<String>,
    headers: HeaderMap,
    Json(request): Json<wire::SendMessageBatch>,
) -> Result<Json<wire::BatchResult>, ApiError> {
    let mut ids: Vec<String> = Vec::with_capacity(request.entries.len());
    let mut messages = Vec::with_capacity(request.entries.len());
    for (idx, entry) in request.entries.into_iter().enumerate() {
        if !services::valid_batch_entry_id(&entry.id) {
            return Err(bad_request(format!(
                "entries[{idx}].id must be 1 to 80 letters, digits, `-` or `_`"
            )));
        }
        if ids.contains(&entry.id) {
            return Err(ApiError::typed(
                StatusCode::BAD_REQUEST,
                "BatchEntryIdsNotDistinct",
                format!("two entries have the id `{}`", entry.id),
            ));
        }
        ids.push(entry.id);
        messages.push(entry.message.into_message());
    }
    let trace = incoming_trace(&headers);
    let results = services::send_message_batch(
        caller.events(),
        caller.principal(),
        &queue,
        messages,
        &trace,
    )
    .await?;
    let mut res = wire::BatchResult {
        failed: Vec::new(),
        successful: Vec::new(),
    };
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(sent) => res.successful.push(wire::BatchSuccess {
                id,
                sent: wire::SentMessage::from(sent),
            }),
            Err(error) => res.failed.push(wire::BatchFailure {
                code: error.error_type.unwrap_or("InternalError").to_owned(),
                id,
                message: error.message,
                sender_fault: error.status.is_client_error(),
            }),
        }
    }
    Ok(Json(res))
}

async fn receive_messages(
    caller: Caller,
    Path(queue): Path<String>,
    Json(request): Json<wire::ReceiveMessages>,
) -> Result<Json<wire::ReceivedMessages>, ApiError> {
    let max = request.max_messages.unwrap_or(1);
    let visibility = match request.visibility_timeout {
        Some(seconds) => Some(
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| bad_request("visibilityTimeout must be 0 to 43200 seconds"))?,
        ),
        None => None,
    };
    let messages =
        services::receive_messages(caller.events(), caller.principal(), &queue, max, visibility)
            .await?;
    Ok(Json(wire::ReceivedMessages {
        messages: messages
            .into_iter()
            .map(wire::ReceivedMessage::from)
            .collect(),
    }))
}

async fn delete_message(
    caller: Caller,
    Path(queue): Path<String>,
    Json(request): Json<wire::DeleteMessage>,
) -> Result<Json<wire::Empty>, ApiError> {
    services::delete_message(
        caller.events(),
        caller.principal(),
        &queue,
        request.receipt_handle,
    )
    .await?;
    Ok(Json(wire::Empty {}))
}

async fn change_visibility(
    caller: Caller,
    Path(queue): Path<String>,
    Json(request): Json<wire::ChangeVisibility>,
) -> Result<Json<wire::Empty>, ApiError> {
    let timeout = request.visibility_timeout;
    if !(0.0..=43_200.0).contains(&timeout) {
        return Err(bad_request("visibilityTimeout must be 0 to 43200 seconds"));
    }
    services::change_visibility(
        caller.events(),
        caller.principal(),
        &queue,
        request.receipt_handle,
        Duration::from_secs_f64(timeout),
    )
    .await?;
    Ok(Json(wire::Empty {}))
}

async fn purge_queue(
    caller: Caller,
    Path(queue): Path<String>,
) -> Result<Json<wire::Purged>, ApiError> {
    let purged = services::purge_queue(caller.events(), caller.principal(), &queue).await?;
    Ok(Json(wire::Purged { purged }))
}

async fn redrive_queue(
    caller: Caller,
    Path(queue): Path<String>,
) -> Result<Json<wire::Redriven>, ApiError> {
    let redriven = services::redrive_queue(caller.events(), caller.principal(), &queue).await?;
    Ok(Json(wire::Redriven {
        moved: redriven.moved,
        source_queue: redriven.source,
    }))
}

async fn publish(
    caller: Caller,
    Path(topic): Path<String>,
    headers: HeaderMap,
    Json(request): Json<wire::Publish>,
) -> Result<Json<wire::Published>, ApiError> {
    let publish = request.into_publish()?;
    let trace = incoming_trace(&headers);
    let message_id =
        services::publish(caller.events(), caller.principal(), &topic, publish, &trace).await?;
    Ok(Json(wire::Published { message_id }))
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
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<wire::ObjectWritten>, ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let trace = incoming_trace(&headers);
    let meta = services::put_object(
        caller.events(),
        caller.principal(),
        &bucket,
        &key,
        body.to_vec(),
        content_type,
        &trace,
    )
    .await?;
    Ok(Json(wire::ObjectWritten::from(&meta)))
}

async fn get_object(
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    match services::get_object(caller.events(), caller.principal(), &bucket, &key).await? {
        Some((meta, data)) => Ok(with_headers(StatusCode::OK, object_headers(&meta), data)),
        None => Err(no_such_key(&bucket, &key)),
    }
}

async fn head_object(
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let access = Access::bucket_get(&bucket, &key);
    caller.principal().check(access.action, &access.resource)?;
    let (b, k) = (bucket.clone(), key.clone());
    match caller
        .events()
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
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let trace = incoming_trace(&headers);
    services::delete_object(caller.events(), caller.principal(), &bucket, &key, &trace).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_objects(
    caller: Caller,
    Path(bucket): Path<String>,
    Query(request): Query<wire::ListObjects>,
) -> Result<Json<wire::ObjectList>, ApiError> {
    let list = services::list_objects(
        caller.events(),
        caller.principal(),
        &bucket,
        request.prefix,
        request.start_after,
        services::page_size(request.max_keys),
    )
    .await?;
    Ok(Json(wire::ObjectList::from(list)))
}

async fn kv_get(
    caller: Caller,
    Path((namespace, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    match services::kv_get(caller.events(), caller.principal(), &namespace, &key).await? {
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
    caller: Caller,
    Path((namespace, key)): Path<(String, String)>,
    Query(request): Query<wire::KvPut>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<wire::Empty>, ApiError> {
    let expiration = match (request.expiration_ttl, request.expiration) {
        (Some(ttl), _) => Some(
            SystemTime::now()
                + Duration::try_from_secs_f64(ttl)
                    .map_err(|_| bad_request("expirationTtl must be positive"))?,
        ),
        (None, Some(at)) => Some(UNIX_EPOCH + Duration::from_secs(at)),
        (None, None) => None,
    };
    let metadata = match headers.get("x-nimbus-metadata") {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| bad_request("X-Nimbus-Metadata must be JSON text"))?;
            serde_json::from_str::<IgnoredAny>(text)
                .map_err(|e| bad_request(format!("X-Nimbus-Metadata is not JSON: {e}")))?;
            Some(text.to_owned())
        }
        None => None,
    };
    let put = nimbus_core::kv::KvPut {
        value: body.into(),
        expiration,
        metadata,
    };
    services::kv_put(caller.events(), caller.principal(), &namespace, &key, put).await?;
    Ok(Json(wire::Empty {}))
}

async fn kv_delete(
    caller: Caller,
    Path((namespace, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    services::kv_delete(caller.events(), caller.principal(), &namespace, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kv_list(
    caller: Caller,
    Path(namespace): Path<String>,
    Query(request): Query<wire::ListKeys>,
) -> Result<Json<wire::KeyList>, ApiError> {
    let query = nimbus_core::kv::KvListQuery {
        prefix: request.prefix,
        cursor: request.cursor,
        limit: services::page_size(request.limit),
    };
    let list = services::kv_list(caller.events(), caller.principal(), &namespace, query).await?;
    Ok(Json(wire::KeyList::from(list)))
}
