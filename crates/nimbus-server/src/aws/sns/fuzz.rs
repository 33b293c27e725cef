//! Fuzzing SNS's query protocol and its filter policies (issue 14): a mutated form body is
//! read as the endpoint reads it, a `MessageStructure: json` message split per protocol, a
//! subscription attribute set, and the filter policy it carries matched against its
//! message's attributes and JSON body; all of it answers or refuses, never panics or hangs.

use std::collections::BTreeMap;

use super::{per_protocol, query_params, set_attribute};
use crate::events::filter::{Attribute, matches_attributes, matches_body};

const DICTIONARY: &[&[u8]] = &[
    b"&",
    b"=",
    b"%22",
    b"%5B",
    b"%5D",
    b"%7B",
    b"%7D",
    b"%3A",
    b"%2C",
    b"MessageAttributes.entry.1.",
    b"Value.DataType=Number",
    b"Value.DataType=String.Array",
    b"Value.StringValue=",
    b"FilterPolicy=",
    b"MessageStructure=json",
    b"%22numeric%22",
    b"%22prefix%22",
    b"%22suffix%22",
    b"%22anything-but%22",
    b"%22exists%22",
    b"%22cidr%22",
    b"%22equals-ignore-case%22",
    b"%22%24or%22",
    b"1e309",
    b"-0",
    b"null",
];

#[test]
fn fuzz_sns_query_requests_and_filter_policies_are_read_or_refused() {
    nimbus_fuzz::fuzz("sns-query", DICTIONARY, |input| {
        let Ok(req) = http::Request::post("/").body(()) else {
            return;
        };
        let (parts, ()) = req.into_parts();
        let params = query_params(&parts, input);
        let param = |name: &str| params.get(name).map(String::as_str);
        let mut message = param("Message").unwrap_or_default().to_owned();
        if param("MessageStructure") == Some("json")
            && let Ok((default, _)) = per_protocol(&message)
        {
            message = default;
        }
        let mut attributes = BTreeMap::new();
        for n in 1..=10 {
            let entry = format!("MessageAttributes.entry.{n}.");
            let Some(name) = param(&format!("{entry}Name")) else {
                break;
            };
            attributes.insert(
                name.to_owned(),
                Attribute {
                    data_type: param(&format!("{entry}Value.DataType")).unwrap_or("String"),
                    value: param(&format!("{entry}Value.StringValue")).unwrap_or_default(),
                },
            );
        }
        let mut subscription = nimbus_store::TopicSubscription {
            id: "id".to_owned(),
            topic: "orders".to_owned(),
            protocol: "sqs".to_owned(),
            target: "q".to_owned(),
            filter_policy: None,
            filter_scope: "MessageAttributes".to_owned(),
            raw_message_delivery: false,
        };
        for (name, value) in [
            ("FilterPolicyScope", param("FilterPolicyScope")),
            ("FilterPolicy", param("FilterPolicy")),
            (
                param("AttributeName").unwrap_or("RawMessageDelivery"),
                param("AttributeValue"),
            ),
        ] {
            if let Some(value) = value {
                let _ = set_attribute(&mut subscription, name, value);
            }
        }
        let Some(policy) = subscription
            .filter_policy
            .as_deref()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        else {
            return;
        };
        let _ = matches_attributes(&policy, &attributes);
        if let Ok(body) = serde_json::from_str::<serde_json::Value>(&message) {
            let _ = matches_body(&policy, &body);
        }
    });
}
