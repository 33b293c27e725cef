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

    /// A client error with an AWS-style error type (`QueueDoesNotExist`, `AccessDenied`).
    pub(crate) fn typed(
        status: StatusCode,
        error_type: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            fault: Fault::Client,
            status,
            message: message.into(),
            error_type: Some(error_type),
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
        let mut body = serde_json::json!({ "message": self.message });
        if let Some(error_type) = self.error_type {
            body["type"] = serde_json::Value::String(error_type.to_owned());
        }
        let body = body.to_string();
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
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // What is unavailable (a cluster's engine) is expected back: say when to retry
            // (RFC 9110 §10.2.3).
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
        }
        res
    }
}

impl From<nimbus_core::queues::QueueError> for ApiError {
    fn from(e: nimbus_core::queues::QueueError) -> ApiError {
        use nimbus_core::queues::QueueError;
        let message = e.to_string();
        let (status, error_type) = match &e {
            QueueError::UnknownQueue { .. } => (StatusCode::NOT_FOUND, "QueueDoesNotExist"),
            QueueError::MessageTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "MessageTooLong"),
            QueueError::InvalidReceiptHandle { .. } => {
                (StatusCode::BAD_REQUEST, "ReceiptHandleIsInvalid")
            }
            QueueError::MissingGroupId { .. } => (StatusCode::BAD_REQUEST, "MissingParameter"),
            QueueError::InvalidQueue { .. }
            | QueueError::InvalidMessage { .. }
            | QueueError::InvalidParameter { .. }
            | QueueError::MessageNotInFlight { .. } => {
                (StatusCode::BAD_REQUEST, "InvalidParameterValue")
            }
            // A cluster's engine out of reach: nothing was written; retry (Retry-After).
            QueueError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
            }
            QueueError::Backend { .. } => return ApiError::platform(message),
        };
        ApiError::typed(status, error_type, message)
    }
}

impl From<nimbus_core::kv::KvError> for ApiError {
    fn from(e: nimbus_core::kv::KvError) -> ApiError {
        use nimbus_core::kv::KvError;
        let message = e.to_string();
        let (status, error_type) = match &e {
            KvError::InvalidKey { .. } => (StatusCode::BAD_REQUEST, "InvalidKey"),
            KvError::ValueTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "ValueTooLarge"),
            KvError::InvalidValue { .. } | KvError::InvalidCursor { .. } => {
                (StatusCode::BAD_REQUEST, "InvalidParameterValue")
            }
            KvError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            KvError::Backend { .. } => return ApiError::platform(message),
        };
        ApiError::typed(status, error_type, message)
    }
}

impl From<nimbus_store::StoreError> for ApiError {
    fn from(e: nimbus_store::StoreError) -> ApiError {
        use nimbus_store::StoreError;
        if let StoreError::Queue(e) = e {
            return ApiError::from(e);
        }
        if let StoreError::Kv(e) = e {
            return ApiError::from(e);
        }
        let message = e.to_string();
        let (status, error_type) = match &e {
            StoreError::UnknownQueue { .. } => (StatusCode::NOT_FOUND, "QueueDoesNotExist"),
            StoreError::UnknownBucket { .. } => (StatusCode::NOT_FOUND, "NoSuchBucket"),
            StoreError::MessageTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "MessageTooLong"),
            StoreError::ValueTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "ValueTooLarge"),
            StoreError::InvalidReceiptHandle { .. } => {
                (StatusCode::BAD_REQUEST, "ReceiptHandleIsInvalid")
            }
            StoreError::InvalidKey { .. } => (StatusCode::BAD_REQUEST, "InvalidKey"),
            StoreError::InvalidBucketName { .. } => (StatusCode::BAD_REQUEST, "InvalidBucketName"),
            StoreError::MissingGroupId { .. } => (StatusCode::BAD_REQUEST, "MissingParameter"),
            StoreError::BucketNotEmpty { .. } => (StatusCode::CONFLICT, "BucketNotEmpty"),
            StoreError::PreconditionFailed { .. } => {
                (StatusCode::PRECONDITION_FAILED, "PreconditionFailed")
            }
            StoreError::NoSuchObject { .. } => (StatusCode::NOT_FOUND, "NoSuchKey"),
            StoreError::NoSuchUpload { .. } => (StatusCode::NOT_FOUND, "NoSuchUpload"),
            StoreError::InvalidUpload { code, .. } => (StatusCode::BAD_REQUEST, *code),
            _ if e.is_not_found() => (StatusCode::NOT_FOUND, "NotFound"),
            _ if e.is_client_error() => (StatusCode::BAD_REQUEST, "InvalidParameterValue"),
            _ => {
                return ApiError::platform(format!("{:#}", anyhow::Error::from(e)));
            }
        };
        ApiError::typed(status, error_type, message)
    }
}
