//! State machines as an app declares them (serverless-step-functions' `stepFunctions:` or
//! nimbus.yaml's `workflows:`), and their ARNs.

use serde_json::Value;

/// A state machine of the app.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineSpec {
    /// Its name: the last segment of its ARN.
    pub name: String,
    /// The key it is declared under, which `Ref` and `Fn::GetAtt` name (serverless-step-
    /// functions' `id`, or `<Key>StepFunctionsStateMachine` when none is given).
    pub logical_id: String,
    /// Its definition, with the manifest's references resolved.
    pub definition: Value,
    /// STANDARD or EXPRESS.
    pub kind: MachineKind,
    /// `http` events: routes whose requests start an execution.
    pub http: Vec<MachineRoute>,
    /// `schedule` events: each fire starts an execution.
    pub schedules: Vec<crate::events::ScheduleEvent>,
}

/// An `http` event of a state machine: API Gateway's Step Functions integration, as
/// serverless-step-functions configures it. The request's JSON body is the execution's input
/// and its request id the execution's name; the answer is the Step Functions API's.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineRoute {
    /// The route, with the same policies (CORS, authorizers, API keys) as a function's.
    pub route: crate::HttpRoute,
    /// `action: StartSyncExecution` (EXPRESS machines): answer with the execution's result.
    pub sync: bool,
}

/// Step Functions' two workflow types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineKind {
    /// Durable, journaled, exactly-once transitions; GetExecutionHistory lists them.
    Standard,
    /// Short-lived and at-least-once in AWS; nimbus journals them too, and StartSyncExecution
    /// answers with their result.
    Express,
}

impl MachineKind {
    /// `STANDARD` or `EXPRESS`.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineKind::Standard => "STANDARD",
            MachineKind::Express => "EXPRESS",
        }
    }
}

/// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
pub fn state_machine_arn(region: &str, name: &str) -> String {
    format!(
        "arn:aws:states:{region}:{}:stateMachine:{name}",
        crate::ACCOUNT_ID
    )
}

/// `arn:aws:states:<region>:<account>:execution:<machine>:<name>`.
pub fn execution_arn(region: &str, machine: &str, name: &str) -> String {
    format!(
        "arn:aws:states:{region}:{}:execution:{machine}:{name}",
        crate::ACCOUNT_ID
    )
}

/// The role executions run as: `$$.Execution.RoleArn`.
pub fn role_arn(machine: &str) -> String {
    format!("arn:aws:iam::{}:role/{machine}-role", crate::ACCOUNT_ID)
}

/// The machine name and execution name of an execution ARN.
pub fn parse_execution_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:states:")?;
    let mut parts = rest.splitn(5, ':');
    let (_region, _account, kind) = (parts.next()?, parts.next()?, parts.next()?);
    if kind != "execution" && kind != "express" {
        return None;
    }
    let machine = parts.next()?;
    let name = parts.next()?;
    Some((machine, name))
}

/// The name in a state machine ARN, or the name itself.
pub fn machine_name(arn_or_name: &str) -> &str {
    match arn_or_name.strip_prefix("arn:aws:states:") {
        Some(rest) => rest.rsplit(':').next().unwrap_or(rest),
        None => arn_or_name,
    }
}

/// Whether `name` is a valid execution or state machine name: 1 to 80 characters, none of
/// whitespace, `< > { } [ ] ? * " # % \ ^ | ~ ` $ & , ; : /` or control characters.
pub fn valid_name(name: &str) -> bool {
    (1..=80).contains(&name.chars().count())
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_name_their_machine_and_execution() {
        let arn = execution_arn("us-east-1", "orders", "run-1");
        assert_eq!(parse_execution_arn(&arn), Some(("orders", "run-1")));
        assert_eq!(parse_execution_arn("arn:aws:states:x"), None);
        assert_eq!(
            machine_name(&state_machine_arn("eu-west-1", "orders")),
            "orders"
        );
        assert_eq!(machine_name("orders"), "orders");
        assert!(valid_name("order-42_a.b"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(!valid_name("a:b"));
        assert!(!valid_name(&"x".repeat(81)));
    }
}
