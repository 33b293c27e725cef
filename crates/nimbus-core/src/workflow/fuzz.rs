//! Fuzzing Step Functions definitions (issue 14): a mutated definition (what CreateStateMachine
//! and the manifest's `stepFunctions` hand in) is checked, and one that passes runs to its end
//! with every task answered and every timer fired; each string in it is read as a Path and as
//! an intrinsic call and evaluated. All of it answers or refuses, never panics or hangs.

use serde_json::{Value, json};

use super::intrinsic::{Call, is_call};
use super::path::Path;
use super::random::Rng;
use super::{Command, Event, ExecutionInfo, ExecutionState, advance, check};

/// Tokens of the States Language and of its paths and intrinsic functions.
const DICTIONARY: &[&[u8]] = &[
    br#""Type":"Map""#,
    br#""Type":"Parallel""#,
    br#""Type":"Wait""#,
    br#""Type":"Choice""#,
    br#""Next":"Pick""#,
    br#""End":true"#,
    br#""ResultPath":null"#,
    br#""MaxAttempts":2147483647"#,
    br#""BackoffRate":1e308"#,
    br#""Seconds":-1"#,
    br#""Timestamp":"2016-03-14T01:59:00Z""#,
    br#""ItemsPath":"$.items""#,
    br#""Variable":"$..n""#,
    br#""ErrorEquals":["States.ALL"]"#,
    b"$.",
    b"$$.",
    b"[*]",
    b"[-1]",
    b"[0:2:-1]",
    b"[?(@.a)]",
    b"..",
    b"States.Format('{}{}', ",
    b"States.ArrayRange(0, 1000000000, 1)",
    b"States.StringToJson(",
    b"States.ArrayPartition($.items, 0)",
    b"States.MathRandom(",
    b"\\'",
    b")",
    b"{}",
    b"[]",
];

/// The most steps one execution of a fuzzed definition runs before the check moves on.
const MAX_STEPS: usize = 200;

#[test]
fn fuzz_workflow_definitions_check_and_run_or_are_refused() {
    let input = json!({
        "n": 3,
        "s": "abc",
        "items": [1, "two", { "three": 3 }, [4]],
        "job": { "id": 7 },
        "doc": "{\"a\":[1,2]}",
        "at": "2026-01-01T00:00:00Z",
    });
    let context = json!({ "Execution": { "Id": "arn:x", "Input": input.clone() } });
    // The seeds are valid definitions, so mutations start from ones that run.
    for seed in nimbus_fuzz::corpus("workflow-definition") {
        let value: Value = serde_json::from_slice(&seed).expect("a seed is JSON");
        if let Err(diagnostics) = check(&value) {
            panic!("a seed is refused: {diagnostics:?}");
        }
    }
    nimbus_fuzz::fuzz("workflow-definition", DICTIONARY, |bytes| {
        let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
            return;
        };
        for_each_string(&value, &mut |text| {
            if let Ok(path) = Path::parse(text) {
                let _ = path.select(&input, &context);
            }
            if is_call(text)
                && let Ok(call) = Call::parse(text)
            {
                let _ = call.eval(&input, &context, &mut Rng::new(1, 1));
            }
        });
        if let Ok(definition) = check(&value) {
            run(&definition, input.clone());
        }
    });
}

/// Runs an execution until it ends or [`MAX_STEPS`] events: every task succeeds with `{}`
/// (a task token's too) and every timer fires when due.
fn run(definition: &super::Definition, input: Value) {
    let info = ExecutionInfo {
        execution_arn: "arn:aws:states:us-east-1:000000000000:execution:m:e".to_owned(),
        name: "e".to_owned(),
        state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:m".to_owned(),
        state_machine_name: "m".to_owned(),
        role_arn: "arn:aws:iam::000000000000:role/m".to_owned(),
        seed: 7,
    };
    let mut state = ExecutionState::default();
    let mut now = 1_700_000_000_000_000_i64;
    let mut pending = vec![Event::Start { info, input }];
    let mut timers = Vec::new();
    for _ in 0..MAX_STEPS {
        let event = match pending.pop() {
            Some(event) => event,
            None => {
                // Nothing to answer: the earliest timer fires.
                timers.sort_by_key(|(_, due)| *due);
                if timers.is_empty() {
                    return;
                }
                let (timer, due) = timers.remove(0);
                now = now.max(due);
                Event::TimerFired { timer }
            }
        };
        let (after, _history, commands) = advance(definition, &state, now, event);
        state = after;
        for command in commands {
            match command {
                Command::Invoke { task, .. } => pending.push(Event::TaskSucceeded {
                    task,
                    output: json!({}),
                }),
                Command::StartTimer { timer, due_us } => timers.push((timer, due_us)),
                Command::Succeed { .. } | Command::Fail { .. } => return,
                _ => {}
            }
        }
    }
}

fn for_each_string(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => f(text),
        Value::Array(items) => items.iter().for_each(|item| for_each_string(item, f)),
        Value::Object(members) => {
            for (key, member) in members {
                f(key);
                for_each_string(member, f);
            }
        }
        _ => {}
    }
}
