//! SNS's query protocol (form-encoded `Action=Publish&...`, XML answers in the
//! `http://sns.amazonaws.com/doc/2010-03-31/` namespace), the only one SNS has, translated
//! onto the topic operations of `services.rs`. Topics and subscriptions come from the
//! manifest, and CreateTopic and Subscribe (to the app's queues and functions) add more at
//! run time, which the store keeps.

#[cfg(test)]
mod fuzz;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::response::Response;
use http::StatusCode;
use nimbus_core::events::SubscriptionEndpoint;
use nimbus_store::MessageAttribute;

use crate::error::ApiError;
use crate::events::Publish;
use crate::generation::Generation;
use crate::services::{self, Principal};
use crate::telemetry::trace::TraceContext;

const NAMESPACE: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

pub(crate) async fn handle(
    generation: &Generation,
    principal: Principal<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let params = query_params(parts, body);
    let action = params.get("Action").cloned().unwrap_or_default();
    let cx = Cx {
        generation,
        principal,
        params: &params,
        trace: crate::gateway::incoming_trace(&parts.headers),
    };
    let res = match action.as_str() {
        "Publish" => cx.publish().await,
        "PublishBatch" => cx.publish_batch().await,
        "CreateTopic" => cx.create_topic().await,
        "DeleteTopic" => cx.delete_topic().await,
        "ListTopics" => cx.list_topics().await,
        "GetTopicAttributes" => cx.get_topic_attributes().await,
        "ListSubscriptionsByTopic" => cx.list_subscriptions(true).await,
        "ListSubscriptions" => cx.list_subscriptions(false).await,
        "Subscribe" => cx.subscribe().await,
        "Unsubscribe" => cx.unsubscribe().await,
        "GetSubscriptionAttributes" => cx.subscription_attributes().await,
        "SetSubscriptionAttributes" => cx.set_subscription_attribute().await,
        "" => Err(SnsError::new(
            StatusCode::BAD_REQUEST,
            "MissingAction",
            "the request names no Action",
        )),
        other => Err(SnsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("nimbus does not serve the SNS action {other} yet"),
        )),
    };
    match res {
        Ok(result) => query_response(NAMESPACE, &action, Some(&result)),
        Err(e) => error_response(e.status, e.code, &e.message),
    }
}

/// SNS's `ErrorResponse`, which the SDKs turn into their exception classes.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    query_error(NAMESPACE, status, code, message)
}

/// The parameters of a query-protocol request (SNS's, and SQS's before its JSON protocol):
/// form-encoded in the body of a POST, or in the query string.
pub(super) fn query_params(parts: &http::request::Parts, body: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for source in [parts.uri.query().unwrap_or_default().as_bytes(), body] {
        for (name, value) in form_urlencoded::parse(source) {
            params.insert(name.into_owned(), value.into_owned());
        }
    }
    params
}

/// A query-protocol answer: `<{action}Response>` in the service's namespace, holding
/// `<{action}Result>` (absent for actions that return nothing) and the request id.
pub(super) fn query_response(namespace: &str, action: &str, result: Option<&str>) -> Response {
    let request_id = uuid::Uuid::new_v4();
    let result = result
        .map(|result| format!("<{action}Result>{result}</{action}Result>"))
        .unwrap_or_default();
    let body = format!(
        "<{action}Response xmlns=\"{namespace}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    );
    super::response(StatusCode::OK, "text/xml", body.into_bytes())
}

/// A query-protocol `ErrorResponse`, which the SDKs turn into their exception classes.
pub(super) fn query_error(
    namespace: &str,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        xml(code),
        xml(message),
        uuid::Uuid::new_v4()
    );
    super::response(status, "text/xml", body.into_bytes())
}

struct SnsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl SnsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> SnsError {
        SnsError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<ApiError> for SnsError {
    fn from(e: ApiError) -> SnsError {
        let (status, code) = match e.error_type {
            Some("AccessDenied") => (StatusCode::FORBIDDEN, "AuthorizationError"),
            Some("NotFound") => (StatusCode::NOT_FOUND, "NotFound"),
            _ if e.status.is_server_error() => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            _ => (StatusCode::BAD_REQUEST, "InvalidParameter"),
        };
        SnsError {
            status,
            code,
            message: e.message,
        }
    }
}

impl From<services::OpError> for SnsError {
    fn from(e: services::OpError) -> SnsError {
        SnsError::from(e.error)
    }
}

struct Cx<'a> {
    generation: &'a Generation,
    principal: Principal<'a>,
    params: &'a BTreeMap<String, String>,
    trace: TraceContext,
}

impl Cx<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn arn(&self, topic: &str) -> String {
        format!(
            "arn:aws:sns:{}:{}:{topic}",
            self.generation.events.region,
            nimbus_core::ACCOUNT_ID
        )
    }

    /// The declared topic an ARN (or a bare name) names.
    fn topic(&self, name: &str) -> Result<String, SnsError> {
        let arn = self.param(name).ok_or_else(|| {
            SnsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                format!("{name} is required"),
            )
        })?;
        let topic = arn.rsplit(':').next().unwrap_or(arn);
        if topic.is_empty() {
            return Err(SnsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                format!("{name} {arn:?} names no topic"),
            ));
        }
        Ok(topic.to_owned())
    }

    async fn publish(&self) -> Result<String, SnsError> {
        let topic = match self.param("TopicArn") {
            Some(_) => self.topic("TopicArn")?,
            None => self.topic("TargetArn")?,
        };
        let publish = self.message("")?;
        let message_id = services::publish(
            &self.generation.events,
            self.principal,
            &topic,
            publish,
            &self.trace,
        )
        .await?;
        Ok(format!("<MessageId>{}</MessageId>", xml(&message_id)))
    }

    async fn publish_batch(&self) -> Result<String, SnsError> {
        let topic = self.topic("TopicArn")?;
        // SNS refuses the whole batch when it is empty, has more than 10 entries, or uses
        // an id twice.
        let ids: Vec<&str> = (1..)
            .map_while(|n| self.param(&format!("PublishBatchRequestEntries.member.{n}.Id")))
            .collect();
        let batch_error =
            |code, message: &str| Err(SnsError::new(StatusCode::BAD_REQUEST, code, message));
        if ids.is_empty() {
            return batch_error(
                "EmptyBatchRequest",
                "The batch request doesn't contain any entries.",
            );
        }
        if ids.len() > 10 {
            return batch_error(
                "TooManyEntriesInBatchRequest",
                "The batch request contains more entries than permissible (10).",
            );
        }
        if ids
            .iter()
            .enumerate()
            .any(|(idx, id)| ids[..idx].contains(id))
        {
            return batch_error(
                "BatchEntryIdsNotDistinct",
                "Two or more batch entries in the request have the same Id.",
            );
        }
        let mut successful = String::new();
        let mut failed = String::new();
        for n in 1..=10 {
            let prefix = format!("PublishBatchRequestEntries.member.{n}.");
            let Some(id) = self.param(&format!("{prefix}Id")) else {
                break;
            };
            let res = match self.message(&prefix) {
                Ok(publish) => services::publish(
                    &self.generation.events,
                    self.principal,
                    &topic,
                    publish,
                    &self.trace,
                )
                .await
                .map_err(SnsError::from),
                Err(e) => Err(e),
            };
            match res {
                Ok(message_id) => {
                    let _ = write!(
                        successful,
                        "<member><Id>{}</Id><MessageId>{}</MessageId></member>",
                        xml(id),
                        xml(&message_id)
                    );
                }
                Err(e) if e.code == "AuthorizationError" || e.code == "NotFound" => {
                    return Err(e);
                }
                Err(e) => {
                    let _ = write!(
                        failed,
                        "<member><Id>{}</Id><Code>{}</Code><Message>{}</Message><SenderFault>true</SenderFault></member>",
                        xml(id),
                        e.code,
                        xml(&e.message)
                    );
                }
            }
        }
        Ok(format!(
            "<Successful>{successful}</Successful><Failed>{failed}</Failed>"
        ))
    }

    /// A message from `<prefix>Message`, `Subject` and `MessageAttributes.entry.N.*`.
    fn message(&self, prefix: &str) -> Result<Publish, SnsError> {
        let message = self.param(&format!("{prefix}Message")).ok_or_else(|| {
            SnsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "Message is required",
            )
        })?;
        let mut attributes = BTreeMap::new();
        for n in 1.. {
            let entry = format!("{prefix}MessageAttributes.entry.{n}.");
            let Some(name) = self.param(&format!("{entry}Name")) else {
                break;
            };
            let data_type = self
                .param(&format!("{entry}Value.DataType"))
                .unwrap_or("String");
            let value = self
                .param(&format!("{entry}Value.StringValue"))
                .or_else(|| self.param(&format!("{entry}Value.BinaryValue")))
                .unwrap_or_default();
            attributes.insert(
                name.to_owned(),
                MessageAttribute {
                    data_type: data_type.to_owned(),
                    value: value.to_owned(),
                },
            );
        }
        // `MessageStructure: json`: the message is a JSON object of a message per protocol,
        // with `default` for the others (SNS's Publish reference).
        let (message, protocol_messages) = match self.param(&format!("{prefix}MessageStructure")) {
            Some("json") => per_protocol(message)?,
            _ => (message.to_owned(), BTreeMap::new()),
        };
        let id = |name: &str| {
            self.param(&format!("{prefix}{name}"))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Ok(Publish {
            message,
            protocol_messages,
            group_id: id("MessageGroupId"),
            deduplication_id: id("MessageDeduplicationId"),
            subject: self.param(&format!("{prefix}Subject")).map(str::to_owned),
            attributes,
        })
    }

    fn required(&self, name: &str) -> Result<&str, SnsError> {
        self.param(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            SnsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                format!("{name} is required"),
            )
        })
    }

    fn events(&self) -> &crate::events::Events {
        &self.generation.events
    }

    async fn create_topic(&self) -> Result<String, SnsError> {
        let name = self.required("Name")?;
        services::create_topic(self.events(), self.principal, name).await?;
        Ok(format!("<TopicArn>{}</TopicArn>", xml(&self.arn(name))))
    }

    async fn delete_topic(&self) -> Result<String, SnsError> {
        let topic = self.topic("TopicArn")?;
        services::delete_topic(self.events(), self.principal, &topic).await?;
        Ok(String::new())
    }

    async fn list_topics(&self) -> Result<String, SnsError> {
        let topics = services::list_topics(self.events(), self.principal).await?;
        let mut out = String::from("<Topics>");
        for topic in topics {
            let _ = write!(
                out,
                "<member><TopicArn>{}</TopicArn></member>",
                xml(&self.arn(&topic))
            );
        }
        out.push_str("</Topics>");
        Ok(out)
    }

    async fn get_topic_attributes(&self) -> Result<String, SnsError> {
        let topic = self.topic("TopicArn")?;
        let n_subscriptions =
            services::topic_subscription_count(self.events(), self.principal, &topic).await?;
        let arn = self.arn(&topic);
        let mut out = String::from("<Attributes>");
        for (key, value) in [
            ("TopicArn", arn.clone()),
            ("DisplayName", topic.clone()),
            ("Owner", nimbus_core::ACCOUNT_ID.to_owned()),
            ("SubscriptionsConfirmed", n_subscriptions.to_string()),
            ("SubscriptionsPending", "0".to_owned()),
            ("FifoTopic", topic.ends_with(".fifo").to_string()),
        ] {
            let _ = write!(
                out,
                "<entry><key>{key}</key><value>{}</value></entry>",
                xml(&value)
            );
        }
        out.push_str("</Attributes>");
        Ok(out)
    }

    /// The subscriptions of `TopicArn` (`by_topic`) or of every topic: the manifest's, then
    /// those made at run time.
    async fn list_subscriptions(&self, by_topic: bool) -> Result<String, SnsError> {
        let topic = if by_topic {
            Some(self.topic("TopicArn")?)
        } else {
            None
        };
        let runtime =
            services::list_subscriptions(self.events(), self.principal, topic.as_deref()).await?;
        let region = &self.events().region;
        let account = nimbus_core::ACCOUNT_ID;
        let mut members = Vec::new();
        for spec in &self.events().resources.topics {
            if topic.as_ref().is_some_and(|t| *t != spec.name) {
                continue;
            }
            let arn = self.arn(&spec.name);
            for (idx, subscription) in spec.subscriptions.iter().enumerate() {
                let (protocol, endpoint) = match &subscription.endpoint {
                    SubscriptionEndpoint::Queue(queue) => {
                        ("sqs", format!("arn:aws:sqs:{region}:{account}:{queue}"))
                    }
                    SubscriptionEndpoint::Http(url) if url.starts_with("https:") => {
                        ("https", url.clone())
                    }
                    SubscriptionEndpoint::Http(url) => ("http", url.clone()),
                };
                members.push((arn.clone(), format!("{arn}:{idx}"), protocol, endpoint));
            }
        }
        for subscription in runtime {
            let arn = self.arn(&subscription.topic);
            let endpoint = match subscription.protocol.as_str() {
                "lambda" => format!(
                    "arn:aws:lambda:{region}:{account}:function:{}",
                    subscription.target
                ),
                _ => format!("arn:aws:sqs:{region}:{account}:{}", subscription.target),
            };
            let protocol = if subscription.protocol == "lambda" {
                "lambda"
            } else {
                "sqs"
            };
            members.push((
                arn.clone(),
                format!("{arn}:{}", subscription.id),
                protocol,
                endpoint,
            ));
        }
        let mut out = String::from("<Subscriptions>");
        for (topic_arn, subscription_arn, protocol, endpoint) in members {
            let _ = write!(
                out,
                "<member><TopicArn>{}</TopicArn><SubscriptionArn>{}</SubscriptionArn><Protocol>{protocol}</Protocol><Endpoint>{}</Endpoint><Owner>{account}</Owner></member>",
                xml(&topic_arn),
                xml(&subscription_arn),
                xml(&endpoint),
            );
        }
        out.push_str("</Subscriptions>");
        Ok(out)
    }

    /// `Attributes.entry.N.key` / `.value`, as the SDKs send Subscribe's attributes.
    fn attributes(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for n in 1.. {
            let prefix = format!("Attributes.entry.{n}.");
            let Some(key) = self.param(&format!("{prefix}key")) else {
                break;
            };
            let value = self.param(&format!("{prefix}value")).unwrap_or_default();
            map.insert(key.to_owned(), value.to_owned());
        }
        map
    }

    async fn subscribe(&self) -> Result<String, SnsError> {
        let topic = self.topic("TopicArn")?;
        let protocol = self.required("Protocol")?.to_ascii_lowercase();
        let endpoint = self.required("Endpoint")?;
        // A queue by its ARN (or URL); a function by its ARN or name.
        let target = match protocol.as_str() {
            "sqs" => endpoint
                .rsplit([':', '/'])
                .next()
                .unwrap_or(endpoint)
                .to_owned(),
            _ => endpoint.to_owned(),
        };
        let mut subscription = nimbus_store::TopicSubscription {
            id: uuid::Uuid::new_v4().to_string(),
            topic,
            protocol,
            target,
            filter_policy: None,
            filter_scope: "MessageAttributes".to_owned(),
            raw_message_delivery: false,
        };
        for (name, value) in self.attributes() {
            set_attribute(&mut subscription, &name, &value)?;
        }
        let subscription = services::subscribe(self.events(), self.principal, subscription).await?;
        let arn = format!("{}:{}", self.arn(&subscription.topic), subscription.id);
        Ok(format!("<SubscriptionArn>{}</SubscriptionArn>", xml(&arn)))
    }

    /// The run-time subscription `SubscriptionArn` names.
    fn subscription_id(&self) -> Result<&str, SnsError> {
        let arn = self.required("SubscriptionArn")?;
        Ok(arn.rsplit(':').next().unwrap_or(arn))
    }

    async fn unsubscribe(&self) -> Result<String, SnsError> {
        let id = self.subscription_id()?;
        services::change_subscription(self.events(), self.principal, id, None).await?;
        Ok(String::new())
    }

    async fn subscription_attributes(&self) -> Result<String, SnsError> {
        let id = self.subscription_id()?;
        let subscription = services::subscription(
            self.events(),
            self.principal,
            id,
            nimbus_core::services::Access::topic_list_subscriptions,
        )
        .await?;
        let topic_arn = self.arn(&subscription.topic);
        let mut attributes = vec![
            (
                "SubscriptionArn",
                format!("{topic_arn}:{}", subscription.id),
            ),
            ("TopicArn", topic_arn),
            ("Protocol", subscription.protocol.clone()),
            ("Endpoint", subscription.target.clone()),
            ("Owner", nimbus_core::ACCOUNT_ID.to_owned()),
            ("PendingConfirmation", "false".to_owned()),
            ("ConfirmationWasAuthenticated", "true".to_owned()),
            (
                "RawMessageDelivery",
                subscription.raw_message_delivery.to_string(),
            ),
            ("FilterPolicyScope", subscription.filter_scope.clone()),
        ];
        if let Some(policy) = &subscription.filter_policy {
            attributes.push(("FilterPolicy", policy.clone()));
        }
        let mut out = String::from("<Attributes>");
        for (key, value) in attributes {
            let _ = write!(
                out,
                "<entry><key>{key}</key><value>{}</value></entry>",
                xml(&value)
            );
        }
        out.push_str("</Attributes>");
        Ok(out)
    }

    async fn set_subscription_attribute(&self) -> Result<String, SnsError> {
        let id = self.subscription_id()?;
        let name = self.required("AttributeName")?;
        let value = self.param("AttributeValue").unwrap_or_default();
        let mut subscription = services::subscription(
            self.events(),
            self.principal,
            id,
            nimbus_core::services::Access::topic_unsubscribe,
        )
        .await?;
        set_attribute(&mut subscription, name, value)?;
        let id = subscription.id.clone();
        services::change_subscription(self.events(), self.principal, &id, Some(subscription))
            .await?;
        Ok(String::new())
    }
}

/// A `MessageStructure: json` message: its `default` and the protocols' own.
fn per_protocol(message: &str) -> Result<(String, BTreeMap<String, String>), SnsError> {
    let invalid = |why: &str| {
        SnsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            format!("Invalid parameter: Message Structure - {why}"),
        )
    };
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(message) else {
        return Err(invalid("the message is not a JSON object"));
    };
    let mut messages = BTreeMap::new();
    for (protocol, value) in fields {
        let serde_json::Value::String(text) = value else {
            return Err(invalid(&format!(
                "the message for {protocol:?} is not a string"
            )));
        };
        messages.insert(protocol, text);
    }
    let default = messages
        .remove("default")
        .ok_or_else(|| invalid("No default entry in JSON message body"))?;
    Ok((default, messages))
}

/// Sets one of a subscription's attributes as SNS names them.
fn set_attribute(
    subscription: &mut nimbus_store::TopicSubscription,
    name: &str,
    value: &str,
) -> Result<(), SnsError> {
    let invalid =
        |message: String| SnsError::new(StatusCode::BAD_REQUEST, "InvalidParameter", message);
    match name {
        "FilterPolicy" if value.is_empty() => subscription.filter_policy = None,
        "FilterPolicy" => {
            if !serde_json::from_str::<serde_json::Value>(value).is_ok_and(|v| v.is_object()) {
                return Err(invalid(format!(
                    "Invalid parameter: FilterPolicy: {value:?} is not a JSON object"
                )));
            }
            subscription.filter_policy = Some(value.to_owned());
        }
        "FilterPolicyScope" if value == "MessageAttributes" || value == "MessageBody" => {
            subscription.filter_scope = value.to_owned();
        }
        "RawMessageDelivery" => {
            subscription.raw_message_delivery = match value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(invalid(format!(
                        "Invalid parameter: RawMessageDelivery: {value:?} is not true or false"
                    )));
                }
            };
        }
        // Accepted and without effect here: nimbus retries deliveries its own way.
        "DeliveryPolicy" | "RedrivePolicy" | "SubscriptionRoleArn" => {}
        other => {
            return Err(invalid(format!(
                "Invalid parameter: AttributeName: nimbus does not know the subscription attribute {other:?}"
            )));
        }
    }
    Ok(())
}

/// Text escaped for XML. A carriage return is written as a reference because XML parsers
/// turn a literal one into a line feed (XML 1.0, 2.11), which would change an SQS message
/// body and fail the MD5 check the SDKs make of it.
pub(super) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}
