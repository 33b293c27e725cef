//! State machines: serverless-step-functions' `stepFunctions.stateMachines` and nimbus.yaml's
//! `workflows:` (the same fields).
//!
//! A state machine is declared in two steps. First its logical id (its `id`, else
//! `<Key>StepFunctionsStateMachine` as the plugin names it) is registered, so `Ref` (its ARN)
//! and `Fn::GetAtt [Id, Name]` resolve in functions' environments. Then, once the functions
//! are known, its definition (YAML, a JSON string, or `${file(..)}`) is read: `Fn::GetAtt
//! [fn, Arn]` and `Ref` of a function (by its key or its `<Fn>LambdaFunction` logical id)
//! become the function's ARN, `#{AWS::Region}` and `#{AWS::AccountId}` (the
//! serverless-pseudo-parameters spelling) are replaced, and the definition is checked by the
//! workflow engine's validator, its problems reported at the line of the state they are in.

use serde_json::Value as Json;

use crate::ApiKind;
use crate::events::ScheduleEvent;
use crate::workflow::machine::{MachineKind, MachineRoute, StateMachineSpec, state_machine_arn};

use super::resources::{Logical, to_json};
use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// A state machine whose definition is read once the functions are known.
pub(super) struct PendingMachine {
    pub(super) key: String,
    pub(super) name: String,
    pub(super) logical_id: String,
    pub(super) kind: MachineKind,
    pub(super) definition: Option<Node>,
    pub(super) http: Vec<MachineRoute>,
    pub(super) schedules: Vec<ScheduleEvent>,
}

impl Cx<'_> {
    /// Registers the state machines of `stepFunctions.stateMachines` (or `workflows:`) and
    /// returns them for [`Self::finish_state_machines`].
    pub(super) fn state_machines(&mut self, entry: &Entry) -> Vec<PendingMachine> {
        let (node, key) = if entry.key == "stepFunctions" {
            let node = self.read(&entry.value, "stepFunctions");
            let Value::Map(fields) = &node.value else {
                let message = format!(
                    "expected a mapping with `stateMachines`, got {}",
                    node.describe()
                );
                self.error(node.pos, "stepFunctions", message);
                return Vec::new();
            };
            let mut machines = None;
            for field in fields {
                match field.key.as_str() {
                    "stateMachines" => machines = Some(field.value.clone()),
                    // Activities and the plugin's validation switches mean nothing here.
                    "validate" | "noOutput" => {}
                    other => self.warn(
                        field.key_pos,
                        &join_key("stepFunctions", other),
                        "not modelled by nimbus; ignored",
                    ),
                }
            }
            let Some(machines) = machines else {
                return Vec::new();
            };
            (machines, "stepFunctions.stateMachines".to_owned())
        } else {
            (entry.value.clone(), entry.key.clone())
        };
        let node = self.read(&node, &key);
        let Value::Map(entries) = &node.value else {
            let message = format!(
                "expected a mapping of state machines by key, got {}",
                node.describe()
            );
            self.error(node.pos, &key, message);
            return Vec::new();
        };
        let mut pending = Vec::new();
        for machine in entries {
            let machine_key = join_key(&key, &machine.key);
            if let Some(machine) = self.state_machine(machine, &machine_key) {
                pending.push(machine);
            }
        }
        pending
    }

    fn state_machine(&mut self, entry: &Entry, key: &str) -> Option<PendingMachine> {
        let node = self.read(&entry.value, key);
        let Value::Map(fields) = &node.value else {
            let message = format!(
                "expected a state machine with `definition`, got {}",
                node.describe()
            );
            self.error(node.pos, key, message);
            return None;
        };
        let mut name = None;
        let mut id = None;
        let mut kind = MachineKind::Standard;
        let mut definition = None;
        let mut events = None;
        for field in fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "name" => name = self.string(&field.value, &field_key, "a state machine name"),
                "id" => id = self.string(&field.value, &field_key, "a logical id"),
                "type" => {
                    kind = match self
                        .string(&field.value, &field_key, "STANDARD or EXPRESS")
                        .as_deref()
                    {
                        Some("STANDARD") | None => MachineKind::Standard,
                        Some("EXPRESS") => MachineKind::Express,
                        Some(other) => {
                            let message = format!("expected STANDARD or EXPRESS, got {other:?}");
                            self.error(field.value.pos, &field_key, message);
                            MachineKind::Standard
                        }
                    }
                }
                "definition" => definition = Some(field.value.clone()),
                // What AWS needs and nimbus does not: the role, logs, tracing, tags, alarms,
                // the events the plugin wires (served as warnings below).
                "role" | "loggingConfig" | "tracingConfig" | "tags" | "alarms"
                | "notifications" | "dependsOn" | "retain" | "useExactVersion" => {}
                "events" => events = Some((field.value.clone(), field_key)),
                other => self.warn(
                    field.key_pos,
                    &join_key(key, other),
                    "not modelled by nimbus; ignored",
                ),
            }
        }
        if definition.is_none() {
            self.error(
                node.pos,
                key,
                "a state machine needs a `definition` (States Language, as YAML or a JSON string)",
            );
        }
        let name = name.unwrap_or_else(|| entry.key.clone());
        if !crate::workflow::machine::valid_name(&name) {
            let message = format!(
                "{name:?} is not a valid state machine name (1 to 80 characters, no whitespace or punctuation such as : / ? * #)"
            );
            self.error(node.pos, key, message);
            return None;
        }
        let logical_id =
            id.unwrap_or_else(|| format!("{}StepFunctionsStateMachine", normalize(&entry.key)));
        if self
            .app
            .resources
            .state_machines
            .iter()
            .any(|m| m.name == name)
        {
            let message = format!("a second state machine is named {name:?}; rename one");
            self.error(entry.key_pos, key, message);
            return None;
        }
        for id in [logical_id.clone(), entry.key.clone(), name.clone()] {
            self.app
                .logical_ids
                .entry(id)
                .or_insert_with(|| Logical::StateMachine(name.clone()));
        }
        let (http, schedules) = match events {
            Some((node, events_key)) => self.machine_events(&node, &events_key, &name, kind),
            None => (Vec::new(), Vec::new()),
        };
        Some(PendingMachine {
            key: key.to_owned(),
            name,
            logical_id,
            kind,
            definition,
            http,
            schedules,
        })
    }

    /// A state machine's `events`: `http` (API Gateway's Step Functions integration) and
    /// `schedule`, as serverless-step-functions reads them.
    fn machine_events(
        &mut self,
        node: &Node,
        key: &str,
        machine: &str,
        kind: MachineKind,
    ) -> (Vec<MachineRoute>, Vec<ScheduleEvent>) {
        let mut http = Vec::new();
        let mut schedules = Vec::new();
        let node = self.read(node, key);
        let items = match node.value {
            Value::Seq(items) => items,
            Value::Null | Value::Invalid => return (http, schedules),
            _ => {
                let message = format!(
                    "expected a list of events such as `- http: POST /orders` or `- schedule: rate(1 hour)`, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                return (http, schedules);
            }
        };
        let mut n_schedules = 0;
        for (idx, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{idx}]");
            let item = self.read(item, &item_key);
            let entry = match &item.value {
                Value::Map(entries) if entries.len() == 1 => &entries[0],
                Value::Invalid => continue,
                _ => {
                    let message = format!(
                        "expected an event with one key naming its type, such as `- http: POST /orders`, got {}",
                        item.describe()
                    );
                    self.error(item.pos, &item_key, message);
                    continue;
                }
            };
            let event_key = join_key(&item_key, &entry.key);
            match entry.key.as_str() {
                "http" => {
                    if let Some(route) = self.machine_route(&entry.value, &event_key, kind) {
                        http.push(route);
                    }
                }
                "schedule" => schedules.extend(self.schedule(
                    &entry.value,
                    &event_key,
                    machine,
                    &mut n_schedules,
                )),
                other => {
                    let message = format!(
                        "`{other}` events of state machines are not served by nimbus; ignored (http and schedule are)"
                    );
                    self.warn(entry.key_pos, &event_key, message);
                }
            }
        }
        (http, schedules)
    }

    /// One `http` event of a state machine: a function's route fields, with the plugin's
    /// `action` (StartExecution or StartSyncExecution) taken out first.
    fn machine_route(&mut self, node: &Node, key: &str, kind: MachineKind) -> Option<MachineRoute> {
        let read = self.read(node, key);
        let mut sync = false;
        let mut route_node = read.clone();
        if let Value::Map(fields) = &read.value {
            let mut kept = Vec::new();
            for field in fields {
                let field_key = join_key(key, &field.key);
                match field.key.as_str() {
                    "action" => {
                        match self
                            .string(&field.value, &field_key, "StartExecution or StartSyncExecution")
                            .as_deref()
                        {
                            Some("StartExecution") | None => {}
                            Some("StartSyncExecution") if kind == MachineKind::Express => {
                                sync = true
                            }
                            Some("StartSyncExecution") => {
                                self.error(
                                    field.value.pos,
                                    &field_key,
                                    "StartSyncExecution needs an EXPRESS state machine; add `type: EXPRESS` or use StartExecution",
                                );
                                return None;
                            }
                            Some(other) => {
                                let message = format!(
                                    "expected StartExecution or StartSyncExecution, got {other:?}"
                                );
                                self.error(field.value.pos, &field_key, message);
                                return None;
                            }
                        }
                    }
                    // Mapping templates: the plugin's default (the body is the input, the
                    // request id the name) is what nimbus does.
                    "request" | "response" => self.warn(
                        field.key_pos,
                        &field_key,
                        "custom mapping templates are not modelled; the JSON body is the execution's input",
                    ),
                    _ => kept.push(field.clone()),
                }
            }
            route_node.value = Value::Map(kept);
        }
        let (route, _) = self.route(&route_node, key, ApiKind::Rest, false)?;
        Some(MachineRoute { route, sync })
    }

    /// Reads and checks the definitions, now that the functions are known.
    pub(super) fn finish_state_machines(&mut self, pending: Vec<PendingMachine>) {
        for machine in pending {
            let Some(node) = machine.definition else {
                continue;
            };
            let def_key = join_key(&machine.key, "definition");
            let node = self.read_deep(&node, &def_key);
            let (mut json, positions) = match &node.value {
                Value::Str(text) => match serde_json::from_str::<Json>(text) {
                    Ok(json) => (json, None),
                    Err(e) => {
                        let message = format!("the definition is a string but not JSON: {e}");
                        self.error(node.pos, &def_key, message);
                        continue;
                    }
                },
                Value::Map(_) => (to_json(&node), Some(&node)),
                _ => {
                    let message = format!(
                        "expected a States Language definition (a mapping, or a JSON string), got {}",
                        node.describe()
                    );
                    self.error(node.pos, &def_key, message);
                    continue;
                }
            };
            if let Err((path, message)) = self.resolve_definition(&mut json, String::new()) {
                let pos = positions.map_or(node.pos, |n| position_at(n, &path));
                self.error(pos, &join_key(&def_key, &path), message);
                continue;
            }
            match crate::workflow::check(&json) {
                Ok(_) => {}
                Err(problems) => {
                    for problem in problems {
                        let pos = positions.map_or(node.pos, |n| position_at(n, &problem.location));
                        let at = join_key(&def_key, &problem.location);
                        if problem.severity == crate::workflow::Severity::Warning {
                            self.warn(pos, &at, problem.message);
                        } else {
                            self.error(pos, &at, problem.message);
                        }
                    }
                    continue;
                }
            }
            self.app.resources.state_machines.push(StateMachineSpec {
                name: machine.name,
                logical_id: machine.logical_id,
                definition: json,
                kind: machine.kind,
                http: machine.http,
                schedules: machine.schedules,
            });
        }
    }

    /// Replaces the intrinsics a definition may hold with the ARNs they stand for.
    fn resolve_definition(&self, json: &mut Json, path: String) -> Result<(), (String, String)> {
        match json {
            Json::Object(map) if map.len() == 1 => {
                let (key, value) = map
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap_or_default();
                let target = match (key.as_str(), &value) {
                    ("Fn::GetAtt", Json::Array(parts)) if parts.len() == 2 => parts[0]
                        .as_str()
                        .map(|id| (id.to_owned(), parts[1].as_str().unwrap_or("Arn").to_owned())),
                    ("Fn::GetAtt", Json::String(text)) => text
                        .split_once('.')
                        .map(|(id, attr)| (id.to_owned(), attr.to_owned())),
                    ("Ref", Json::String(id)) => Some((id.clone(), "Ref".to_owned())),
                    _ => None,
                };
                if let Some((id, attribute)) = target {
                    *json = Json::String(
                        self.definition_reference(&id, &attribute)
                            .map_err(|m| (path.clone(), m))?,
                    );
                    return Ok(());
                }
                for (key, value) in map.iter_mut() {
                    self.resolve_definition(value, join_key(&path, key))?;
                }
                Ok(())
            }
            Json::Object(map) => {
                for (key, value) in map.iter_mut() {
                    self.resolve_definition(value, join_key(&path, key))?;
                }
                Ok(())
            }
            Json::Array(items) => {
                for (idx, item) in items.iter_mut().enumerate() {
                    self.resolve_definition(item, format!("{path}[{idx}]"))?;
                }
                Ok(())
            }
            Json::String(text) if text.contains("#{") => {
                let region = if self.app.region.is_empty() {
                    "us-east-1"
                } else {
                    &self.app.region
                };
                *text = text
                    .replace("#{AWS::Region}", region)
                    .replace("#{AWS::AccountId}", crate::ACCOUNT_ID)
                    .replace("#{AWS::Partition}", "aws");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What `Ref` / `Fn::GetAtt` of `id` gives inside a definition: a function's ARN, or
    /// what it gives anywhere else (a queue's URL, a table's name, a state machine's ARN).
    fn definition_reference(&self, id: &str, attribute: &str) -> Result<String, String> {
        let function =
            self.app.function_names.iter().find(|name| {
                name.as_str() == id || format!("{}LambdaFunction", normalize(name)) == id
            });
        if let Some(function) = function {
            let region = if self.app.region.is_empty() {
                "us-east-1"
            } else {
                &self.app.region
            };
            return Ok(format!(
                "arn:aws:lambda:{region}:{}:function:{}-{}-{function}",
                crate::ACCOUNT_ID,
                self.app.service,
                self.app.stage
            ));
        }
        match attribute {
            "Ref" => self.ref_value(id),
            attribute => self.get_att(id, attribute),
        }
    }
}

/// The Framework's `normalizeName`: the first letter upper-cased, `-` spelled `Dash` and `_`
/// spelled `Underscore` (`hello-world` → `HelloDashworld`).
fn normalize(name: &str) -> String {
    let mut chars = name.chars();
    let first: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    let rest: String = chars.collect();
    format!("{first}{rest}")
        .replace('-', "Dash")
        .replace('_', "Underscore")
}

/// The position of the field at a dotted path such as `States.Hello.Retry[0].BackoffRate`
/// (its key's, for a named field), or of the deepest part of it that exists.
fn position_at(node: &Node, path: &str) -> Pos {
    let mut current = node;
    let mut pos = node.pos;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = match part.split_once('[') {
            Some((name, rest)) => (name, Some(rest)),
            None => (part, None),
        };
        if !name.is_empty() {
            match current.get(name) {
                Some(entry) => {
                    current = &entry.value;
                    pos = entry.key_pos;
                }
                None => return pos,
            }
        }
        for index in indexes
            .into_iter()
            .flat_map(|rest| rest.split('['))
            .filter_map(|i| i.trim_end_matches(']').parse::<usize>().ok())
        {
            match &current.value {
                Value::Seq(items) if index < items.len() => {
                    current = &items[index];
                    pos = current.pos;
                }
                _ => return pos,
            }
        }
    }
    pos
}

impl Logical {
    /// A state machine's ARN in `region`.
    pub(super) fn state_machine_arn(name: &str, region: &str) -> String {
        state_machine_arn(if region.is_empty() { "*" } else { region }, name)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use expect_test::{Expect, expect};

    use crate::manifest::{Variables, parse};

    /// Parses `yaml`: the state machines and the environments naming them, or the
    /// diagnostics.
    fn check(yaml: &str, expect: Expect) {
        let yaml: String = yaml
            .lines()
            .map(|line| line.strip_prefix("        ").unwrap_or(line.trim_start()))
            .map(|line| format!("{line}\n"))
            .collect();
        let actual = match parse(&yaml, "serverless.yml", &Variables::default()) {
            Ok(manifest) => {
                let mut out = String::new();
                for machine in &manifest.resources.state_machines {
                    let _ = writeln!(
                        out,
                        "{} ({}, {}): {}",
                        machine.name,
                        machine.logical_id,
                        machine.kind.as_str(),
                        machine.definition
                    );
                }
                for function in &manifest.functions {
                    for (name, value) in &function.environment {
                        let _ = writeln!(out, "{}.{name} = {value}", function.name);
                    }
                }
                for warning in &manifest.warnings {
                    let _ = writeln!(out, "{warning}");
                }
                out
            }
            Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn step_functions_definitions_resolve_functions_and_environments_name_the_machine() {
        check(
            r#"
        service: shop
        provider: { name: aws, runtime: nodejs20.x, region: eu-west-1 }
        plugins: [serverless-step-functions]
        functions:
          reserve: { handler: h.reserve }
          start:
            handler: h.start
            environment:
              MACHINE: { Ref: OrderFlowStepFunctionsStateMachine }
              BY_ID: { Ref: Payments }
              NAME: { Fn::GetAtt: [Payments, Name] }
        stepFunctions:
          stateMachines:
            orderFlow:
              definition:
                StartAt: Reserve
                States:
                  Reserve:
                    Type: Task
                    Resource: { Fn::GetAtt: [reserve, Arn] }
                    Next: Charge
                  Charge:
                    Type: Task
                    Resource: arn:aws:lambda:#{AWS::Region}:#{AWS::AccountId}:function:shop-dev-reserve
                    End: true
            payments:
              id: Payments
              name: payments-flow
              type: EXPRESS
              definition: '{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Parameters":{"FunctionName":{"Ref":"ReserveLambdaFunction"}},"End":true}}}'
        "#,
            expect![[r#"
                orderFlow (OrderFlowStepFunctionsStateMachine, STANDARD): {"StartAt":"Reserve","States":{"Charge":{"End":true,"Resource":"arn:aws:lambda:eu-west-1:123456789012:function:shop-dev-reserve","Type":"Task"},"Reserve":{"Next":"Charge","Resource":"arn:aws:lambda:eu-west-1:123456789012:function:shop-dev-reserve","Type":"Task"}}}
                payments-flow (Payments, EXPRESS): {"StartAt":"A","States":{"A":{"End":true,"Parameters":{"FunctionName":"arn:aws:lambda:eu-west-1:123456789012:function:shop-dev-reserve"},"Resource":"arn:aws:states:::lambda:invoke","Type":"Task"}}}
                start.BY_ID = arn:aws:states:eu-west-1:123456789012:stateMachine:payments-flow
                start.MACHINE = arn:aws:states:eu-west-1:123456789012:stateMachine:orderFlow
                start.NAME = payments-flow
            "#]],
        );
    }

    #[test]
    fn definition_problems_name_the_line_of_the_state() {
        check(
            r#"
        service: shop
        provider: { name: aws, runtime: nodejs20.x }
        functions:
          f: { handler: h.f }
        workflows:
          broken:
            definition:
              StartAt: First
              States:
                First:
                  Type: Pass
                  Next: Nowhere
                Lost:
                  Type: Succeed
                Calls:
                  Type: Task
                  Resource: { Fn::GetAtt: [missing, Arn] }
                  End: true
          empty: {}
        "#,
            expect![[r#"
                serverless.yml:18:11: workflows.broken.definition.States.Calls.Resource: `missing` is not declared under `resources.Resources`
                serverless.yml:20:10: workflows.empty: a state machine needs a `definition` (States Language, as YAML or a JSON string)
            "#]],
        );
        check(
            r#"
        service: shop
        provider: { name: aws, runtime: nodejs20.x }
        functions:
          f: { handler: h.f }
        workflows:
          broken:
            definition:
              StartAt: First
              States:
                First:
                  Type: Pass
                  Next: Nowhere
                Lost:
                  Type: Succeed
        "#,
            expect![[r#"
                serverless.yml:13:11: workflows.broken.definition.States.First.Next: no state is named 'Nowhere' in this state machine
                serverless.yml:14:9: workflows.broken.definition.States.Lost: the state 'Lost' is not reachable from StartAt
            "#]],
        );
    }
}
