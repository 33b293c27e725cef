//! The members of a JSON-protocol request (Step Functions, Kinesis, DynamoDB and DynamoDB
//! Streams), read with the errors those services answer: a required member that is missing
//! or null is a ValidationException worded as AWS's validators word it, a member of the wrong
//! JSON type a SerializationException. Each service's request type implements
//! [`MemberReader`] and turns a [`MemberError`] into its own error.

use serde_json::{Map, Value as Json};

/// Why a member could not be read: the service's error code and message.
#[derive(Debug)]
pub(crate) struct MemberError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// Reads the members of one JSON object of a request.
pub(crate) trait MemberReader<'r> {
    /// The service's error, which every [`MemberError`] becomes.
    type Error: From<MemberError>;

    /// The object read.
    fn members(&self) -> &'r Map<String, Json>;

    /// A required string.
    fn string(&self, field: &str) -> Result<String, Self::Error> {
        self.optional_string(field)?
            .ok_or_else(|| missing(field).into())
    }

    fn optional_string(&self, field: &str) -> Result<Option<String>, Self::Error> {
        match self.members().get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong_type(field, "a string", other).into()),
        }
    }

    fn optional_bool(&self, field: &str) -> Result<Option<bool>, Self::Error> {
        match self.members().get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(field, "a boolean", other).into()),
        }
    }

    /// A whole number of at least `minimum`, if given.
    fn optional_whole(&self, field: &str, minimum: u64) -> Result<Option<u64>, Self::Error> {
        match self.members().get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => match n.as_u64() {
                Some(value) if value >= minimum => Ok(Some(value)),
                _ => Err(MemberError {
                    code: "ValidationException",
                    message: format!(
                        "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value greater than or equal to {minimum}",
                        lower_first(field)
                    ),
                }
                .into()),
            },
            Some(other) => Err(wrong_type(field, "a number", other).into()),
        }
    }

    /// A required list.
    fn array(&self, field: &str) -> Result<&'r [Json], Self::Error> {
        match self.members().get(field) {
            Some(Json::Array(items)) => Ok(items),
            None | Some(Json::Null) => Err(missing(field).into()),
            Some(other) => Err(wrong_type(field, "a list", other).into()),
        }
    }
}

/// A required member that is missing or null.
pub(crate) fn missing(field: &str) -> MemberError {
    MemberError {
        code: "ValidationException",
        message: format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ),
    }
}

/// A member of the wrong JSON type.
pub(crate) fn wrong_type(field: &str, what: &str, got: &Json) -> MemberError {
    MemberError {
        code: "SerializationException",
        message: format!("{field} must be {what}, got {got}"),
    }
}

/// `StreamName` as AWS's validators name it: `streamName`.
pub(crate) fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Req<'r>(&'r Map<String, Json>);

    impl<'r> MemberReader<'r> for Req<'r> {
        type Error = MemberError;
        fn members(&self) -> &'r Map<String, Json> {
            self.0
        }
    }

    #[test]
    fn members_are_read_with_the_errors_aws_json_services_give() {
        let body = json!({"StreamName": "s", "Limit": 0, "On": "yes", "Items": [1], "Null": null});
        let Json::Object(map) = &body else {
            unreachable!("an object")
        };
        let r = Req(map);
        assert_eq!(r.string("StreamName").ok(), Some("s".to_owned()));
        let missing = r.string("Null").unwrap_err();
        assert_eq!(missing.code, "ValidationException");
        assert!(
            missing.message.contains("Value null at 'null'"),
            "{}",
            missing.message
        );
        let wrong = r.optional_bool("On").unwrap_err();
        assert_eq!(
            (wrong.code, wrong.message.as_str()),
            (
                "SerializationException",
                r#"On must be a boolean, got "yes""#
            )
        );
        let small = r.optional_whole("Limit", 1).unwrap_err();
        assert!(
            small
                .message
                .ends_with("Member must have value greater than or equal to 1"),
            "{}",
            small.message
        );
        assert_eq!(r.optional_whole("Limit", 0).ok(), Some(Some(0)));
        assert_eq!(r.array("Items").map(<[Json]>::len).ok(), Some(1));
        assert_eq!(r.array("Nothing").unwrap_err().code, "ValidationException");
    }
}
