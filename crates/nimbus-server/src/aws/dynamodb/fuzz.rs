//! Fuzzing DynamoDB's JSON requests (issue 14): a mutated body is read into each
//! operation's request as the endpoint does (legacy parameters rewritten as expressions),
//! and every expression it carries is parsed with its placeholders; all of it answers or
//! refuses, never panics or hangs.

use serde_json::Value as Json;

use super::{
    Req, capacity_mode, create_table_spec, delete_request, expressions, get_request,
    old_on_failure, placeholders, put_request, return_values, select, update_request,
};
use crate::services::tables::ReturnValues;
use crate::services::tables::expr::{
    ExprKind, Placeholders, parse_condition, parse_projection, parse_update,
};

const DICTIONARY: &[&[u8]] = &[
    br#"{"S":""}"#,
    br#"{"N":"1e126"}"#,
    br#"{"N":"-0"}"#,
    br#"{"B":"=="}"#,
    br#"{"SS":[]}"#,
    br#"{"NS":["1","1"]}"#,
    br#"{"L":[{"M":{}}]}"#,
    br#"{"M":{"a":{"NULL":false}}}"#,
    br#"{"BOOL":"true"}"#,
    br#""ComparisonOperator":"NOT_NULL""#,
    br#""AttributeValueList":[]"#,
    br#""Exists":true"#,
    br#""Action":"ADD""#,
    br##""ExpressionAttributeNames":{"#x":"a"}"##,
    br#""ExpressionAttributeValues":{":x":{"S":"a"}}"#,
    br#""ConditionalOperator":"AND""#,
    br#""KeyType":"RANGE""#,
    br#""ProjectionType":"ALL""#,
    b"null",
    b"[]",
    b"{}",
    b"\"\"",
    b"1e400",
    b",",
    b":",
    b"\\u0000",
];

/// Parses every expression of a request with its placeholders, as the services do.
fn parse_all(expressions: super::Expressions) {
    let placeholders = || {
        Placeholders::new(
            expressions.placeholders.names.clone(),
            expressions.placeholders.values.clone(),
        )
    };
    for (text, kind) in [
        (&expressions.condition, ExprKind::Condition),
        (&expressions.key_condition, ExprKind::KeyCondition),
        (&expressions.filter, ExprKind::Filter),
    ] {
        if let Some(text) = text {
            let _ = parse_condition(text, kind, &mut placeholders());
        }
    }
    if let Some(update) = &expressions.update {
        let _ = parse_update(update, &mut placeholders());
    }
    if let Some(projection) = &expressions.projection {
        let _ = parse_projection(projection, &mut placeholders());
    }
}

#[test]
fn fuzz_dynamodb_requests_are_read_or_refused() {
    nimbus_fuzz::fuzz("dynamodb-json", DICTIONARY, |input| {
        let Ok(Json::Object(body)) = serde_json::from_slice::<Json>(input) else {
            return;
        };
        let r = Req(&body);
        let _ = put_request(&r);
        let _ = get_request(&r);
        let _ = update_request(&r);
        let _ = delete_request(&r);
        let _ = create_table_spec(&r);
        let _ = select(&r);
        let _ = capacity_mode(&r);
        let _ = return_values(&r, &[ReturnValues::None, ReturnValues::AllOld]);
        let _ = old_on_failure(&r);
        let _ = placeholders(&r);
        if let Ok(expressions) = expressions(&r) {
            parse_all(expressions);
        }
    });
}
