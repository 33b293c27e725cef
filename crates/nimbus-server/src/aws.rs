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

mod apigw_management;
mod dynamodb;
mod dynamodb_streams;
mod eventbridge;
#[cfg(test)]
mod fuzz;
mod kinesis;
mod lambda;
mod members;
mod s3;
mod sigv2;
mod sigv4;
mod sns;
mod sqs;
pub(crate) mod stepfunctions;
mod sts;

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
    S3,
    Sqs,
    Sns,
    Lambda,
    Sts,
    Events,
    DynamoDb,
    DynamoDbStreams,
    Kinesis,
    StepFunctions,
    /// API Gateway's Management API: the @connections of WebSocket APIs.
    ApiGatewayManagement,
}

/// The access key id of the function whose control-API token is `token`: derived from it,
/// so the key names the function without revealing any of its secret.
pub fn aws_access_key_id(token: &str) -> String {
    let digest = Sha256::digest(format!("nimbus access key id\n{token}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02X}")).collect();
    format!("NIMBUS{hex}")
}

/// The `X-Amz-Target` prefix of each JSON-protocol service (`AmazonSQS.SendMessage`).
const TARGET_PREFIXES: [(&str, Service); 6] = [
    ("AmazonSQS.", Service::Sqs),
    ("DynamoDB_20120810.", Service::DynamoDb),
    ("AWSEvents.", Service::Events),
    ("Kinesis_20131202.", Service::Kinesis),
    ("DynamoDBStreams_20120810.", Service::DynamoDbStreams),
    ("AWSStepFunctions.", Service::StepFunctions),
];

/// The operation a JSON-protocol request names in `X-Amz-Target` for `service`.
pub(crate) fn target_operation(parts: &http::request::Parts, service: Service) -> Option<&str> {
    let (prefix, _) = TARGET_PREFIXES.iter().find(|(_, s)| *s == service)?;
    parts
        .headers
        .get("x-amz-target")?
        .to_str()
        .ok()?
        .strip_prefix(prefix)
}

/// The service a request is for, when it is an AWS request at all.
pub(crate) fn service_of(parts: &http::request::Parts) -> Option<Service> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(target) = header("x-amz-target")
        && let Some((_, service)) = TARGET_PREFIXES
            .iter()
            .find(|(prefix, _)| target.starts_with(prefix))
    {
        return Some(*service);
    }
    let auth = match header("authorization") {
        Some(value) => sigv4::Authorization::parse(value)?,
        None => match sigv4::Authorization::from_query(parts) {
            Some(auth) => auth,
            // Only S3 has presigned URLs of Signature Version 2.
            None => return sigv2::QueryAuth::from_query(parts).map(|_| Service::S3),
        },
    };
    match auth.service.as_str() {
        "s3" => Some(Service::S3),
        "sqs" => Some(Service::Sqs),
        "lambda" => Some(Service::Lambda),
        "sns" => Some(Service::Sns),
        "sts" => Some(Service::Sts),
        "events" => Some(Service::Events),
        "dynamodb" => Some(Service::DynamoDb),
        "kinesis" => Some(Service::Kinesis),
        "states" => Some(Service::StepFunctions),
        "execute-api" => Some(Service::ApiGatewayManagement),
        _ => None,
    }
}

/// The access key id a request is signed with (SigV4 header or query, or an S3 presigned
/// URL of Signature Version 2), unverified: what `nimbus server` finds the caller's app by.
pub(crate) fn access_key(parts: &http::request::Parts) -> Option<String> {
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match header {
        Some(header) => sigv4::Authorization::parse(header).map(|auth| auth.access_key),
        None => sigv4::Authorization::from_query(parts)
            .map(|auth| auth.access_key)
            .or_else(|| sigv2::QueryAuth::from_query(parts).map(|auth| auth.access_key)),
    }
}

/// Refuses an AWS request whose key no served function has (and no other key is taken),
/// in its service's protocol.
pub(crate) fn refuse_unknown_key(service: Service, parts: &http::request::Parts) -> Response {
    let refusal = match access_key(parts) {
        Some(key) => Refusal::forbidden(
            "InvalidClientTokenId",
            format!(
                "The security token included in the request is invalid: no function has the access key {key}"
            ),
        ),
        None => Refusal::forbidden(
            "MissingAuthenticationToken",
            "Requests must be signed with AWS Signature Version 4",
        ),
    };
    refusal.into_response(service, parts)
}

/// Answers an AWS request in its service's protocol.
pub(crate) async fn handle(
    service: Service,
    generation: &Generation,
    keys: AwsKeys,
    parts: http::request::Parts,
    body: Body,
) -> Response {
    handle_signed(service, generation, keys, None, parts, body).await
}

/// Answers an AWS request signed with an operator's key of `nimbus server`, scoped to
/// `generation`'s app: the signature is checked with the key's `secret`, and the request
/// acts as the operator (no grants apply).
pub(crate) async fn handle_as_operator(
    service: Service,
    generation: &Generation,
    secret: &str,
    parts: http::request::Parts,
    body: Body,
) -> Response {
    handle_signed(
        service,
        generation,
        AwsKeys::FunctionsOnly,
        Some(secret),
        parts,
        body,
    )
    .await
}

/// Refuses an AWS request in its service's protocol, with AWS's `code` (403).
pub(crate) fn refuse(
    service: Service,
    parts: &http::request::Parts,
    code: &'static str,
    message: String,
) -> Response {
    Refusal::forbidden(code, message).into_response(service, parts)
}

async fn handle_signed(
    service: Service,
    generation: &Generation,
    keys: AwsKeys,
    operator_secret: Option<&str>,
    parts: http::request::Parts,
    body: Body,
) -> Response {
    let body = match read_body(service, &parts, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(service, &parts),
    };
    let caller = match authenticate(generation, keys, operator_secret, &parts, &body) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(service, &parts),
    };
    let principal = caller.principal;
    match service {
        Service::S3 => s3::handle(generation, caller, &parts, body).await,
        Service::Sqs => sqs::handle(generation, principal, &parts, &body).await,
        Service::Lambda => lambda::handle(generation, principal, &parts, body).await,
        Service::Sns => sns::handle(generation, principal, &parts, &body).await,
        Service::Sts => sts::handle(principal, &parts, &body).await,
        Service::Events => eventbridge::handle(generation, principal, &parts, &body).await,
        Service::DynamoDb => dynamodb::handle(generation, principal, &parts, &body).await,
        Service::DynamoDbStreams => {
            dynamodb_streams::handle(generation, principal, &parts, &body).await
        }
        Service::Kinesis => kinesis::handle(generation, principal, &parts, &body).await,
        Service::StepFunctions => stepfunctions::handle(generation, principal, &parts, &body).await,
        Service::ApiGatewayManagement => {
            apigw_management::handle(generation, principal, &parts, body).await
        }
    }
}

/// A DynamoDB operation with its request as JSON (Step Functions' integration).
pub(crate) async fn dynamodb_operation(
    generation: &Generation,
    principal: Principal<'_>,
    operation: &str,
    request: &serde_json::Value,
) -> Result<serde_json::Value, (String, String)> {
    dynamodb::operation(generation, principal, operation, request).await
}

/// Why a request was refused before reaching its service: AWS's own error codes.
pub(crate) struct Refusal {
    status: http::StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn forbidden(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status: http::StatusCode::FORBIDDEN,
            code,
            message: message.into(),
        }
    }

    fn into_response(self, service: Service, parts: &http::request::Parts) -> Response {
        match service {
            Service::S3 => s3::error_response(self.status, self.code, &self.message),
            Service::Sqs => sqs::refusal_response(parts, self.status, self.code, &self.message),
            Service::Sns => sns::error_response(self.status, self.code, &self.message),
            Service::Lambda => lambda::error_response(self.status, self.code, &self.message),
            Service::DynamoDb => dynamodb::error_response(self.status, self.code, &self.message),
            Service::Sts => sts::error_response(self.status, self.code, &self.message),
            Service::Events => eventbridge::error_response(self.status, self.code, &self.message),
            Service::DynamoDbStreams => {
                dynamodb_streams::error_response(self.status, self.code, &self.message)
            }
            Service::Kinesis => kinesis::error_response(self.status, self.code, &self.message),
            Service::StepFunctions => {
                stepfunctions::error_response(self.status, self.code, &self.message)
            }
            Service::ApiGatewayManagement => {
                let code = match self.code {
                    "AccessDenied"
                    | "SignatureDoesNotMatch"
                    | "InvalidClientTokenId"
                    | "MissingAuthenticationToken" => "ForbiddenException",
                    other => other,
                };
                apigw_management::error_response(self.status, code, &self.message)
            }
        }
    }
}

/// Who signed a request, and what a body signed in chunks is checked with.
pub(crate) struct Caller<'g> {
    pub(crate) principal: Principal<'g>,
    /// The signature, when there is one.
    pub(crate) auth: Option<sigv4::Authorization>,
    /// The signing key, when the signer's secret is known (a function's) and so its chunk
    /// signatures can be checked; `None` for an operator's unverified key.
    pub(crate) signing_key: Option<Vec<u8>>,
}

fn authenticate<'g>(
    generation: &'g Generation,
    keys: AwsKeys,
    operator_secret: Option<&str>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Caller<'g>, Refusal> {
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let auth = match header {
        Some(header) => sigv4::Authorization::parse(header),
        None => sigv4::Authorization::from_query(parts),
    };
    let content_sha256 = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok());
    // A body hash the client signed must be the body's, whoever signed it.
    if let Some(claimed) = content_sha256
        && claimed.len() == 64
        && claimed.bytes().all(|b| b.is_ascii_hexdigit())
        && !claimed.eq_ignore_ascii_case(&sigv4::body_hash(body))
    {
        return Err(Refusal {
            status: http::StatusCode::BAD_REQUEST,
            code: "XAmzContentSHA256Mismatch",
            message: "The provided 'x-amz-content-sha256' header does not match what was computed."
                .to_owned(),
        });
    }
    if auth
        .as_ref()
        .is_some_and(|auth| auth.expired(std::time::SystemTime::now()))
    {
        return Err(Refusal::forbidden("AccessDenied", "Request has expired"));
    }
    if auth.is_none()
        && let Some(query_auth) = sigv2::QueryAuth::from_query(parts)
    {
        return authenticate_v2(generation, keys, parts, &query_auth);
    }
    // An operator's key of `nimbus server`: its secret is known, so it is verified as a
    // function's is.
    if let Some(secret) = operator_secret {
        let Some(auth) = auth else {
            return Err(Refusal::forbidden(
                "MissingAuthenticationToken",
                "Requests must be signed with AWS Signature Version 4",
            ));
        };
        let signed_hash = match (&auth.presigned, content_sha256) {
            (Some(_), _) => "UNSIGNED-PAYLOAD".to_owned(),
            (None, Some(claimed)) => claimed.to_owned(),
            (None, None) => sigv4::body_hash(body),
        };
        if !auth.verify(parts, &signed_hash, secret) {
            return Err(Refusal::forbidden(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
            ));
        }
        return Ok(Caller {
            principal: Principal::Operator,
            signing_key: Some(auth.signing_key(secret)),
            auth: Some(auth),
        });
    }
    let function = auth.as_ref().and_then(|auth| {
        generation
            .functions
            .list
            .iter()
            .find(|f| f.access_key_id == auth.access_key)
    });
    match (auth, function) {
        (Some(auth), Some(function)) => {
            let signed_hash = match (&auth.presigned, content_sha256) {
                (Some(_), _) => "UNSIGNED-PAYLOAD".to_owned(),
                (None, Some(claimed)) => claimed.to_owned(),
                (None, None) => sigv4::body_hash(body),
            };
            if auth.verify(parts, &signed_hash, &function.token) {
                Ok(Caller {
                    principal: Principal::Function(&function.spec),
                    signing_key: Some(auth.signing_key(&function.token)),
                    auth: Some(auth),
                })
            } else {
                Err(Refusal::forbidden(
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
                ))
            }
        }
        (auth, _) if keys == AwsKeys::AnyAsOperator => Ok(Caller {
            principal: Principal::Operator,
            auth,
            signing_key: None,
        }),
        (Some(auth), None) => Err(Refusal::forbidden(
            "InvalidClientTokenId",
            format!(
                "The security token included in the request is invalid: no function has the access key {}",
                auth.access_key
            ),
        )),
        (None, _) => Err(Refusal::forbidden(
            "MissingAuthenticationToken",
            "Requests must be signed with AWS Signature Version 4",
        )),
    }
}

/// Checks an S3 presigned URL of Signature Version 2.
fn authenticate_v2<'g>(
    generation: &'g Generation,
    keys: AwsKeys,
    parts: &http::request::Parts,
    query_auth: &sigv2::QueryAuth,
) -> Result<Caller<'g>, Refusal> {
    if query_auth.expired(std::time::SystemTime::now()) {
        return Err(Refusal::forbidden("AccessDenied", "Request has expired"));
    }
    let function = generation
        .functions
        .list
        .iter()
        .find(|f| f.access_key_id == query_auth.access_key);
    let principal = match function {
        Some(function) if query_auth.verify(parts, &function.token) => {
            Principal::Function(&function.spec)
        }
        Some(_) => {
            return Err(Refusal::forbidden(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            ));
        }
        None if keys == AwsKeys::AnyAsOperator => Principal::Operator,
        None => {
            return Err(Refusal::forbidden(
                "InvalidAccessKeyId",
                format!(
                    "The AWS Access Key Id you provided does not exist in our records: no function has the access key {}",
                    query_auth.access_key
                ),
            ));
        }
    };
    Ok(Caller {
        principal,
        auth: None,
        signing_key: None,
    })
}

/// The most a request body to SQS, SNS or Lambda may hold (Lambda's 6 MB payload).
const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Reads a request's body, up to its service's limit.
async fn read_body(
    service: Service,
    parts: &http::request::Parts,
    body: Body,
) -> Result<Bytes, Refusal> {
    let (limit, too_large) = match service {
        Service::S3 => (s3::MAX_BODY_BYTES, s3::too_large as fn(u64) -> Refusal),
        _ => (
            MAX_BODY_BYTES as u64,
            (|_| Refusal {
                status: http::StatusCode::PAYLOAD_TOO_LARGE,
                code: "RequestEntityTooLarge",
                message: format!("the request body is over {MAX_BODY_BYTES} bytes"),
            }) as fn(u64) -> Refusal,
        ),
    };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > limit
    {
        return Err(too_large(declared));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit as u64 + 1)),
        Err(_) => Err(Refusal {
            status: http::StatusCode::BAD_REQUEST,
            code: "IncompleteBody",
            message: "the request body could not be read to its end".to_owned(),
        }),
    }
}

/// A response with a body and content type.
/// How the JSON-protocol services (DynamoDB, DynamoDB Streams, Kinesis) answer a request
/// the endpoint refused before it reached them: 400 for every client error (signature
/// problems too), and their own names for the endpoint's signature and key errors.
pub(crate) fn json_refusal(
    status: http::StatusCode,
    code: &'static str,
) -> (http::StatusCode, &'static str) {
    let status = if status.is_client_error() {
        http::StatusCode::BAD_REQUEST
    } else {
        status
    };
    let code = match code {
        "AccessDenied" => "AccessDeniedException",
        "SignatureDoesNotMatch" => "InvalidSignatureException",
        "InvalidClientTokenId" => "UnrecognizedClientException",
        "MissingAuthenticationToken" => "MissingAuthenticationTokenException",
        other => other,
    };
    (status, code)
}

/// An error of a JSON-protocol service (DynamoDB, DynamoDB Streams, Kinesis, Step
/// Functions): logged once (an error for a 5xx, debug otherwise) and answered as
/// `{"__type": error_type, "message": message}` with `extra`'s members.
pub(crate) fn json_error(
    status: http::StatusCode,
    content_type: &str,
    error_type: &str,
    message: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Response {
    if status.is_server_error() {
        tracing::error!(code = error_type, "{message}");
    } else {
        tracing::debug!(code = error_type, "{message}");
    }
    let mut body = extra;
    body.insert("__type".to_owned(), serde_json::json!(error_type));
    body.insert("message".to_owned(), serde_json::json!(message));
    response(
        status,
        content_type,
        serde_json::Value::Object(body).to_string().into_bytes(),
    )
}

pub(crate) fn response(status: http::StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        res.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    if let Ok(value) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        res.headers_mut().insert("x-amz-request-id", value.clone());
        res.headers_mut().insert("x-amzn-requestid", value);
    }
    res
}
