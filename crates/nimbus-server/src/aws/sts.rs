//! STS's GetCallerIdentity (query protocol), which scripts, test suites and SDK helpers call to
//! learn the account and who they are: a function is its Lambda execution role's session, as
//! on AWS; an operator is the account's root.

use axum::response::Response;
use http::StatusCode;

use super::sns::{query_error, query_params, query_response, xml};
use crate::services::Principal;

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

pub(crate) async fn handle(
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let params = query_params(parts, body);
    let action = params.get("Action").map(String::as_str).unwrap_or_default();
    if action != "GetCallerIdentity" {
        return error_response(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("nimbus serves STS's GetCallerIdentity only, not {action:?}"),
        );
    }
    let account = nimbus_core::ACCOUNT_ID;
    let (arn, user_id) = match principal {
        // A function calls as its execution role's session, named after the function.
        Principal::Function(spec) => {
            let function = &spec.name;
            (
                format!("arn:aws:sts::{account}:assumed-role/{function}-role/{function}"),
                format!("AROANIMBUS{}:{function}", spec.name.to_ascii_uppercase()),
            )
        }
        Principal::Operator => (format!("arn:aws:iam::{account}:root"), account.to_owned()),
    };
    let result = format!(
        "<Arn>{}</Arn><UserId>{}</UserId><Account>{account}</Account>",
        xml(&arn),
        xml(&user_id)
    );
    query_response(NAMESPACE, "GetCallerIdentity", Some(&result))
}

/// STS's `ErrorResponse`.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    query_error(NAMESPACE, status, code, message)
}
