//! Errors that reach a client: a fault, a status and a short message.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use nimbus_core::Fault;

/// An error answered to an HTTP client. The fault decides the log level.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) fault: Fault,
    pub(crate) status: StatusCode,
    /// What the client is told, as API Gateway words it.
    pub(crate) message: String,
    /// The `x-amzn-ErrorType` / Lambda API error type, when there is one.
    pub(crate) error_type: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn client(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            fault: Fault::Client,
            status,
            message: message.into(),
            error_type: None,
        }
    }

    pub(crate) fn throttled() -> ApiError {
        ApiError {
            fault: Fault::Client,
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "Too Many Requests".to_owned(),
            error_type: Some("TooManyRequestsException"),
        }
    }

    pub(crate) fn platform(message: impl Into<String>) -> ApiError {
        ApiError {
            fault: Fault::Platform,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            error_type: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.fault {
            Fault::Platform => tracing::error!(status = %self.status, "{}", self.message),
            Fault::Function => tracing::warn!(status = %self.status, "{}", self.message),
            Fault::Client => tracing::debug!(status = %self.status, "{}", self.message),
        }
        let body = serde_json::json!({ "message": self.message }).to_string();
        let mut res = (self.status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(error_type) = self.error_type {
            headers.insert(
                "x-amzn-errortype",
                http::HeaderValue::from_static(error_type),
            );
        }
        res
    }
}
