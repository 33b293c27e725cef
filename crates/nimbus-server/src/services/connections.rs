//! The @connections operations of WebSocket APIs (API Gateway's Management API):
//! post to, describe and close a live connection, each checked against
//! `execute-api:ManageConnections` on `connection:{id}`.

use std::time::SystemTime;

use bytes::Bytes;
use http::StatusCode;
use nimbus_core::services::Access;

use super::{Fail as _, OpError, Principal};
use crate::error::ApiError;
use crate::gateway::websocket::hub::{Outgoing, SendError};
use crate::gateway::websocket::{Hub, MAX_MESSAGE_BYTES};

/// What `getConnection` tells about a connection.
pub(crate) struct ConnectionFacts {
    pub(crate) connected_at: SystemTime,
    pub(crate) last_active_at: SystemTime,
    pub(crate) source_ip: String,
    pub(crate) user_agent: String,
}

/// Sends `data` to the client of connection `id`: a text frame when it is UTF-8, as
/// API Gateway sends JSON, else a binary one.
pub(crate) fn post_to_connection(
    hub: &Hub,
    principal: Principal<'_>,
    id: &str,
    data: Bytes,
) -> Result<(), OpError> {
    let access = Access::connection_manage(id);
    principal.authorize(&access)?;
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(access.fail(ApiError::typed(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            format!(
                "the data is {} bytes; a message is at most {MAX_MESSAGE_BYTES}",
                data.len()
            ),
        )));
    }
    let frame = match String::from_utf8(data.to_vec()) {
        Ok(text) => Outgoing::Text(text),
        Err(_) => Outgoing::Binary(data),
    };
    hub.send(id, frame)
        .map_err(|e| access.fail(send_error(e, id)))
}

/// The facts of connection `id`.
pub(crate) fn get_connection(
    hub: &Hub,
    principal: Principal<'_>,
    id: &str,
) -> Result<ConnectionFacts, OpError> {
    let access = Access::connection_manage(id);
    principal.authorize(&access)?;
    let connection = hub
        .get(id)
        .ok_or_else(|| access.fail(send_error(SendError::Gone, id)))?;
    Ok(ConnectionFacts {
        connected_at: connection.connected_at,
        last_active_at: connection.last_active(),
        source_ip: connection.source_ip.clone(),
        user_agent: connection.user_agent.clone(),
    })
}

/// Closes connection `id` (1000, normal closure); its `$disconnect` follows.
pub(crate) fn delete_connection(
    hub: &Hub,
    principal: Principal<'_>,
    id: &str,
) -> Result<(), OpError> {
    let access = Access::connection_manage(id);
    principal.authorize(&access)?;
    let connection = hub
        .get(id)
        .ok_or_else(|| access.fail(send_error(SendError::Gone, id)))?;
    // A full queue still gets the close: it is the one frame that frees it.
    match connection.send(Outgoing::Close(1000, String::new())) {
        Ok(()) => Ok(()),
        Err(SendError::Full) => {
            connection.request_close();
            Ok(())
        }
        Err(e) => Err(access.fail(send_error(e, id))),
    }
}

fn send_error(e: SendError, id: &str) -> ApiError {
    match e {
        SendError::Gone => ApiError::typed(
            StatusCode::GONE,
            "GoneException",
            format!("no connection {id} is open"),
        ),
        SendError::Full => ApiError::typed(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            format!("the client of connection {id} does not read its messages fast enough"),
        ),
    }
}
