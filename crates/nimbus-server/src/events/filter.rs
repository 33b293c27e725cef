//! SNS subscription filter policies, on message attributes or on the JSON body
//! (<https://docs.aws.amazon.com/sns/latest/dg/sns-subscription-filter-policies.html>).

use std::collections::BTreeMap;

use serde_json::Value;

/// A message attribute as SNS types it.
pub(crate) struct Attribute<'a> {
    pub(crate) data_type: &'a str,
    pub(crate) value: &'a str,
}

/// Whether a policy on message attributes accepts these attributes.
pub(crate) fn matches_attributes(
    policy: &Value,
    attributes: &BTreeMap<String, Attribute<'_>>,
) -> bool {
    let Some(policy) = policy.as_object() else {
        return false;
    };
    policy.iter().all(|(key, conditions)| {
        if key == "$or" {
            return conditions.as_array().is_some_and(|alternatives| {
                alternatives
                    .iter()
                    .any(|p| matches_attributes(p, attributes))
            });
        }
        let value = attributes
            .get(key)
            .map(|attribute| attribute_value(attribute));
        matches_conditions(conditions, value.as_ref())
    })
}

/// Whether a policy on the message body accepts this JSON body.
pub(crate) fn matches_body(policy: &Value, body: &Value) -> bool {
    let Some(policy) = policy.as_object() else {
        return false;
    };
    policy.iter().all(|(key, conditions)| {
        if key == "$or" {
            return conditions
                .as_array()
                .is_some_and(|alternatives| alternatives.iter().any(|p| matches_body(p, body)));
        }
        let value = body.get(key);
        match conditions {
            // A nested object in the policy filters a nested object of the body, or any
            // object of an array there (S3 events through SNS: `Records[].eventName`).
            Value::Object(_) => match value {
                Some(Value::Array(items)) => {
                    items.iter().any(|item| matches_body(conditions, item))
                }
                Some(nested) => matches_body(conditions, nested),
                None => false,
            },
            _ => matches_conditions(conditions, value),
        }
    })
}

fn attribute_value(attribute: &Attribute<'_>) -> Value {
    if attribute.data_type.starts_with("Number")
        && let Ok(number) = attribute.value.parse::<f64>()
        && let Some(number) = serde_json::Number::from_f64(number)
    {
        return Value::Number(number);
    }
    if attribute.data_type == "String.Array"
        && let Ok(array @ Value::Array(_)) = serde_json::from_str::<Value>(attribute.value)
    {
        return array;
    }
    Value::String(attribute.value.to_owned())
}

/// A key's conditions: an array of alternatives, any of which may match.
fn matches_conditions(conditions: &Value, value: Option<&Value>) -> bool {
    let alternatives: &[Value] = match conditions {
        Value::Array(items) => items,
        single => std::slice::from_ref(single),
    };
    alternatives.iter().any(|condition| {
        // `exists: false` is the one condition that matches an absent key.
        if let Some(exists) = condition.get("exists").and_then(Value::as_bool) {
            return value.is_some() == exists;
        }
        match value {
            None => false,
            // An array value (String.Array) matches when any element does.
            Some(Value::Array(items)) => items.iter().any(|item| matches_one(condition, item)),
            Some(value) => matches_one(condition, value),
        }
    })
}

fn matches_one(condition: &Value, value: &Value) -> bool {
    match condition {
        Value::String(expected) => value.as_str() == Some(expected),
        Value::Number(expected) => value.as_f64().is_some_and(|v| Some(v) == expected.as_f64()),
        Value::Bool(expected) => value.as_bool() == Some(*expected),
        Value::Null => value.is_null(),
        Value::Object(operator) => {
            let text = value.as_str();
            if let Some(prefix) = operator.get("prefix").and_then(Value::as_str) {
                return text.is_some_and(|t| t.starts_with(prefix));
            }
            if let Some(suffix) = operator.get("suffix").and_then(Value::as_str) {
                return text.is_some_and(|t| t.ends_with(suffix));
            }
            if let Some(expected) = operator.get("equals-ignore-case").and_then(Value::as_str) {
                return text.is_some_and(|t| t.eq_ignore_ascii_case(expected));
            }
            if let Some(excluded) = operator.get("anything-but") {
                return match excluded {
                    Value::Array(items) => !items.iter().any(|item| matches_one(item, value)),
                    Value::Object(_) => !matches_one(excluded, value),
                    single => !matches_one(single, value),
                };
            }
            if let Some(ranges) = operator.get("numeric").and_then(Value::as_array) {
                let Some(number) = value.as_f64() else {
                    return false;
                };
                return ranges.chunks(2).all(|pair| {
                    let (Some(op), Some(bound)) = (
                        pair.first().and_then(Value::as_str),
                        pair.get(1).and_then(Value::as_f64),
                    ) else {
                        return false;
                    };
                    match op {
                        "=" => number == bound,
                        "<" => number < bound,
                        "<=" => number <= bound,
                        ">" => number > bound,
                        ">=" => number >= bound,
                        _ => false,
                    }
                });
            }
            false
        }
        Value::Array(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{Attribute, matches_attributes, matches_body};

    fn attrs<'a>(pairs: &[(&'a str, &'a str, &'a str)]) -> BTreeMap<String, Attribute<'a>> {
        pairs
            .iter()
            .map(|(k, t, v)| {
                (
                    (*k).to_owned(),
                    Attribute {
                        data_type: t,
                        value: v,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn attribute_policies() {
        let policy =
            json!({ "color": ["red", "blue"], "size": [{ "numeric": [">", 2, "<=", 10] }] });
        assert!(matches_attributes(
            &policy,
            &attrs(&[("color", "String", "red"), ("size", "Number", "5")])
        ));
        assert!(!matches_attributes(
            &policy,
            &attrs(&[("color", "String", "green"), ("size", "Number", "5")])
        ));
        assert!(!matches_attributes(
            &policy,
            &attrs(&[("color", "String", "red"), ("size", "Number", "11")])
        ));
        assert!(
            !matches_attributes(&policy, &attrs(&[("color", "String", "red")])),
            "missing key"
        );
        let policy = json!({ "store": [{ "prefix": "eu-" }], "promo": [{ "exists": false }] });
        assert!(matches_attributes(
            &policy,
            &attrs(&[("store", "String", "eu-west")])
        ));
        assert!(!matches_attributes(
            &policy,
            &attrs(&[("store", "String", "eu-west"), ("promo", "String", "x")])
        ));
        let policy = json!({ "kind": [{ "anything-but": ["test", "debug"] }] });
        assert!(matches_attributes(
            &policy,
            &attrs(&[("kind", "String", "order")])
        ));
        assert!(!matches_attributes(
            &policy,
            &attrs(&[("kind", "String", "test")])
        ));
        let policy = json!({ "tags": ["vip"] });
        assert!(matches_attributes(
            &policy,
            &attrs(&[("tags", "String.Array", r#"["new","vip"]"#)])
        ));
        let policy = json!({ "$or": [{ "a": ["1"] }, { "b": ["2"] }] });
        assert!(matches_attributes(&policy, &attrs(&[("b", "String", "2")])));
        assert!(!matches_attributes(
            &policy,
            &attrs(&[("b", "String", "3")])
        ));
    }

    #[test]
    fn body_policies() {
        let policy =
            json!({ "order": { "status": ["paid"], "total": [{ "numeric": [">=", 100] }] } });
        assert!(matches_body(
            &policy,
            &json!({ "order": { "status": "paid", "total": 150 } })
        ));
        assert!(!matches_body(
            &policy,
            &json!({ "order": { "status": "paid", "total": 50 } })
        ));
        assert!(!matches_body(&policy, &json!({ "status": "paid" })));
        // An array of objects matches when one of them does (S3 notifications through SNS).
        let policy = json!({ "Records": { "eventName": [{ "prefix": "ObjectCreated:" }] } });
        let event =
            |name: &str| json!({ "Records": [{ "eventName": "x" }, { "eventName": name }] });
        assert!(matches_body(&policy, &event("ObjectCreated:Put")));
        assert!(!matches_body(&policy, &event("ObjectRemoved:Delete")));
    }
}
