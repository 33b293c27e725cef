//! SNS's query protocol (form-encoded `Action=Publish&...`, XML answers in the
//! `http://sns.amazonaws.com/doc/2010-03-31/` namespace), the only one SNS has, translated
//! onto the topic operations of `services.rs`. Topics and their subscriptions come from
//! the manifest, so CreateTopic finds a declared topic and Subscribe is not served.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::response::Response;
use http::StatusCode;
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
        "CreateTopic" => cx.create_topic(),
        "ListTopics" => cx.list_topics(),
        "GetTopicAttributes" => cx.get_topic_attributes(),
        "ListSubscriptionsByTopic" => cx.list_subscriptions(),
        "Subscribe" | "Unsubscribe" => Err(SnsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "subscriptions come from the manifest (a function's `sns` event or `topics.<name>.subscriptions`); nimbus does not change them at run time",
        )),
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
        Ok(Publish {
            message: message.to_owned(),
            subject: self.param(&format!("{prefix}Subject")).map(str::to_owned),
            attributes,
        })
    }

    fn declared(&self, topic: &str) -> Result<&nimbus_core::events::TopicSpec, SnsError> {
        self.generation
            .events
            .resources
            .topics
            .iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| {
                SnsError::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("topic `{topic}` does not exist; declare it under topics: or give a function an sns event"),
                )
            })
    }

    fn create_topic(&self) -> Result<String, SnsError> {
        let name = self.param("Name").unwrap_or_default();
        self.principal
            .check("sns:CreateTopic", &format!("topic:{name}"))?;
        self.declared(name)?;
        Ok(format!("<TopicArn>{}</TopicArn>", xml(&self.arn(name))))
    }

    fn list_topics(&self) -> Result<String, SnsError> {
        self.principal.check("sns:ListTopics", "topic:*")?;
        let mut out = String::from("<Topics>");
        for topic in &self.generation.events.resources.topics {
            let _ = write!(
                out,
                "<member><TopicArn>{}</TopicArn></member>",
                xml(&self.arn(&topic.name))
            );
        }
        out.push_str("</Topics>");
        Ok(out)
    }

    fn get_topic_attributes(&self) -> Result<String, SnsError> {
        let topic = self.topic("TopicArn")?;
        self.principal
            .check("sns:GetTopicAttributes", &format!("topic:{topic}"))?;
        self.declared(&topic)?;
        let arn = self.arn(&topic);
        Ok(format!(
            "<Attributes><entry><key>TopicArn</key><value>{}</value></entry><entry><key>DisplayName</key><value>{}</value></entry></Attributes>",
            xml(&arn),
            xml(&topic)
        ))
    }

    fn list_subscriptions(&self) -> Result<String, SnsError> {
        let topic = self.topic("TopicArn")?;
        self.principal
            .check("sns:ListSubscriptionsByTopic", &format!("topic:{topic}"))?;
        let spec = self.declared(&topic)?;
        let arn = self.arn(&topic);
        let mut out = String::from("<Subscriptions>");
        for (idx, subscription) in spec.subscriptions.iter().enumerate() {
            let _ = write!(
                out,
                "<member><TopicArn>{0}</TopicArn><SubscriptionArn>{0}:{idx}</SubscriptionArn><Endpoint>{1}</Endpoint><Owner>{2}</Owner></member>",
                xml(&arn),
                xml(&format!("{:?}", subscription.endpoint)),
                nimbus_core::ACCOUNT_ID
            );
        }
        out.push_str("</Subscriptions>");
        Ok(out)
    }
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
