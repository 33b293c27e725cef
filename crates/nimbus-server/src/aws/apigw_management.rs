//! API Gateway's Management API (REST-JSON, signing name `execute-api`) for WebSocket
//! APIs: PostToConnection (`POST /{stage}/@connections/{id}`), GetConnection (`GET`) and
//! DeleteConnection (`DELETE`). The SDKs are given the API's URL with its stage as their
//! endpoint (`http://{domainName}/{stage}` from the event), so the stage comes first in
//! the path; `/@connections/{id}` without it is taken too.

use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

use crate::error::ApiError;
use crate::generation::Generation;
use crate::services::{Principal, connections};

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: Bytes,
) -> Response {
    let path = parts.uri.path();
    let Some(id) = connection_id(path) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            &format!(
                "nimbus serves API Gateway's /@connections/{{connectionId}} operations, not {path}"
            ),
        );
    };
    let hub = &generation.websockets;
    let res = match parts.method {
        Method::POST => connections::post_to_connection(hub, principal, &id, body)
            .map(|()| super::response(StatusCode::OK, "application/json", Vec::new())),
        Method::GET => connections::get_connection(hub, principal, &id).map(|facts| {
            let body = json!({
                "connectedAt": nimbus_core::time::rfc3339_millis(facts.connected_at),
                "identity": {
                    "sourceIp": facts.source_ip,
                    "userAgent": facts.user_agent,
                },
                "lastActiveAt": nimbus_core::time::rfc3339_millis(facts.last_active_at),
            });
            super::response(
                StatusCode::OK,
                "application/json",
                body.to_string().into_bytes(),
            )
        }),
        Method::DELETE => connections::delete_connection(hub, principal, &id)
            .map(|()| super::response(StatusCode::NO_CONTENT, "application/json", Vec::new())),
        _ => {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedException",
                &format!(
                    "{} is not an @connections operation; use POST, GET or DELETE",
                    parts.method
                ),
            );
        }
    };
    match res {
        Ok(res) => res,
        Err(e) => {
            let ApiError {
                status,
                message,
                error_type,
                ..
            } = e.error;
            let code = match error_type {
                Some("AccessDenied") => "ForbiddenException",
                Some(code) => code,
                None if status.is_server_error() => "InternalServerErrorException",
                None => "BadRequestException",
            };
            error_response(status, code, &message)
        }
    }
}

/// The connection id of `/{stage}/@connections/{id}` or `/@connections/{id}`,
/// percent-decoded (the SDKs escape its `=`).
fn connection_id(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("/@connections/")?;
    let id = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?;
    (!id.is_empty() && !id.contains('/')).then(|| id.into_owned())
}

/// An error as the REST-JSON protocol carries it: the code in `x-amzn-ErrorType`, where
/// the SDKs read it, and the message in the body.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "message": message });
    let mut res = super::response(status, "application/json", body.to_string().into_bytes());
    if let Ok(value) = http::HeaderValue::from_str(code) {
        res.headers_mut().insert("x-amzn-errortype", value);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::connection_id;

    #[test]
    fn the_connection_id_follows_the_stage_or_stands_alone() {
        assert_eq!(
            connection_id("/dev/@connections/Ab3dEf6hIj9lMn%3D").as_deref(),
            Some("Ab3dEf6hIj9lMn=")
        );
        assert_eq!(connection_id("/@connections/x=").as_deref(), Some("x="));
        assert_eq!(connection_id("/dev/@connections/"), None);
        assert_eq!(connection_id("/dev/connections/x"), None);
        assert_eq!(connection_id("/dev/@connections/a/b"), None);
    }
}
