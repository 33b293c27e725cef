//! Expressions parsed and evaluated on one sample item, one line per case.

use std::collections::BTreeMap;

use expect_test::{Expect, expect};
use nimbus_core::tables::{AttributeValue, Item, item_from_json, item_to_json};

use super::{
    ExprKind, Placeholders, apply_update, eval, parse_condition, parse_projection, parse_update,
};

fn item(json: &str) -> Item {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(fields)) => item_from_json(&fields).expect("valid item"),
        _ => panic!("not a JSON object: {json}"),
    }
}

fn sample() -> Item {
    item(
        r#"{"id":{"S":"1"},"name":{"S":"abc"},"n":{"N":"5"},"tags":{"SS":["a","b"]},
            "lst":{"L":[{"N":"1"},{"M":{"c":{"S":"x"}}}]},"m":{"M":{"a":{"M":{"b":{"N":"1"}}}}},
            "flag":{"BOOL":true},"nul":{"NULL":true},"bin":{"B":"AQID"}}"#,
    )
}

fn placeholders() -> Placeholders {
    let names = BTreeMap::from([
        ("#n".to_owned(), "name".to_owned()),
        ("#st".to_owned(), "status".to_owned()),
    ]);
    let values: BTreeMap<String, AttributeValue> = item(
        r#"{":one":{"N":"1"},":two":{"N":"2"},":five":{"N":"5"},":abc":{"S":"abc"},":a":{"S":"a"},
            ":t":{"S":"SS"},":bad":{"S":"XX"},":l":{"L":[{"N":"9"}]},":ss":{"SS":["b","c"]},
            ":true":{"BOOL":true},":big":{"N":"99999999999999999999999999999999999999"},":x":{"S":"x"},
            ":b":{"B":"AQ=="}}"#,
    )
    .into_iter()
    .collect();
    Placeholders::new(names, values)
}

fn check(text: &str, expect: Expect) {
    let res = match parse_condition(text, ExprKind::Condition, &mut placeholders()) {
        Ok(condition) => eval(&condition, &sample()).to_string(),
        Err(e) => e.0,
    };
    expect.assert_eq(&res);
}

fn check_update(text: &str, expect: Expect) {
    let res = parse_update(text, &mut placeholders())
        .and_then(|update| apply_update(&update, &sample()))
        .map(|new| {
            // Only what changed, to keep the cases short.
            let old = sample();
            let changed: Item = new
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let removed: Vec<&String> = old.keys().filter(|k| !new.contains_key(*k)).collect();
            format!("{} removed {removed:?}", item_to_json(&changed))
        });
    expect.assert_eq(&res.unwrap_or_else(|e| e.0));
}

fn check_projection(text: &str, expect: Expect) {
    let res = parse_projection(text, &mut placeholders())
        .map(|paths| item_to_json(&super::project(&sample(), &paths)).to_string());
    expect.assert_eq(&res.unwrap_or_else(|e| e.0));
}

#[test]
fn conditions() {
    check("n = :five", expect!["true"]);
    check("n <> :five", expect!["false"]);
    // Issue 13: a missing attribute is unequal to a value (moto's AWS-verified
    // transaction tests put new items under `#pk <> :v`).
    check("absent <> :five", expect!["true"]);
    check("absent = :five", expect!["false"]);
    check("absent <> absent2", expect!["false"]);
    check("n > :two AND n <= :five", expect!["true"]);
    check("n < :two OR #n = :abc", expect!["true"]);
    check("NOT (n = :five)", expect!["false"]);
    check("not n = :five or n = :one", expect!["false"]);
    check("n BETWEEN :one AND :five", expect!["true"]);
    check(
        "n BETWEEN :true AND :five",
        expect![
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: BETWEEN, operand type: BOOLEAN"
        ],
    );
    check(
        "n between :five and :one",
        expect![[
            r#"Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {"N":"5"}, upper bound operand: AttributeValue: {"N":"1"}"#
        ]],
    );
    check("n IN (:one, :two, :five)", expect!["true"]);
    check("#n IN (:one)", expect!["false"]);
    check("attribute_exists(id)", expect!["true"]);
    check("attribute_not_exists(id)", expect!["false"]);
    check(
        "attribute_exists(m.a.b) AND attribute_exists(lst[1].c)",
        expect!["true"],
    );
    check("attribute_exists(lst[5])", expect!["false"]);
    check("attribute_type(tags, :t)", expect!["true"]);
    check(
        "attribute_type(tags, :bad)",
        expect![
            "Invalid ConditionExpression: Invalid attribute type name found in type condition: XX"
        ],
    );
    check("begins_with(#n, :a)", expect!["true"]);
    check("begins_with(bin, :b)", expect!["true"]);
    check(
        "begins_with(n, :one)",
        expect![
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: NUMBER"
        ],
    );
    check("contains(tags, :a)", expect!["true"]);
    check("contains(#n, :x)", expect!["false"]);
    check("size(#n) = :five", expect!["false"]);
    check("size(tags) = :two AND size(lst) > :one", expect!["true"]);
    check("size(absent) = :one", expect!["false"]);
    check("n > :abc", expect!["false"]);
    check("flag = :true", expect!["true"]);
    check(
        "flag < :true",
        expect![
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator: <, operand type: BOOLEAN"
        ],
    );
    check("#st = :one", expect!["false"]);
    check("m.a.b = :one", expect!["true"]);
}

#[test]
fn condition_errors_name_the_token() {
    check(
        "n = = :one",
        expect![[r#"Invalid ConditionExpression: Syntax error; token: "=", near: "= = :one""#]],
    );
    check(
        "n =",
        expect![[r#"Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "=""#]],
    );
    check(
        "(n = :one",
        expect![[r#"Invalid ConditionExpression: Syntax error; token: "<EOF>", near: ":one""#]],
    );
    check(
        "n = :one)",
        expect![[r#"Invalid ConditionExpression: Syntax error; token: ")", near: ":one )""#]],
    );
    check(
        "n = :nope",
        expect![
            "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :nope"
        ],
    );
    check(
        "#nope = :one",
        expect![
            "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; attribute name: #nope"
        ],
    );
    check(
        "foo(n)",
        expect!["Invalid ConditionExpression: Invalid function name; function: foo"],
    );
    check(
        "n = :one AND",
        expect![[r#"Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "AND""#]],
    );
    check(
        "n ! :one",
        expect![[r#"Invalid ConditionExpression: Syntax error; token: "!", near: "n ! :one""#]],
    );
    check(
        "",
        expect!["Invalid ConditionExpression: The expression can not be empty;"],
    );
    check(
        "lst[x] = :one",
        expect![[r#"Invalid ConditionExpression: Syntax error; token: "x", near: "[ x ]""#]],
    );
}

#[test]
fn updates() {
    check_update(
        "SET n = n + :one",
        expect![[r#"{"n":{"N":"6"}} removed []"#]],
    );
    check_update(
        "set n = :two - n, #st = :abc",
        expect![[r#"{"n":{"N":"-3"},"status":{"S":"abc"}} removed []"#]],
    );
    check_update(
        "SET c = if_not_exists(c, :one) + :one",
        expect![[r#"{"c":{"N":"2"}} removed []"#]],
    );
    check_update("SET n = if_not_exists(n, :one)", expect!["{} removed []"]);
    check_update(
        "SET lst = list_append(lst, :l)",
        expect![[r#"{"lst":{"L":[{"N":"1"},{"M":{"c":{"S":"x"}}},{"N":"9"}]}} removed []"#]],
    );
    check_update(
        "SET m.a.c = :x, lst[1].c = :abc, lst[7] = :one",
        expect![[
            r#"{"lst":{"L":[{"N":"1"},{"M":{"c":{"S":"abc"}}},{"N":"1"}]},"m":{"M":{"a":{"M":{"b":{"N":"1"},"c":{"S":"x"}}}}}} removed []"#
        ]],
    );
    check_update(
        "SET nope.a = :one",
        expect!["The document path provided in the update expression is invalid for update"],
    );
    check_update(
        "REMOVE flag, nul, lst[0]",
        expect![[r#"{"lst":{"L":[{"M":{"c":{"S":"x"}}}]}} removed ["flag", "nul"]"#]],
    );
    // Issue 13: indexes name the list as it was (moto's test_remove_list_index__remove_multiple_indexes).
    check_update(
        "REMOVE lst[0], lst[1]",
        expect![[r#"{"lst":{"L":[]}} removed []"#]],
    );
    check_update(
        "ADD n :two, tags :ss, fresh :one",
        expect![[r#"{"fresh":{"N":"1"},"n":{"N":"7"},"tags":{"SS":["a","b","c"]}} removed []"#]],
    );
    check_update(
        "DELETE tags :ss",
        expect![[r#"{"tags":{"SS":["a"]}} removed []"#]],
    );
    // Issue 13: a value of the wrong type is refused by its type; an attribute of the wrong
    // type, known only from the item, with DynamoDB's run-time message.
    check_update(
        "ADD #n :one",
        expect!["An operand in the update expression has an incorrect data type"],
    );
    check_update(
        "ADD n :abc",
        expect![
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING"
        ],
    );
    check_update(
        "DELETE n :one",
        expect![
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: operator: DELETE, operand type: NUMBER"
        ],
    );
    check_update(
        "DELETE n :ss",
        expect!["An operand in the update expression has an incorrect data type"],
    );
    check_update(
        "SET n = #n + :one",
        expect!["An operand in the update expression has an incorrect data type"],
    );
    check_update(
        "SET n = n + :abc",
        expect![
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: +, operand type: STRING"
        ],
    );
    check_update(
        "SET n = absent + :one",
        expect!["The provided expression refers to an attribute that does not exist in the item"],
    );
    check_update(
        "SET n = :big + :big",
        expect!["Attempting to store more than 38 significant digits in a Number"],
    );
    check_update(
        "SET n = :one SET m = :one",
        expect![
            r#"Invalid UpdateExpression: The "SET" section can only be used once in an update expression;"#
        ],
    );
    check_update(
        "SET n = :one REMOVE n",
        expect![
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [n], path two: [n]"
        ],
    );
    check_update(
        "SET m = :one, m.a = :two",
        expect![
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [m], path two: [m, a]"
        ],
    );
    check_update(
        "UPSERT n = :one",
        expect![[r#"Invalid UpdateExpression: Syntax error; token: "UPSERT", near: "UPSERT n""#]],
    );
    check_update(
        "SET n :one",
        expect![[r#"Invalid UpdateExpression: Syntax error; token: ":one", near: "n :one""#]],
    );
    check_update(
        "SET n = size(n)",
        expect!["Invalid UpdateExpression: Invalid function name; function: size"],
    );
}

#[test]
fn projections() {
    check_projection(
        "id, #n",
        expect![[r#"{"id":{"S":"1"},"name":{"S":"abc"}}"#]],
    );
    check_projection(
        "m.a.b, lst[1].c, absent",
        expect![[r#"{"lst":{"L":[{"M":{"c":{"S":"x"}}}]},"m":{"M":{"a":{"M":{"b":{"N":"1"}}}}}}"#]],
    );
    check_projection(
        "id, m.a, m.a.b",
        expect![
            "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [m, a], path two: [m, a, b]"
        ],
    );
    check_projection(
        "id,",
        expect![[r#"Invalid ProjectionExpression: Syntax error; token: "<EOF>", near: ",""#]],
    );
}

// Issue 13: DynamoDB refuses its reserved words as names, after the syntax is checked, so
// an expression that works on nimbus works on AWS.
#[test]
fn reserved_words_are_refused_as_names() {
    check(
        "attribute_exists(Status)",
        expect![
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: Status"
        ],
    );
    check(
        "m.name = :abc AND #n = :abc",
        expect![
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: name"
        ],
    );
    check(
        "name = = :abc",
        expect![[r#"Invalid ConditionExpression: Syntax error; token: "=", near: "= = :abc""#]],
    );
    check("#st = :abc OR attribute_not_exists(#n)", expect!["false"]);
    check_update(
        "SET #n = :abc, count = :one",
        expect![
            "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: count"
        ],
    );
    check_projection(
        "id, name",
        expect![
            "Invalid ProjectionExpression: Attribute name is a reserved keyword; reserved keyword: name"
        ],
    );
}

#[test]
fn unused_placeholders_are_refused() {
    let mut placeholders = placeholders();
    let res = parse_condition("#n = :abc", ExprKind::Filter, &mut placeholders)
        .and_then(|_| placeholders.check_unused());
    expect![[r#"Err(ExprError("Value provided in ExpressionAttributeNames unused in expressions: keys: {#st}"))"#]]
        .assert_eq(&format!("{res:?}"));
}
