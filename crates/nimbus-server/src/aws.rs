//! The AWS endpoint on the gateway port: a request signed with SigV4 for a service nimbus
//! speaks (or naming its `X-Amz-Target`) is answered in that service's own wire protocol,
//! on nimbus's stores, through the same operations (`services.rs`) as the services API and
//! wasm guests. So the AWS SDKs and the `aws` CLI work unchanged against
//! `AWS_ENDPOINT_URL=http://127.0.0.1:PORT`.
//!
//! Who calls: a function signs with the access key and secret nimbus puts in its
//! environment (the secret is its control-API token), so its grants apply. Any other key
//! is the operator's when the server accepts anonymous keys (`nimbus up`, like LocalStack)
//! and is refused otherwise.

mod lambda;
mod sigv4;
mod sns;
mod sqs;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::generation::Generation;
use crate::services::Principal;

/// Which keys the AWS endpoint accepts besides the functions' own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsKeys {
    /// Any other key is the operator's, unverified: what local tools expect (`nimbus up`).
    AnyAsOperator,
    /// Only the functions' keys, with their signatures verified.
    FunctionsOnly,
}

/// The AWS services the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Sqs,
    Sns,
    Lambda,
}

/// The access key id of the function whose control-API token is `token`: derived from it,
/// so the key names the function without revealing any of its secret.
pub fn aws_access_key_id(token: &str) -> String {
    let digest = Sha256::digest(format!("nimbus access key id\n{token}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02X}")).collect();
    format!("NIMBUS{hex}")
}

/// The service a request is for, when it is an AWS request at all.
pub(crate) fn service_of(parts: &http::request::Parts) -> Option<Service> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if header("x-amz-target").is_some_and(|target| target.starts_with("AmazonSQS.")) {
        return Some(Service::Sqs);
    }
    let auth = sigv4::Authorization::parse(header("authorization")?)?;
    match auth.service.as_str() {
        "sqs" => Some(Service::Sqs),
        "lambda" => Some(Service::Lambda),
        "sns" => Some(Service::Sns),
        _ => None,
    }
}

/// Answers an AWS request in its service's protocol.
pub(crate) async fn handle(
    service: Service,
    generation: &Generation,
    keys: AwsKeys,
    parts: http::request::Parts,
    body: Bytes,
) -> Response {
    let principal = match authenticate(generation, keys, &parts, &body) {
        Ok(principal) => principal,
        Err(refusal) => return refusal.into_response(service),
    };
    match service {
        Service::Sqs => sqs::handle(generation, principal, &parts, &body).await,
        Service::Lambda => lambda::handle(generation, principal, &parts, body).await,
        Service::Sns => sns::handle(generation, principal, &parts, &body).await,
    }
}

/// Why a request's credentials were refused: AWS's own error codes.
pub(crate) struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    fn into_response(self, service: Service) -> Response {
        match service {
            Service::Sqs => sqs::error_response(
                http::StatusCode::FORBIDDEN,
                self.code,
                &self.message,
                "Sender",
            ),
            Service::Sns => {
                sns::error_response(http::StatusCode::FORBIDDEN, self.code, &self.message)
            }
            Service::Lambda => {
                lambda::error_response(http::StatusCode::FORBIDDEN, self.code, &self.message)
            }
        }
    }
}

fn authenticate<'g>(
    generation: &'g Generation,
    keys: AwsKeys,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Principal<'g>, Refusal> {
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let auth = header.and_then(sigv4::Authorization::parse);
    let function = auth.as_ref().and_then(|auth| {
        generation
            .functions
            .list
            .iter()
            .find(|f| f.access_key_id == auth.access_key)
    });
    match (auth, function) {
        (Some(auth), Some(function)) => {
            let signed_hash = parts
                .headers
                .get("x-amz-content-sha256")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| sigv4::body_hash(body));
            if auth.verify(parts, &signed_hash, &function.token) {
                Ok(Principal::Function(&function.spec))
            } else {
                Err(Refusal {
                    code: "SignatureDoesNotMatch",
                    message: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".to_owned(),
                })
            }
        }
        _ if keys == AwsKeys::AnyAsOperator => Ok(Principal::Operator),
        (Some(auth), None) => Err(Refusal {
            code: "InvalidClientTokenId",
            message: format!(
                "The security token included in the request is invalid: no function has the access key {}",
                auth.access_key
            ),
        }),
        (None, _) => Err(Refusal {
            code: "MissingAuthenticationToken",
            message: "Requests must be signed with AWS Signature Version 4".to_owned(),
        }),
    }
}

/// A response with a body and content type.
pub(crate) fn response(status: http::StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        res.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    if let Ok(value) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        res.headers_mut().insert("x-amzn-requestid", value);
    }
    res
}
