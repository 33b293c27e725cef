//! The ASL definition as a typed tree, parsed from JSON with errors that name the state and field.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::workflow::Diagnostic;
use crate::workflow::intrinsic::{self, Call};
use crate::workflow::path::Path;
use crate::workflow::resource::Resource;

/// A state machine definition: the top-level states plus the execution's `TimeoutSeconds`.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The top-level states.
    pub machine: Machine,
    /// `TimeoutSeconds` of the whole execution.
    pub timeout_seconds: Option<u64>,
    /// `Comment`.
    pub comment: Option<String>,
    /// Whether any Path reads the context object (`$$`): when none does, the engine does not
    /// build it for every state.
    pub uses_context: bool,
}

/// One set of states with a `StartAt`: the definition, a Parallel branch or a Map's processor.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The first state.
    pub start_at: String,
    /// The states in the order written.
    pub states: Vec<State>,
    /// Where this machine sits in the definition (`""`, `States.P.Branches[0]`).
    pub location: String,
    index: HashMap<String, usize>,
    /// States that could not be parsed (only in a definition with parse errors), so that
    /// validation does not also call them missing.
    broken: Vec<String>,
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// Its name, the key in `States`.
    pub name: String,
    /// Its type and type-specific fields.
    pub kind: StateKind,
    /// `Next` or `End` (Choice, Succeed and Fail have neither: [`Transition::None`]).
    pub transition: Transition,
    /// The input and output processing fields.
    pub io: Io,
    /// Where it sits in the definition (`States.Hello`).
    pub location: String,
}

/// What follows a state.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// `Next`.
    Next(String),
    /// `End: true`.
    End,
    /// Choice, Succeed and Fail decide for themselves.
    None,
}

/// A JSONPath field that may also be `null` (InputPath, OutputPath, ResultPath).
#[derive(Debug, Clone)]
pub enum PathField {
    /// Absent: `$`.
    Default,
    /// `null`: `{}` for InputPath and OutputPath, "discard the result" for ResultPath.
    Null,
    /// A Path.
    Path(Path),
}

/// The five processing fields; which apply depends on the state type.
#[derive(Debug, Clone)]
pub struct Io {
    /// `InputPath`.
    pub input_path: PathField,
    /// `OutputPath`.
    pub output_path: PathField,
    /// `Parameters` (`ItemSelector` for Map).
    pub parameters: Option<Template>,
    /// `ResultSelector`.
    pub result_selector: Option<Template>,
    /// `ResultPath`.
    pub result_path: PathField,
}

/// A payload template: JSON in which keys ending in `.$` take a Path or an intrinsic call.
#[derive(Debug, Clone)]
pub enum Template {
    /// A value copied as written.
    Literal(Value),
    /// The value at a Path (a `.$` key's value).
    Path(Path),
    /// The result of an intrinsic call (a `.$` key's value).
    Call(Call),
    /// An object whose members are templates, keys without their `.$`.
    Object(Vec<(String, Template)>),
    /// An array of templates.
    Array(Vec<Template>),
}

/// The type-specific part of a state.
#[derive(Debug, Clone)]
pub enum StateKind {
    /// `Pass`, with its `Result`.
    Pass {
        /// `Result`.
        result: Option<Value>,
    },
    /// `Task`.
    Task(Box<Task>),
    /// `Choice`.
    Choice {
        /// `Choices`, each with its `Next`.
        choices: Vec<(Rule, String)>,
        /// `Default`.
        default: Option<String>,
    },
    /// `Wait`.
    Wait(WaitFor),
    /// `Succeed`.
    Succeed,
    /// `Fail`.
    Fail {
        /// `Error` or `ErrorPath`.
        error: Option<Text>,
        /// `Cause` or `CausePath`.
        cause: Option<Text>,
    },
    /// `Parallel`.
    Parallel {
        /// `Branches`.
        branches: Vec<Machine>,
        /// `Retry` and `Catch`.
        errors: ErrorHandling,
    },
    /// `Map` (inline).
    Map(Box<MapState>),
}

/// A Task's fields.
#[derive(Debug, Clone)]
pub struct Task {
    /// `Resource`: a function ARN or `arn:aws:states:::service:action[.pattern]`.
    pub resource: String,
    /// `TimeoutSeconds` or `TimeoutSecondsPath`.
    pub timeout: Option<Seconds>,
    /// `HeartbeatSeconds` or `HeartbeatSecondsPath`.
    pub heartbeat: Option<Seconds>,
    /// `Retry` and `Catch`.
    pub errors: ErrorHandling,
}

/// An inline Map's fields.
#[derive(Debug, Clone)]
pub struct MapState {
    /// `ItemsPath`.
    pub items_path: PathField,
    /// `ItemProcessor` or the legacy `Iterator`.
    pub processor: Machine,
    /// `MaxConcurrency` (0: no limit) or `MaxConcurrencyPath`.
    pub max_concurrency: Seconds,
    /// `ToleratedFailureCount`.
    pub tolerated_failure_count: Option<u64>,
    /// `ToleratedFailurePercentage`.
    pub tolerated_failure_percentage: Option<f64>,
    /// `Retry` and `Catch`.
    pub errors: ErrorHandling,
}

/// A number of seconds (or any count) written as a literal or as a Path into the input.
#[derive(Debug, Clone)]
pub enum Seconds {
    /// A literal.
    Fixed(u64),
    /// A `...Path` field.
    Path(Path),
}

/// A string written as a literal or as a Path/intrinsic (Fail's Error/ErrorPath, Cause/CausePath).
#[derive(Debug, Clone)]
pub enum Text {
    /// A literal.
    Fixed(String),
    /// A Path.
    Path(Path),
    /// An intrinsic call.
    Call(Call),
}

/// What a Wait waits for.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// `Seconds`.
    Seconds(u64),
    /// `Timestamp`, as microseconds since the epoch.
    Timestamp(i64),
    /// `SecondsPath`.
    SecondsPath(Path),
    /// `TimestampPath`.
    TimestampPath(Path),
}

/// `Retry` and `Catch` of a Task, Parallel or Map.
#[derive(Debug, Clone, Default)]
pub struct ErrorHandling {
    /// `Retry`, in order.
    pub retry: Vec<Retrier>,
    /// `Catch`, in order.
    pub catch: Vec<Catcher>,
}

/// One `Retry` entry.
#[derive(Debug, Clone)]
pub struct Retrier {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `IntervalSeconds` (default 1).
    pub interval_seconds: u64,
    /// `MaxAttempts` (default 3; 0 never retries).
    pub max_attempts: u64,
    /// `BackoffRate` (default 2.0).
    pub backoff_rate: f64,
    /// `MaxDelaySeconds`.
    pub max_delay_seconds: Option<u64>,
    /// `JitterStrategy`: `FULL` draws the delay uniformly from `[0, delay]`.
    pub full_jitter: bool,
}

/// One `Catch` entry.
#[derive(Debug, Clone)]
pub struct Catcher {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `Next`.
    pub next: String,
    /// `ResultPath` (default `$`).
    pub result_path: PathField,
}

/// A Choice rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// `And`.
    And(Vec<Rule>),
    /// `Or`.
    Or(Vec<Rule>),
    /// `Not`.
    Not(Box<Rule>),
    /// A comparison of `Variable` with an operand.
    Compare {
        /// `Variable`.
        variable: Path,
        /// The operator.
        op: Op,
        /// What it is compared with.
        operand: Operand,
    },
}

/// The operand of a comparison.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A literal (a bool for the `Is*` tests).
    Value(Value),
    /// A `...Path` operator's Path.
    Path(Path),
}

/// A comparison operator, without its `Path` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "each variant is the ASL operator of the same name"
)]
pub enum Op {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsPresent,
    IsNull,
    IsString,
    IsNumeric,
    IsBoolean,
    IsTimestamp,
}

const OPS: &[(&str, Op)] = &[
    ("StringEquals", Op::StringEquals),
    ("StringLessThan", Op::StringLessThan),
    ("StringGreaterThan", Op::StringGreaterThan),
    ("StringLessThanEquals", Op::StringLessThanEquals),
    ("StringGreaterThanEquals", Op::StringGreaterThanEquals),
    ("StringMatches", Op::StringMatches),
    ("NumericEquals", Op::NumericEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("BooleanEquals", Op::BooleanEquals),
    ("TimestampEquals", Op::TimestampEquals),
    ("TimestampLessThan", Op::TimestampLessThan),
    ("TimestampGreaterThan", Op::TimestampGreaterThan),
    ("TimestampLessThanEquals", Op::TimestampLessThanEquals),
    ("TimestampGreaterThanEquals", Op::TimestampGreaterThanEquals),
    ("IsPresent", Op::IsPresent),
    ("IsNull", Op::IsNull),
    ("IsString", Op::IsString),
    ("IsNumeric", Op::IsNumeric),
    ("IsBoolean", Op::IsBoolean),
    ("IsTimestamp", Op::IsTimestamp),
];

impl Op {
    /// The operator's ASL name.
    pub fn name(self) -> &'static str {
        OPS.iter().find(|o| o.1 == self).map_or("?", |o| o.0)
    }
}

/// The type of a state, as the `Type` field and the history events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "each variant is the ASL state type of the same name"
)]
pub enum StateType {
    Pass,
    Task,
    Choice,
    Wait,
    Succeed,
    Fail,
    Parallel,
    Map,
}

impl StateType {
    /// `Pass`, `Task`, ...
    pub fn name(self) -> &'static str {
        match self {
            StateType::Pass => "Pass",
            StateType::Task => "Task",
            StateType::Choice => "Choice",
            StateType::Wait => "Wait",
            StateType::Succeed => "Succeed",
            StateType::Fail => "Fail",
            StateType::Parallel => "Parallel",
            StateType::Map => "Map",
        }
    }

    /// The type named `name`.
    pub fn from_name(name: &str) -> Option<StateType> {
        [
            StateType::Pass,
            StateType::Task,
            StateType::Choice,
            StateType::Wait,
            StateType::Succeed,
            StateType::Fail,
            StateType::Parallel,
            StateType::Map,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }
}

impl StateKind {
    /// The state's type.
    pub fn state_type(&self) -> StateType {
        match self {
            StateKind::Pass { .. } => StateType::Pass,
            StateKind::Task(_) => StateType::Task,
            StateKind::Choice { .. } => StateType::Choice,
            StateKind::Wait(_) => StateType::Wait,
            StateKind::Succeed => StateType::Succeed,
            StateKind::Fail { .. } => StateType::Fail,
            StateKind::Parallel { .. } => StateType::Parallel,
            StateKind::Map(_) => StateType::Map,
        }
    }

    /// Its `Retry` and `Catch`, for the states that have them.
    pub fn errors(&self) -> Option<&ErrorHandling> {
        match self {
            StateKind::Task(task) => Some(&task.errors),
            StateKind::Parallel { errors, .. } => Some(errors),
            StateKind::Map(map) => Some(&map.errors),
            _ => None,
        }
    }
}

impl Machine {
    /// The state named `name`.
    pub fn state(&self, name: &str) -> Option<&State> {
        self.index.get(name).and_then(|&i| self.states.get(i))
    }

    /// The function the next Task after state `from` invokes, when the way there is sure:
    /// `from`'s `Next`, through Pass states, to a Task whose resource names a function (or
    /// `lambda:invoke` with a literal `FunctionName`). `None` past a Choice, Wait, Parallel
    /// or Map, or when that Task calls a service. What workflow-aware pre-warming starts
    /// while `from` runs.
    pub fn next_function(&self, from: &str) -> Option<String> {
        let mut state = self.state(from)?;
        // Each state at most once: Pass states may form a loop.
        for _ in 0..self.states.len() {
            let Transition::Next(next) = &state.transition else {
                return None;
            };
            state = self.state(next)?;
            match &state.kind {
                StateKind::Pass { .. } => continue,
                StateKind::Task(task) => return task_function(task, &state.io),
                _ => return None,
            }
        }
        None
    }

    /// Whether a state named `name` is written, even if it could not be parsed.
    pub fn has_state(&self, name: &str) -> bool {
        self.index.contains_key(name) || self.broken.iter().any(|b| b == name)
    }
}

/// The function a Task invokes: its resource's, or `lambda:invoke`'s literal `FunctionName`
/// (a name or an ARN, with an optional qualifier).
fn task_function(task: &Task, io: &Io) -> Option<String> {
    match Resource::parse(&task.resource).ok()? {
        Resource::Function { name, .. } => Some(name),
        Resource::Service {
            service, action, ..
        } if service == "lambda" && action == "invoke" => {
            let Some(Template::Object(members)) = &io.parameters else {
                return None;
            };
            let (_, name) = members.iter().find(|(key, _)| key == "FunctionName")?;
            let Template::Literal(Value::String(name)) = name else {
                return None;
            };
            // `FunctionName` takes a name, `name:qualifier` or a function ARN.
            let name = match name.strip_prefix("arn:") {
                Some(_) => name.split(':').nth(6)?,
                None => name.split(':').next()?,
            };
            Some(name.to_owned())
        }
        Resource::Service { .. } => None,
    }
}

/// Parses a definition, collecting every error rather than stopping at the first.
pub fn parse(value: &Value) -> Result<Definition, Vec<Diagnostic>> {
    match parse_partial(value) {
        (Some(definition), errors) if errors.is_empty() => Ok(definition),
        (_, errors) => Err(errors),
    }
}

/// The definition as far as it parses (states that do not are left out), and the errors.
pub(crate) fn parse_partial(value: &Value) -> (Option<Definition>, Vec<Diagnostic>) {
    let mut cx = Cx::default();
    let Some(object) = value.as_object() else {
        return (
            None,
            vec![Diagnostic::new("", "a definition is a JSON object")],
        );
    };
    cx.known(
        object,
        "",
        &[
            "StartAt",
            "States",
            "Comment",
            "TimeoutSeconds",
            "Version",
            "QueryLanguage",
        ],
    );
    if let Some(lang) = object.get("QueryLanguage")
        && lang != "JSONPath"
    {
        cx.error(
            "QueryLanguage",
            "only the JSONPath query language is supported (JSONata is not yet)",
        );
    }
    let timeout_seconds = cx.uint(object, "", "TimeoutSeconds");
    let comment = object
        .get("Comment")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let machine = cx.machine(object, "");
    let definition = machine.map(|machine| Definition {
        machine,
        timeout_seconds,
        comment,
        uses_context: cx.uses_context,
    });
    (definition, cx.errors)
}

#[derive(Default)]
struct Cx {
    errors: Vec<Diagnostic>,
    uses_context: bool,
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

impl Cx {
    fn error(&mut self, location: &str, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(location, message));
    }

    fn known(&mut self, object: &Map<String, Value>, at: &str, fields: &[&str]) {
        for key in object.keys() {
            if !fields.contains(&key.as_str()) {
                self.error(
                    &join(at, key),
                    format!("the field '{key}' is not supported here"),
                );
            }
        }
    }

    fn string(&mut self, object: &Map<String, Value>, at: &str, key: &str) -> Option<String> {
        match object.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error(&join(at, key), "must be a string");
                None
            }
        }
    }

    fn uint(&mut self, object: &Map<String, Value>, at: &str, key: &str) -> Option<u64> {
        let value = object.get(key)?;
        match value.as_u64() {
            Some(n) => Some(n),
            None => {
                self.error(&join(at, key), "must be a non-negative integer");
                None
            }
        }
    }

    fn path(&mut self, location: &str, text: &str) -> Option<Path> {
        match Path::parse(text) {
            Ok(p) => {
                self.uses_context |= p.context;
                Some(p)
            }
            Err(e) => {
                self.error(location, e.to_string());
                None
            }
        }
    }

    fn path_field(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        key: &str,
        reference: bool,
    ) -> PathField {
        let location = join(at, key);
        match object.get(key) {
            None => PathField::Default,
            Some(Value::Null) => PathField::Null,
            Some(Value::String(text)) => match self.path(&location, text) {
                Some(p) if reference && (p.context || !p.is_definite()) => {
                    self.error(
                        &location,
                        format!("'{text}' must be a Reference Path (no $$, *, slices or ..)"),
                    );
                    PathField::Default
                }
                Some(p) => PathField::Path(p),
                None => PathField::Default,
            },
            Some(_) => {
                self.error(&location, "must be a JSONPath string or null");
                PathField::Default
            }
        }
    }

    fn template(&mut self, location: &str, value: &Value) -> Template {
        match value {
            Value::Object(object) => {
                let mut members = Vec::new();
                for (key, v) in object {
                    let at = join(location, key);
                    if let Some(stripped) = key.strip_suffix(".$") {
                        let Value::String(text) = v else {
                            self.error(
                                &at,
                                "a key ending in .$ takes a JSONPath or an intrinsic function",
                            );
                            continue;
                        };
                        if let Some(t) = self.dynamic(&at, text) {
                            members.push((stripped.to_owned(), t));
                        }
                    } else {
                        members.push((key.clone(), self.template(&at, v)));
                    }
                }
                Template::Object(members)
            }
            Value::Array(items) => Template::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.template(&format!("{location}[{i}]"), v))
                    .collect(),
            ),
            other => Template::Literal(other.clone()),
        }
    }

    fn dynamic(&mut self, location: &str, text: &str) -> Option<Template> {
        if intrinsic::is_call(text) {
            match Call::parse(text) {
                Ok(call) => {
                    self.uses_context |= call.paths().iter().any(|p| p.context);
                    Some(Template::Call(call))
                }
                Err(e) => {
                    self.error(location, e.to_string());
                    None
                }
            }
        } else {
            self.path(location, text).map(Template::Path)
        }
    }

    fn opt_template(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        key: &str,
    ) -> Option<Template> {
        let value = object.get(key)?;
        let location = join(at, key);
        if !value.is_object() {
            self.error(&location, "must be a JSON object");
            return None;
        }
        Some(self.template(&location, value))
    }

    fn machine(&mut self, object: &Map<String, Value>, at: &str) -> Option<Machine> {
        let start_at = self.string(object, at, "StartAt");
        if start_at.is_none() && !object.contains_key("StartAt") {
            self.error(&join(at, "StartAt"), "is required");
        }
        let states_at = join(at, "States");
        let mut states = Vec::new();
        let mut broken = Vec::new();
        match object.get("States") {
            Some(Value::Object(members)) if !members.is_empty() => {
                for (name, value) in members {
                    match self.state(name, value, &join(&states_at, name)) {
                        Some(state) => states.push(state),
                        None => broken.push(name.clone()),
                    }
                }
            }
            Some(_) => self.error(&states_at, "must be a non-empty object of states"),
            None => self.error(&states_at, "is required"),
        }
        let index = states
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Some(Machine {
            start_at: start_at?,
            states,
            location: at.to_owned(),
            index,
            broken,
        })
    }

    fn state(&mut self, name: &str, value: &Value, at: &str) -> Option<State> {
        let Some(object) = value.as_object() else {
            self.error(at, "a state is a JSON object");
            return None;
        };
        if name.is_empty() || name.chars().count() > 80 {
            self.error(at, "state names have 1 to 80 characters");
        }
        let Some(type_name) = self.string(object, at, "Type") else {
            if !object.contains_key("Type") {
                self.error(&join(at, "Type"), "is required");
            }
            return None;
        };
        let Some(state_type) = StateType::from_name(&type_name) else {
            self.error(
                &join(at, "Type"),
                format!("unknown state type '{type_name}'"),
            );
            return None;
        };
        let common: &[&str] = &["Type", "Comment"];
        let (fields, flow): (&[&str], bool) = match state_type {
            StateType::Pass => (
                &[
                    "InputPath",
                    "OutputPath",
                    "Parameters",
                    "ResultPath",
                    "Result",
                    "Next",
                    "End",
                ],
                true,
            ),
            StateType::Task => (
                &[
                    "InputPath",
                    "OutputPath",
                    "Parameters",
                    "ResultSelector",
                    "ResultPath",
                    "Resource",
                    "TimeoutSeconds",
                    "TimeoutSecondsPath",
                    "HeartbeatSeconds",
                    "HeartbeatSecondsPath",
                    "Retry",
                    "Catch",
                    "Next",
                    "End",
                    "Credentials",
                ],
                true,
            ),
            StateType::Choice => (&["InputPath", "OutputPath", "Choices", "Default"], false),
            StateType::Wait => (
                &[
                    "InputPath",
                    "OutputPath",
                    "Seconds",
                    "Timestamp",
                    "SecondsPath",
                    "TimestampPath",
                    "Next",
                    "End",
                ],
                true,
            ),
            StateType::Succeed => (&["InputPath", "OutputPath"], false),
            StateType::Fail => (&["Error", "Cause", "ErrorPath", "CausePath"], false),
            StateType::Parallel => (
                &[
                    "InputPath",
                    "OutputPath",
                    "Parameters",
                    "ResultSelector",
                    "ResultPath",
                    "Branches",
                    "Retry",
                    "Catch",
                    "Next",
                    "End",
                ],
                true,
            ),
            StateType::Map => (
                &[
                    "InputPath",
                    "OutputPath",
                    "Parameters",
                    "ItemSelector",
                    "ResultSelector",
                    "ResultPath",
                    "ItemsPath",
                    "ItemProcessor",
                    "Iterator",
                    "MaxConcurrency",
                    "MaxConcurrencyPath",
                    "ToleratedFailureCount",
                    "ToleratedFailurePercentage",
                    "Retry",
                    "Catch",
                    "Next",
                    "End",
                    "Label",
                ],
                true,
            ),
        };
        for key in object.keys() {
            if common.contains(&key.as_str()) || fields.contains(&key.as_str()) {
                continue;
            }
            let message = match key.as_str() {
                "Retry" | "Catch" => format!(
                    "a {type_name} state cannot have {key}: only Task, Parallel and Map can"
                ),
                "Next" | "End" => format!("a {type_name} state cannot have {key}"),
                "ItemReader" | "ResultWriter" | "ItemBatcher" => {
                    format!("{key} belongs to a distributed Map, which nimbus does not run")
                }
                "Arguments" | "Output" | "Assign" | "QueryLanguage" => {
                    format!("{key} belongs to JSONata or variables, which nimbus does not run yet")
                }
                _ => format!("the field '{key}' is not supported in a {type_name} state"),
            };
            self.error(&join(at, key), message);
        }
        let transition = if flow {
            match (object.get("Next"), object.get("End")) {
                (Some(Value::String(next)), None) => Transition::Next(next.clone()),
                (None, Some(Value::Bool(true))) => Transition::End,
                (Some(_), Some(_)) => {
                    self.error(at, "has both Next and End");
                    Transition::End
                }
                (Some(_), None) => {
                    self.error(&join(at, "Next"), "must be a state name");
                    Transition::End
                }
                (None, Some(_)) => {
                    self.error(&join(at, "End"), "must be true, or replaced by Next");
                    Transition::End
                }
                (None, None) => {
                    self.error(at, "needs Next or End: true");
                    Transition::End
                }
            }
        } else {
            Transition::None
        };
        let parameters_key = if state_type == StateType::Map && object.contains_key("ItemSelector")
        {
            if object.contains_key("Parameters") {
                self.error(
                    at,
                    "has both ItemSelector and Parameters (Parameters is the old name)",
                );
            }
            "ItemSelector"
        } else {
            "Parameters"
        };
        let io = Io {
            input_path: self.path_field(object, at, "InputPath", false),
            output_path: self.path_field(object, at, "OutputPath", false),
            parameters: self.opt_template(object, at, parameters_key),
            result_selector: self.opt_template(object, at, "ResultSelector"),
            result_path: self.path_field(object, at, "ResultPath", true),
        };
        let kind = match state_type {
            StateType::Pass => StateKind::Pass {
                result: object.get("Result").cloned(),
            },
            StateType::Succeed => StateKind::Succeed,
            StateType::Task => {
                let resource = self.string(object, at, "Resource").unwrap_or_default();
                if !object.contains_key("Resource") {
                    self.error(&join(at, "Resource"), "is required");
                }
                StateKind::Task(Box::new(Task {
                    resource,
                    timeout: self.seconds(object, at, "TimeoutSeconds"),
                    heartbeat: self.seconds(object, at, "HeartbeatSeconds"),
                    errors: self.errors(object, at),
                }))
            }
            StateType::Choice => self.choice(object, at),
            StateType::Wait => self.wait(object, at)?,
            StateType::Fail => StateKind::Fail {
                error: self.text(object, at, "Error"),
                cause: self.text(object, at, "Cause"),
            },
            StateType::Parallel => {
                let mut branches = Vec::new();
                match object.get("Branches") {
                    Some(Value::Array(items)) if !items.is_empty() => {
                        for (i, item) in items.iter().enumerate() {
                            let location = format!("{at}.Branches[{i}]");
                            match item.as_object() {
                                Some(b) => {
                                    self.known(b, &location, &["StartAt", "States", "Comment"]);
                                    branches.extend(self.machine(b, &location));
                                }
                                None => self.error(&location, "a branch is a JSON object"),
                            }
                        }
                    }
                    _ => self.error(
                        &join(at, "Branches"),
                        "must be a non-empty array of branches",
                    ),
                }
                StateKind::Parallel {
                    branches,
                    errors: self.errors(object, at),
                }
            }
            StateType::Map => self.map(object, at)?,
        };
        Some(State {
            name: name.to_owned(),
            kind,
            transition,
            io,
            location: at.to_owned(),
        })
    }

    fn seconds(&mut self, object: &Map<String, Value>, at: &str, key: &str) -> Option<Seconds> {
        let path_key = format!("{key}Path");
        match (object.get(key), object.get(&path_key)) {
            (Some(_), Some(_)) => {
                self.error(at, format!("has both {key} and {path_key}"));
                None
            }
            (Some(v), None) => match v.as_u64() {
                Some(n) if n > 0 => Some(Seconds::Fixed(n)),
                _ => {
                    self.error(&join(at, key), "must be a positive integer");
                    None
                }
            },
            (None, Some(Value::String(text))) => {
                self.path(&join(at, &path_key), text).map(Seconds::Path)
            }
            (None, Some(_)) => {
                self.error(&join(at, &path_key), "must be a JSONPath string");
                None
            }
            (None, None) => None,
        }
    }

    fn text(&mut self, object: &Map<String, Value>, at: &str, key: &str) -> Option<Text> {
        let path_key = format!("{key}Path");
        match (object.get(key), object.get(&path_key)) {
            (Some(_), Some(_)) => {
                self.error(at, format!("has both {key} and {path_key}"));
                None
            }
            (Some(Value::String(s)), None) => Some(Text::Fixed(s.clone())),
            (Some(_), None) => {
                self.error(&join(at, key), "must be a string");
                None
            }
            (None, Some(Value::String(text))) => {
                let location = join(at, &path_key);
                match self.dynamic(&location, text)? {
                    Template::Path(p) => Some(Text::Path(p)),
                    Template::Call(c) => Some(Text::Call(c)),
                    _ => None,
                }
            }
            (None, Some(_)) => {
                self.error(
                    &join(at, &path_key),
                    "must be a JSONPath or an intrinsic function",
                );
                None
            }
            (None, None) => None,
        }
    }

    fn wait(&mut self, object: &Map<String, Value>, at: &str) -> Option<StateKind> {
        let present: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
            .into_iter()
            .filter(|k| object.contains_key(*k))
            .collect();
        if present.len() != 1 {
            self.error(at, "a Wait state needs exactly one of Seconds, Timestamp, SecondsPath and TimestampPath");
            return None;
        }
        let key = present[0];
        let location = join(at, key);
        let value = &object[key];
        let wait = match (key, value) {
            ("Seconds", v) => match v.as_u64() {
                Some(n) => WaitFor::Seconds(n),
                None => {
                    self.error(&location, "must be a non-negative integer");
                    return None;
                }
            },
            ("Timestamp", Value::String(s)) => match parse_timestamp(s) {
                Some(t) => WaitFor::Timestamp(t),
                None => {
                    self.error(&location, format!("'{s}' is not an RFC 3339 timestamp"));
                    return None;
                }
            },
            ("SecondsPath", Value::String(s)) => WaitFor::SecondsPath(self.path(&location, s)?),
            ("TimestampPath", Value::String(s)) => WaitFor::TimestampPath(self.path(&location, s)?),
            _ => {
                self.error(&location, "must be a string");
                return None;
            }
        };
        Some(StateKind::Wait(wait))
    }

    fn errors(&mut self, object: &Map<String, Value>, at: &str) -> ErrorHandling {
        let mut handling = ErrorHandling::default();
        if let Some(value) = object.get("Retry") {
            let Some(items) = value.as_array() else {
                self.error(&join(at, "Retry"), "must be an array of retriers");
                return handling;
            };
            for (i, item) in items.iter().enumerate() {
                let location = format!("{at}.Retry[{i}]");
                let Some(r) = item.as_object() else {
                    self.error(&location, "a retrier is a JSON object");
                    continue;
                };
                self.known(
                    r,
                    &location,
                    &[
                        "ErrorEquals",
                        "IntervalSeconds",
                        "MaxAttempts",
                        "BackoffRate",
                        "MaxDelaySeconds",
                        "JitterStrategy",
                        "Comment",
                    ],
                );
                let backoff_rate = match r.get("BackoffRate") {
                    None => 2.0,
                    Some(v) => match v.as_f64() {
                        Some(x) if x >= 1.0 => x,
                        _ => {
                            self.error(
                                &join(&location, "BackoffRate"),
                                "must be a number of at least 1.0",
                            );
                            2.0
                        }
                    },
                };
                let interval_seconds = self.uint(r, &location, "IntervalSeconds").unwrap_or(1);
                if interval_seconds == 0 {
                    self.error(
                        &join(&location, "IntervalSeconds"),
                        "must be a positive integer",
                    );
                }
                let max_delay_seconds = self.uint(r, &location, "MaxDelaySeconds");
                if max_delay_seconds == Some(0) {
                    self.error(
                        &join(&location, "MaxDelaySeconds"),
                        "must be a positive integer",
                    );
                }
                let full_jitter = match r.get("JitterStrategy") {
                    None => false,
                    Some(v) if v == "FULL" => true,
                    Some(v) if v == "NONE" => false,
                    Some(_) => {
                        self.error(&join(&location, "JitterStrategy"), "must be FULL or NONE");
                        false
                    }
                };
                handling.retry.push(Retrier {
                    error_equals: self.error_equals(r, &location),
                    interval_seconds,
                    max_attempts: self.uint(r, &location, "MaxAttempts").unwrap_or(3),
                    backoff_rate,
                    max_delay_seconds,
                    full_jitter,
                });
            }
        }
        if let Some(value) = object.get("Catch") {
            let Some(items) = value.as_array() else {
                self.error(&join(at, "Catch"), "must be an array of catchers");
                return handling;
            };
            for (i, item) in items.iter().enumerate() {
                let location = format!("{at}.Catch[{i}]");
                let Some(c) = item.as_object() else {
                    self.error(&location, "a catcher is a JSON object");
                    continue;
                };
                self.known(
                    c,
                    &location,
                    &["ErrorEquals", "Next", "ResultPath", "Comment"],
                );
                let next = self.string(c, &location, "Next");
                if !c.contains_key("Next") {
                    self.error(&join(&location, "Next"), "is required");
                }
                handling.catch.push(Catcher {
                    error_equals: self.error_equals(c, &location),
                    next: next.unwrap_or_default(),
                    result_path: self.path_field(c, &location, "ResultPath", true),
                });
            }
        }
        handling
    }

    fn error_equals(&mut self, object: &Map<String, Value>, at: &str) -> Vec<String> {
        let location = join(at, "ErrorEquals");
        match object.get("ErrorEquals") {
            Some(Value::Array(items)) if !items.is_empty() => {
                let names: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if names.len() != items.len() {
                    self.error(&location, "must be an array of error names");
                }
                names
            }
            _ => {
                self.error(&location, "must be a non-empty array of error names");
                Vec::new()
            }
        }
    }

    fn choice(&mut self, object: &Map<String, Value>, at: &str) -> StateKind {
        let mut choices = Vec::new();
        match object.get("Choices") {
            Some(Value::Array(items)) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let location = format!("{at}.Choices[{i}]");
                    let next = match item.get("Next") {
                        Some(Value::String(next)) => Some(next.clone()),
                        _ => {
                            self.error(
                                &join(&location, "Next"),
                                "a top-level choice rule needs Next",
                            );
                            None
                        }
                    };
                    let rule = self.rule(item, &location, true);
                    if let (Some(rule), Some(next)) = (rule, next) {
                        choices.push((rule, next));
                    }
                }
            }
            _ => self.error(
                &join(at, "Choices"),
                "must be a non-empty array of choice rules",
            ),
        }
        StateKind::Choice {
            choices,
            default: self.string(object, at, "Default"),
        }
    }

    fn rule(&mut self, value: &Value, at: &str, top: bool) -> Option<Rule> {
        let Some(object) = value.as_object() else {
            self.error(at, "a choice rule is a JSON object");
            return None;
        };
        if !top && object.contains_key("Next") {
            self.error(&join(at, "Next"), "only top-level choice rules have Next");
        }
        let mut operators = object
            .keys()
            .filter(|k| !matches!(k.as_str(), "Next" | "Comment" | "Variable"))
            .collect::<Vec<_>>();
        if operators.len() != 1 {
            self.error(
                at,
                "a choice rule has exactly one operator (And, Or, Not or a comparison)",
            );
            return None;
        }
        let key = operators.remove(0).as_str();
        let location = join(at, key);
        let operand = &object[key];
        let nested = |cx: &mut Cx, items: &Value| -> Option<Vec<Rule>> {
            let Some(items) = items.as_array().filter(|a| !a.is_empty()) else {
                cx.error(&location, "must be a non-empty array of rules");
                return None;
            };
            let rules: Vec<Rule> = items
                .iter()
                .enumerate()
                .filter_map(|(i, r)| cx.rule(r, &format!("{location}[{i}]"), false))
                .collect();
            (rules.len() == items.len()).then_some(rules)
        };
        let combinator = matches!(key, "And" | "Or" | "Not");
        if combinator && object.contains_key("Variable") {
            self.error(
                &join(at, "Variable"),
                format!("{key} rules have no Variable"),
            );
        }
        match key {
            "And" => return nested(self, operand).map(Rule::And),
            "Or" => return nested(self, operand).map(Rule::Or),
            "Not" => {
                return self
                    .rule(operand, &location, false)
                    .map(|r| Rule::Not(Box::new(r)));
            }
            _ => {}
        }
        let (op, is_path) = match OPS.iter().find(|o| o.0 == key) {
            Some(&(_, op)) => (op, false),
            None => match key
                .strip_suffix("Path")
                .and_then(|base| OPS.iter().find(|o| o.0 == base && !base.starts_with("Is")))
            {
                Some(&(_, op)) => (op, true),
                None => {
                    self.error(&location, format!("unknown choice operator '{key}'"));
                    return None;
                }
            },
        };
        let variable = match object.get("Variable") {
            Some(Value::String(text)) => self.path(&join(at, "Variable"), text)?,
            _ => {
                self.error(
                    &join(at, "Variable"),
                    "a comparison needs a Variable JSONPath",
                );
                return None;
            }
        };
        let operand = if is_path {
            match operand {
                Value::String(text) => Operand::Path(self.path(&location, text)?),
                _ => {
                    self.error(&location, "must be a JSONPath string");
                    return None;
                }
            }
        } else {
            let ok = match op {
                Op::StringEquals
                | Op::StringLessThan
                | Op::StringGreaterThan
                | Op::StringLessThanEquals
                | Op::StringGreaterThanEquals
                | Op::StringMatches => operand.is_string(),
                Op::NumericEquals
                | Op::NumericLessThan
                | Op::NumericGreaterThan
                | Op::NumericLessThanEquals
                | Op::NumericGreaterThanEquals => operand.is_number(),
                Op::TimestampEquals
                | Op::TimestampLessThan
                | Op::TimestampGreaterThan
                | Op::TimestampLessThanEquals
                | Op::TimestampGreaterThanEquals => {
                    operand.as_str().and_then(parse_timestamp).is_some()
                }
                _ => operand.is_boolean(),
            };
            if !ok {
                let want = match op.name() {
                    n if n.starts_with("String") => "a string",
                    n if n.starts_with("Numeric") => "a number",
                    n if n.starts_with("Timestamp") => "an RFC 3339 timestamp",
                    _ => "a boolean",
                };
                self.error(&location, format!("{key} takes {want}"));
                return None;
            }
            Operand::Value(operand.clone())
        };
        Some(Rule::Compare {
            variable,
            op,
            operand,
        })
    }

    fn map(&mut self, object: &Map<String, Value>, at: &str) -> Option<StateKind> {
        let (key, processor) = match (object.get("ItemProcessor"), object.get("Iterator")) {
            (Some(_), Some(_)) => {
                self.error(
                    at,
                    "has both ItemProcessor and Iterator (Iterator is the old name)",
                );
                return None;
            }
            (Some(p), None) => ("ItemProcessor", p),
            (None, Some(p)) => ("Iterator", p),
            (None, None) => {
                self.error(at, "a Map state needs an ItemProcessor");
                return None;
            }
        };
        let location = join(at, key);
        let Some(processor) = processor.as_object() else {
            self.error(&location, "must be a JSON object");
            return None;
        };
        self.known(
            processor,
            &location,
            &["StartAt", "States", "Comment", "ProcessorConfig"],
        );
        if let Some(config) = processor.get("ProcessorConfig") {
            let mode = config
                .get("Mode")
                .and_then(Value::as_str)
                .unwrap_or("INLINE");
            if mode != "INLINE" {
                self.error(
                    &join(&location, "ProcessorConfig.Mode"),
                    format!("{mode} Map is not supported; only INLINE"),
                );
            }
        }
        let processor = self.machine(processor, &location)?;
        let max_concurrency = match (
            object.get("MaxConcurrency"),
            object.get("MaxConcurrencyPath"),
        ) {
            (Some(_), Some(_)) => {
                self.error(at, "has both MaxConcurrency and MaxConcurrencyPath");
                Seconds::Fixed(0)
            }
            (None, Some(Value::String(text))) => self
                .path(&join(at, "MaxConcurrencyPath"), text)
                .map_or(Seconds::Fixed(0), Seconds::Path),
            (None, Some(_)) => {
                self.error(&join(at, "MaxConcurrencyPath"), "must be a JSONPath string");
                Seconds::Fixed(0)
            }
            _ => Seconds::Fixed(self.uint(object, at, "MaxConcurrency").unwrap_or(0)),
        };
        let tolerated_failure_percentage = match object.get("ToleratedFailurePercentage") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(p) if (0.0..=100.0).contains(&p) => Some(p),
                _ => {
                    self.error(
                        &join(at, "ToleratedFailurePercentage"),
                        "must be a number from 0 to 100",
                    );
                    None
                }
            },
        };
        Some(StateKind::Map(Box::new(MapState {
            items_path: self.path_field(object, at, "ItemsPath", false),
            processor,
            max_concurrency,
            tolerated_failure_count: self.uint(object, at, "ToleratedFailureCount"),
            tolerated_failure_percentage,
            errors: self.errors(object, at),
        })))
    }
}

/// An RFC 3339 timestamp (`2016-03-14T01:59:00Z`, with optional fraction and offset) as
/// microseconds since the epoch; `None` when it is not one. ASL requires an uppercase `T`.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut idx = 19;
    let mut micros = 0i64;
    if b.get(idx) == Some(&b'.') {
        idx += 1;
        let start = idx;
        while b.get(idx).is_some_and(u8::is_ascii_digit) {
            idx += 1;
        }
        if idx == start {
            return None;
        }
        let mut fraction = String::from_utf8_lossy(&b[start..idx]).into_owned();
        fraction.truncate(6);
        while fraction.len() < 6 {
            fraction.push('0');
        }
        micros = fraction.parse().ok()?;
    }
    let offset_seconds = match b.get(idx..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = digits(idx + 1..idx + 3)?;
            let minutes = digits(idx + 4..idx + 6)?;
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return None,
    };
    let days =
        crate::time::days_from_civil(year, u8::try_from(month).ok()?, u8::try_from(day).ok()?);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1_000_000 + micros)
}
