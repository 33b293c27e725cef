//! Lambda's REST-JSON API on the AWS endpoint: Invoke (`POST
//! /2015-03-31/functions/{name}/invocations`), GetFunction and ListFunctions, through the
//! same invoke operation as the control API.

use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;

use crate::error::ApiError;
use crate::generation::Generation;
use crate::services::{self, Principal};

/// How much of an invocation's log Invoke answers with `LogType: Tail`: Lambda's last 4 KB.
const MAX_TAIL_BYTES: usize = 4 * 1024;

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: Bytes,
) -> Response {
    let path = parts.uri.path();
    let Some(rest) = path.strip_prefix("/2015-03-31/functions") else {
        return error_response(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("nimbus serves Lambda's Invoke, GetFunction and ListFunctions, not {path}"),
        );
    };
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let res = match (&parts.method, segments.as_slice()) {
        (&Method::POST, [name, invocations]) if invocations == "invocations" => {
            let trace = crate::gateway::incoming_trace(&parts.headers);
            let invocation_type = parts
                .headers
                .get("x-amz-invocation-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("RequestResponse");
            let tail = parts
                .headers
                .get("x-amz-log-type")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Tail"));
            match services::invoke_function(
                generation,
                principal,
                name,
                body,
                invocation_type,
                &trace,
            )
            .await
            {
                Ok(services::Invoked::Sync { request_id, report }) if tail => {
                    let telemetry = generation.functions.telemetry.clone();
                    let id = request_id.clone();
                    let log = tokio::task::spawn_blocking(move || {
                        telemetry.log_tail(&id, MAX_TAIL_BYTES)
                    })
                    .await
                    .ok()
                    .flatten();
                    let mut res =
                        services::Invoked::Sync { request_id, report }.into_response(&trace);
                    if let Some(log) = log
                        && let Ok(value) = http::HeaderValue::from_str(&BASE64.encode(log))
                    {
                        res.headers_mut().insert("x-amz-log-result", value);
                    }
                    Ok(res)
                }
                res => res.map(|invoked| invoked.into_response(&trace)),
            }
        }
        (&Method::GET, []) => list_functions(generation, principal),
        (&Method::GET, [name]) => get_function(generation, principal, name),
        _ => Err(ApiError::typed(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!(
                "nimbus serves Lambda's Invoke, GetFunction and ListFunctions, not {} {path}",
                parts.method
            ),
        )),
    };
    match res {
        Ok(res) => res,
        Err(e) => {
            let code = e.error_type.unwrap_or(if e.status.is_server_error() {
                "ServiceException"
            } else {
                "InvalidParameterValueException"
            });
            let status = match code {
                "AccessDenied" => StatusCode::FORBIDDEN,
                _ => e.status,
            };
            let code = match code {
                "AccessDenied" => "AccessDeniedException",
                "TooManyRequestsException" => "TooManyRequestsException",
                other => other,
            };
            error_response(status, code, &e.message)
        }
    }
}

/// A Lambda API error: the code in `x-amzn-ErrorType`, where the SDKs read it first.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Type": "User", "message": message });
    let mut res = super::response(status, "application/json", body.to_string().into_bytes());
    if let Ok(value) = http::HeaderValue::from_str(code) {
        res.headers_mut().insert("x-amzn-errortype", value);
    }
    res
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Configuration {
    function_name: String,
    function_arn: String,
    runtime: String,
    handler: String,
    memory_size: u32,
    timeout: u64,
    version: &'static str,
}

fn configuration(generation: &Generation, spec: &nimbus_core::FunctionSpec) -> Configuration {
    Configuration {
        function_arn: format!(
            "arn:aws:lambda:{}:{}:function:{}",
            generation.events.region,
            nimbus_core::ACCOUNT_ID,
            spec.name
        ),
        function_name: spec.name.clone(),
        runtime: spec.runtime.to_string(),
        handler: spec.handler.clone(),
        memory_size: spec.memory_mb,
        timeout: spec.timeout.as_secs(),
        version: "$LATEST",
    }
}

fn list_functions(generation: &Generation, principal: Principal<'_>) -> Result<Response, ApiError> {
    principal.check("lambda:ListFunctions", "function:*")?;
    let functions: Vec<Configuration> = generation
        .functions
        .list
        .iter()
        .map(|f| configuration(generation, &f.spec))
        .collect();
    let body = serde_json::json!({ "Functions": functions });
    Ok(super::response(
        StatusCode::OK,
        "application/json",
        body.to_string().into_bytes(),
    ))
}

fn get_function(
    generation: &Generation,
    principal: Principal<'_>,
    name: &str,
) -> Result<Response, ApiError> {
    let function = generation
        .functions
        .list
        .iter()
        .find(|f| f.spec.name == name || name.ends_with(&format!(":function:{}", f.spec.name)));
    let Some(function) = function else {
        principal.check("lambda:GetFunction", &format!("function:{name}"))?;
        return Err(ApiError::typed(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: {name}"),
        ));
    };
    principal.check(
        "lambda:GetFunction",
        &format!("function:{}", function.spec.name),
    )?;
    let body = serde_json::json!({ "Configuration": configuration(generation, &function.spec) });
    Ok(super::response(
        StatusCode::OK,
        "application/json",
        body.to_string().into_bytes(),
    ))
}
