//! The services API's WebSocket connections: the @connections operations of API
//! Gateway's Management API, at `/v1/connections/{id}` (POST sends the body, GET
//! describes, DELETE closes).

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::{Caller, Json};
use crate::error::ApiError;
use crate::services::connections as ops;

pub(super) async fn post_to_connection(
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let hub = &caller.api.generation.websockets;
    ops::post_to_connection(hub, caller.principal(), &id, body)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn get_connection(
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let hub = &caller.api.generation.websockets;
    let facts = ops::get_connection(hub, caller.principal(), &id)?;
    let body = json!({
        "connectionId": id,
        "connectedAt": nimbus_core::time::rfc3339_millis(facts.connected_at),
        "lastActiveAt": nimbus_core::time::rfc3339_millis(facts.last_active_at),
        "identity": { "sourceIp": facts.source_ip, "userAgent": facts.user_agent },
    });
    Ok(Json(body).into_response())
}

pub(super) async fn delete_connection(
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let hub = &caller.api.generation.websockets;
    ops::delete_connection(hub, caller.principal(), &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
