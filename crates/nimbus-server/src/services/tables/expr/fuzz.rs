//! Fuzzing DynamoDB's expression language (issue 14): a mutated expression, read as a
//! condition, filter, key condition, update and projection, parses or is refused, and what
//! parses evaluates, applies and projects on a sample item without panicking or hanging.

use std::collections::BTreeMap;

use nimbus_core::tables::{AttributeValue, Item, item_from_json};

use super::{
    ExprKind, Placeholders, apply_update, eval, parse_condition, parse_projection, parse_update,
    project,
};

/// The words, functions, operators and placeholders expressions are made of.
const DICTIONARY: &[&[u8]] = &[
    b" AND ",
    b" OR ",
    b"NOT ",
    b" BETWEEN ",
    b" IN (",
    b"attribute_exists(",
    b"attribute_not_exists(",
    b"attribute_type(",
    b"begins_with(",
    b"contains(",
    b"size(",
    b"if_not_exists(",
    b"list_append(",
    b"SET ",
    b" REMOVE ",
    b" ADD ",
    b" DELETE ",
    b"(",
    b")",
    b", ",
    b" = ",
    b" <> ",
    b" < ",
    b" >= ",
    b" + ",
    b" - ",
    b".",
    b"[0]",
    b"[99999999999999999999]",
    b"#n",
    b"#st",
    b"#missing",
    b":one",
    b":five",
    b":l",
    b":ss",
    b":t",
    b":missing",
    b"m.a.b",
    b"lst[1].c",
];

fn item(json: &str) -> Item {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(fields)) => item_from_json(&fields).expect("a valid item"),
        _ => panic!("not a JSON object: {json}"),
    }
}

fn placeholders() -> Placeholders {
    let names = BTreeMap::from([
        ("#n".to_owned(), "name".to_owned()),
        ("#st".to_owned(), "status".to_owned()),
    ]);
    let values: BTreeMap<String, AttributeValue> = item(
        r#"{":one":{"N":"1"},":two":{"N":"2"},":five":{"N":"5"},":abc":{"S":"abc"},":a":{"S":"a"},
            ":t":{"S":"SS"},":l":{"L":[{"N":"9"}]},":ss":{"SS":["b","c"]},":true":{"BOOL":true},
            ":x":{"S":"x"},":big":{"N":"99999999999999999999999999999999999999"}}"#,
    )
    .into_iter()
    .collect();
    Placeholders::new(names, values)
}

#[test]
fn fuzz_dynamodb_expressions_parse_evaluate_and_apply_or_are_refused() {
    let sample = item(
        r#"{"id":{"S":"1"},"name":{"S":"abc"},"n":{"N":"5"},"tags":{"SS":["a","b"]},
            "lst":{"L":[{"N":"1"},{"M":{"c":{"S":"x"}}}]},"m":{"M":{"a":{"M":{"b":{"N":"1"}}}}},
            "flag":{"BOOL":true},"nul":{"NULL":true},"bin":{"B":"AQID"}}"#,
    );
    nimbus_fuzz::fuzz("dynamodb-expression", DICTIONARY, |input| {
        let text = String::from_utf8_lossy(input);
        for kind in [
            ExprKind::Condition,
            ExprKind::Filter,
            ExprKind::KeyCondition,
        ] {
            let mut names_and_values = placeholders();
            if let Ok(condition) = parse_condition(&text, kind, &mut names_and_values) {
                let _ = eval(&condition, &sample);
                let _ = names_and_values.check_unused();
            }
        }
        if let Ok(update) = parse_update(&text, &mut placeholders())
            && let Ok(updated) = apply_update(&update, &sample)
        {
            // An update applied twice (a retried request) must not panic either.
            let _ = apply_update(&update, &updated);
        }
        if let Ok(paths) = parse_projection(&text, &mut placeholders()) {
            let _ = project(&sample, &paths);
        }
    });
}

// Issue 14: a 100,000-deep expression overflowed the stack and aborted nimbus; any
// client of the AWS endpoint could send one.
#[test]
fn deep_or_long_expressions_are_refused_without_overflowing_the_stack() {
    let refused = |text: &str, kind: ExprKind| match kind {
        ExprKind::Update => parse_update(text, &mut placeholders()).err(),
        _ => parse_condition(text, kind, &mut placeholders()).err(),
    };
    let deep = format!("{}n = :one{}", "(".repeat(100_000), ")".repeat(100_000));
    let err = refused(&deep, ExprKind::Condition).expect("refused");
    assert_eq!(
        err.0,
        "Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; expression size: 200008"
    );
    // Within 4 KB, nesting is bounded too, and the bound is checked on a small stack.
    let checks = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let paren =
                |depth: usize| format!("{}n = :one{}", "(".repeat(depth), ")".repeat(depth));
            let not = |depth: usize| format!("{}n = :one", "NOT ".repeat(depth));
            let append = |depth: usize| {
                format!(
                    "SET lst = {}lst{}",
                    "list_append(".repeat(depth),
                    ", :l)".repeat(depth)
                )
            };
            let mut out = Vec::new();
            for (text, kind) in [
                (paren(64), ExprKind::Condition),
                (paren(65), ExprKind::Condition),
                (not(64), ExprKind::Filter),
                (not(1000), ExprKind::Filter),
                (append(64), ExprKind::Update),
                (append(65), ExprKind::Update),
            ] {
                out.push(refused(&text, kind).map(|e| e.0));
            }
            out
        })
        .expect("a thread");
    let results = checks.join().expect("no stack overflow");
    let deep_error = |kind: &str| {
        Some(format!(
            "Invalid {kind}: The expression is nested more than 64 levels deep"
        ))
    };
    assert_eq!(
        results,
        [
            None,
            deep_error("ConditionExpression"),
            None,
            deep_error("FilterExpression"),
            None,
            deep_error("UpdateExpression"),
        ]
    );
}
