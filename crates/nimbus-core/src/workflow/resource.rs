//! What a Task's `Resource` names: a Lambda function, or one of the service integrations nimbus runs.

/// A Task's resource, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`: the function is
    /// invoked with the effective input and its response is the task's result.
    Function {
        /// The function's name.
        name: String,
        /// The version or alias after the name, if any.
        qualifier: Option<String>,
    },
    /// `arn:aws:states:::<service>:<action>[.sync|.sync:2|.waitForTaskToken]`.
    Service {
        /// `lambda`, `sqs`, `sns`, `dynamodb`, `states`, `events`.
        service: String,
        /// `invoke`, `sendMessage`, `publish`, `putItem`, `startExecution`, ...
        action: String,
        /// How the task completes.
        pattern: Pattern,
    },
}

/// A service integration's completion pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// The call's response is the result.
    RequestResponse,
    /// `.sync`: the result is the finished job's (a child execution's) description.
    Sync,
    /// `.sync:2`: as `.sync`, with the child's output as JSON rather than text.
    Sync2,
    /// `.waitForTaskToken`: the result comes from SendTaskSuccess or SendTaskFailure.
    WaitForTaskToken,
}

/// The integrations nimbus runs, with the patterns each allows.
const INTEGRATIONS: &[(&str, &str, &[Pattern])] = &[
    (
        "lambda",
        "invoke",
        &[Pattern::RequestResponse, Pattern::WaitForTaskToken],
    ),
    (
        "sqs",
        "sendMessage",
        &[Pattern::RequestResponse, Pattern::WaitForTaskToken],
    ),
    (
        "sns",
        "publish",
        &[Pattern::RequestResponse, Pattern::WaitForTaskToken],
    ),
    (
        "events",
        "putEvents",
        &[Pattern::RequestResponse, Pattern::WaitForTaskToken],
    ),
    ("dynamodb", "getItem", &[Pattern::RequestResponse]),
    ("dynamodb", "putItem", &[Pattern::RequestResponse]),
    ("dynamodb", "updateItem", &[Pattern::RequestResponse]),
    ("dynamodb", "deleteItem", &[Pattern::RequestResponse]),
    (
        "states",
        "startExecution",
        &[
            Pattern::RequestResponse,
            Pattern::Sync,
            Pattern::Sync2,
            Pattern::WaitForTaskToken,
        ],
    ),
];

impl Resource {
    /// Classifies `resource`, or says why nimbus cannot run it.
    pub fn parse(resource: &str) -> Result<Resource, String> {
        if let Some(rest) = resource.strip_prefix("arn:aws:states:::") {
            let (service, rest) = rest
                .split_once(':')
                .ok_or_else(|| format!("'{resource}' names no action"))?;
            if service == "aws-sdk" {
                return Err(format!(
                    "'{resource}': AWS SDK integrations are not supported; call the service from a function"
                ));
            }
            let (action, pattern) = match rest.split_once('.') {
                None => (rest, Pattern::RequestResponse),
                Some((action, "sync")) => (action, Pattern::Sync),
                Some((action, "sync:2")) => (action, Pattern::Sync2),
                Some((action, "waitForTaskToken")) => (action, Pattern::WaitForTaskToken),
                Some((_, other)) => {
                    return Err(format!(
                        "'{resource}': unknown integration pattern .{other}"
                    ));
                }
            };
            let Some((_, _, patterns)) = INTEGRATIONS
                .iter()
                .find(|(s, a, _)| *s == service && *a == action)
            else {
                let known: Vec<String> = INTEGRATIONS
                    .iter()
                    .map(|(s, a, _)| format!("{s}:{a}"))
                    .collect();
                return Err(format!(
                    "'{resource}': nimbus runs the {} integrations only",
                    known.join(", ")
                ));
            };
            if !patterns.contains(&pattern) {
                return Err(format!(
                    "'{resource}': {service}:{action} does not support this pattern"
                ));
            }
            return Ok(Resource::Service {
                service: service.to_owned(),
                action: action.to_owned(),
                pattern,
            });
        }
        let parts: Vec<&str> = resource.split(':').collect();
        match parts.as_slice() {
            ["arn", "aws", "lambda", _, _, "function", name] if !name.is_empty() => {
                Ok(Resource::Function {
                    name: (*name).to_owned(),
                    qualifier: None,
                })
            }
            ["arn", "aws", "lambda", _, _, "function", name, qualifier] if !name.is_empty() => {
                Ok(Resource::Function {
                    name: (*name).to_owned(),
                    qualifier: Some((*qualifier).to_owned()),
                })
            }
            ["arn", "aws", "states", _, _, "activity", _] => {
                Err(format!("'{resource}': activities are not supported"))
            }
            _ => Err(format!(
                "'{resource}' is neither a Lambda function ARN nor an arn:aws:states::: integration"
            )),
        }
    }
}
