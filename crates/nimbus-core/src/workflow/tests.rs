//! Data-driven tests of the workflow engine: definitions run against scripted task results.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use expect_test::{Expect, expect};
use serde_json::{Value, json};

use super::*;

/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000_000;

fn info() -> ExecutionInfo {
    ExecutionInfo {
        execution_arn: "arn:aws:states:us-east-1:123456789012:execution:demo:run-1".to_owned(),
        name: "run-1".to_owned(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:demo".to_owned(),
        state_machine_name: "demo".to_owned(),
        role_arn: "arn:aws:iam::123456789012:role/demo".to_owned(),
        seed: 42,
    }
}

/// Runs `definition` on `input`. `results` script the tasks, per state name in order: JSON
/// for a result, `!Error:Cause` for a failure, `...` to never answer (a hang); a task without
/// a script returns its parameters. Invocations are answered first in, first out; timers
/// fire, earliest first, when no invocation is outstanding. Prints each history event (with
/// the seconds since the start when they move) and checks that folding the history gives the
/// state `advance` returned.
fn run(definition: Value, input: Value, results: &[(&str, &str)]) -> String {
    let definition = match check(&definition) {
        Ok(d) => d,
        Err(diagnostics) => {
            return diagnostics.iter().map(|d| format!("{d}\n")).collect();
        }
    };
    let mut scripts: HashMap<&str, VecDeque<&str>> = HashMap::new();
    for (state, reply) in results {
        scripts.entry(state).or_default().push_back(reply);
    }
    let mut state = ExecutionState::default();
    let mut history: Vec<HistoryEvent> = Vec::new();
    let mut invokes: VecDeque<(TaskId, Value)> = VecDeque::new();
    let mut timers: Vec<(TimerId, i64)> = Vec::new();
    let mut out = String::new();
    let mut now = T0;
    let mut shown_time = T0;
    let mut next = Some(Event::Start {
        info: info(),
        input,
    });
    let mut n_steps = 0;
    while let Some(event) = next.take() {
        n_steps += 1;
        if n_steps > 10_000 {
            out.push_str("(stopped after 10,000 steps)\n");
            break;
        }
        let (after, events, commands) = advance(&definition, &state, now, event);
        for e in &events {
            let text = e.to_json().to_string();
            let back = serde_json::from_str(&text)
                .map_err(|e| e.to_string())
                .and_then(|v| HistoryEvent::from_json(&v).map_err(|e| e.to_string()));
            assert_eq!(back.as_ref(), Ok(e), "{text} reads back");
        }
        history.extend(events.iter().cloned());
        let folded = ExecutionState::fold(&definition, &history);
        assert_eq!(
            folded, after,
            "folding the history gives the state advance returned"
        );
        state = after;
        for e in &events {
            if e.timestamp_us != shown_time {
                shown_time = e.timestamp_us;
                let _ = writeln!(out, "+{}s", (shown_time - T0) as f64 / 1e6);
            }
            let indent = "  ".repeat(e.scope.len());
            let mut line = describe(e);
            if line.len() > 200 {
                let cut = (0..=200)
                    .rev()
                    .find(|i| line.is_char_boundary(*i))
                    .unwrap_or(0);
                line.truncate(cut);
                line.push_str("...");
            }
            let _ = writeln!(out, "{indent}{line}");
        }
        let mut finished = false;
        for command in commands {
            match command {
                Command::Invoke {
                    task, parameters, ..
                } => invokes.push_back((task, parameters)),
                Command::StartTimer { timer, due_us } => {
                    timers.retain(|(t, _)| *t != timer);
                    timers.push((timer, due_us));
                }
                Command::Cancel { task } => invokes.retain(|(t, _)| *t != task),
                Command::Succeed { .. } | Command::Fail { .. } => finished = true,
            }
        }
        if finished {
            break;
        }
        while let Some((task, parameters)) = invokes.pop_front() {
            let reply = scripts
                .get_mut(task.state.as_str())
                .and_then(VecDeque::pop_front);
            next = Some(match reply {
                Some("...") => continue,
                Some(text) if text.starts_with('!') => {
                    let (error, cause) = text[1..].split_once(':').unwrap_or((&text[1..], ""));
                    Event::TaskFailed {
                        task,
                        error: error.to_owned(),
                        cause: cause.to_owned(),
                    }
                }
                Some(text) => Event::TaskSucceeded {
                    task,
                    output: serde_json::from_str(text).expect("scripted results are JSON"),
                },
                None => Event::TaskSucceeded {
                    task,
                    output: parameters,
                },
            });
            break;
        }
        if next.is_none() && !timers.is_empty() {
            timers.sort_by_key(|(_, due)| *due);
            let (timer, due) = timers.remove(0);
            now = now.max(due);
            next = Some(Event::TimerFired { timer });
        }
    }
    out
}

fn describe(e: &HistoryEvent) -> String {
    let t = e.event_type();
    match &e.details {
        EventDetails::StateEntered { name, input, .. } => format!("{t} {name} {input}"),
        EventDetails::StateExited { name, output, .. } => format!("{t} {name} {output}"),
        EventDetails::TaskScheduled { parameters, .. } => format!("{t} {parameters}"),
        EventDetails::TaskSucceeded { output, .. } => format!("{t} {output}"),
        EventDetails::TaskFailed {
            error, cause, plan, ..
        }
        | EventDetails::TaskTimedOut {
            error, cause, plan, ..
        }
        | EventDetails::ParallelStateFailed { error, cause, plan }
        | EventDetails::MapStateFailed { error, cause, plan } => {
            let plan = match plan {
                engine::Plan::Retry { due_us, .. } => {
                    format!("retry at +{}s", (*due_us - T0) as f64 / 1e6)
                }
                engine::Plan::Catch { catcher } => format!("catch {catcher}"),
                engine::Plan::Fail => "fail".to_owned(),
            };
            format!("{t} {error}: {cause} ({plan})")
        }
        EventDetails::ExecutionSucceeded { output } => format!("{t} {output}"),
        EventDetails::ExecutionFailed { error, cause }
        | EventDetails::ExecutionTimedOut { error, cause }
        | EventDetails::ExecutionAborted { error, cause } => format!("{t} {error}: {cause}"),
        EventDetails::MapIterationStarted { index, .. }
        | EventDetails::MapIterationAborted { index, .. }
        | EventDetails::MapIterationSucceeded { index, .. } => format!("{t} {index}"),
        EventDetails::MapIterationFailed { index, error, .. } => format!("{t} {index} {error}"),
        _ => t,
    }
}

fn check_run(definition: Value, input: Value, results: &[(&str, &str)], expect: Expect) {
    expect.assert_eq(&run(definition, input, results));
}

/// The output (or error) only, for one-line cases.
fn outcome(definition: Value, input: Value) -> String {
    let text = run(definition, input, &[]);
    text.lines().last().unwrap_or_default().trim().to_owned()
}

fn pass(fields: Value) -> Value {
    let mut state = json!({"Type": "Pass", "End": true});
    if let (Some(s), Some(f)) = (state.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"StartAt": "P", "States": {"P": state}})
}

#[test]
fn pass_chain_runs_to_the_end() {
    check_run(
        json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.a", "Next": "B"},
                "B": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a.x, $.n)", "fixed": [1, {"k.$": "$.n"}]}, "Next": "C"},
                "C": {"Type": "Succeed", "OutputPath": "$.sum"}
            }
        }),
        json!({"n": 41}),
        &[],
        expect![[r#"
            ExecutionStarted
            PassStateEntered A {"n":41}
            PassStateExited A {"a":{"x":1},"n":41}
            PassStateEntered B {"a":{"x":1},"n":41}
            PassStateExited B {"fixed":[1,{"k":41}],"sum":42}
            SucceedStateEntered C {"fixed":[1,{"k":41}],"sum":42}
            SucceedStateExited C 42
            ExecutionSucceeded 42
        "#]],
    );
}

/// Each expression's result as `expr => value`, evaluated as a Pass state's `Parameters`.
fn intrinsics(input: Value, exprs: &[&str]) -> String {
    let mut out = String::new();
    for expr in exprs {
        let definition = pass(json!({"Parameters": {"r.$": expr}, "OutputPath": "$.r"}));
        let res = outcome(definition, input.clone());
        let res = res.strip_prefix("ExecutionSucceeded ").unwrap_or(&res);
        let _ = writeln!(out, "{expr} => {res}");
    }
    out
}

#[test]
fn intrinsic_functions() {
    let input = json!({
        "name": "World", "n": 3, "list": [1, 2, 2, "a", {"k": 1}, {"k": 1}],
        "obj": {"a": 1, "b": {"c": 2}}, "text": "{\"x\": [1, 2]}", "csv": "a,b,,c;d"
    });
    expect![[r#"
        States.Format('Hello, {}!', $.name) => "Hello, World!"
        States.Format('{} + {} = {}', 1, $.n, true) => "1 + 3 = true"
        States.Format('\{literal\} {}', 'x') => "{literal} x"
        States.Format('It\'s {}', null) => "It's null"
        States.Format('{} {}', 'one') => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). States.Format: more {} than arguments
        States.StringToJson($.text) => {"x":[1,2]}
        States.StringToJson('not json') => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). States.StringToJson: not JSON: expected ident at line 1 column 2
        States.JsonToString($.obj) => "{\"a\":1,\"b\":{\"c\":2}}"
        States.Array(1, 'two', $.n, States.Array()) => [1,"two",3,[]]
        States.ArrayPartition(States.ArrayRange(1, 5, 1), 2) => [[1,2],[3,4],[5]]
        States.ArrayContains($.list, 'a') => true
        States.ArrayContains($.list, 9) => false
        States.ArrayRange(10, 0, -4) => [10,6,2]
        States.ArrayRange(0, 5000, 1) => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). States.ArrayRange: the range has more than 1000 elements
        States.ArrayGetItem($.list, 3) => "a"
        States.ArrayGetItem($.list, 30) => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). States.ArrayGetItem: index 30 is out of bounds
        States.ArrayLength($.list) => 6
        States.ArrayUnique($.list) => [1,2,"a",{"k":1}]
        States.Base64Encode('Data to encode') => "RGF0YSB0byBlbmNvZGU="
        States.Base64Decode('RGF0YSB0byBlbmNvZGU=') => "Data to encode"
        States.Base64Decode('%%%') => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). States.Base64Decode: not base64: Invalid symbol 37, offset 0.
        States.Hash('input data', 'MD5') => "812f45842bc6d66ee14572ce20db8e86"
        States.Hash('input data', 'SHA-1') => "aaff4a450a104cd177d28d18d74485e8cae074b7"
        States.Hash('input data', 'SHA-256') => "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"
        States.Hash('input data', 'SHA-384') => "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562"
        States.Hash('input data', 'SHA-512') => "6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4"
        States.Hash('x', 'SHA-3') => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). States.Hash: unknown algorithm SHA-3 (MD5, SHA-1, SHA-256, SHA-384 or SHA-512)
        States.JsonMerge($.obj, States.StringToJson('{"b": 5, "d": 6}'), false) => {"a":1,"b":5,"d":6}
        States.JsonMerge($.obj, $.obj, true) => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). States.JsonMerge: only a shallow merge (false) is supported, as in ASL
        States.MathRandom(1, 1000, 7) => 643
        States.MathAdd($.n, -10) => -7
        States.MathAdd($.n, 'x') => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). States.MathAdd: argument 2 must be an integer
        States.StringSplit($.csv, ',;') => ["a","b","c","d"]
        States.UUID() => "fa797f03-f3c8-4f80-9c5a-84b9a60bd82c"
        States.ArrayLength($.missing) => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). The JsonPath argument for the field '$.missing' could not be found in the input
    "#]]
    .assert_eq(&intrinsics(
        input,
        &[
            "States.Format('Hello, {}!', $.name)",
            "States.Format('{} + {} = {}', 1, $.n, true)",
            "States.Format('\\{literal\\} {}', 'x')",
            "States.Format('It\\'s {}', null)",
            "States.Format('{} {}', 'one')",
            "States.StringToJson($.text)",
            "States.StringToJson('not json')",
            "States.JsonToString($.obj)",
            "States.Array(1, 'two', $.n, States.Array())",
            "States.ArrayPartition(States.ArrayRange(1, 5, 1), 2)",
            "States.ArrayContains($.list, 'a')",
            "States.ArrayContains($.list, 9)",
            "States.ArrayRange(10, 0, -4)",
            "States.ArrayRange(0, 5000, 1)",
            "States.ArrayGetItem($.list, 3)",
            "States.ArrayGetItem($.list, 30)",
            "States.ArrayLength($.list)",
            "States.ArrayUnique($.list)",
            "States.Base64Encode('Data to encode')",
            "States.Base64Decode('RGF0YSB0byBlbmNvZGU=')",
            "States.Base64Decode('%%%')",
            "States.Hash('input data', 'MD5')",
            "States.Hash('input data', 'SHA-1')",
            "States.Hash('input data', 'SHA-256')",
            "States.Hash('input data', 'SHA-384')",
            "States.Hash('input data', 'SHA-512')",
            "States.Hash('x', 'SHA-3')",
            "States.JsonMerge($.obj, States.StringToJson('{\"b\": 5, \"d\": 6}'), false)",
            "States.JsonMerge($.obj, $.obj, true)",
            "States.MathRandom(1, 1000, 7)",
            "States.MathAdd($.n, -10)",
            "States.MathAdd($.n, 'x')",
            "States.StringSplit($.csv, ',;')",
            "States.UUID()",
            "States.ArrayLength($.missing)",
        ],
    ));
}

#[test]
fn intrinsic_and_path_syntax_errors_are_reported_where_they_are() {
    let definition = json!({
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Pass",
                "Parameters": {
                    "a.$": "States.Nope(1)",
                    "b.$": "States.Format('x'",
                    "c.$": "States.MathAdd(1)",
                    "d.$": "$.a[?(@.x)]",
                    "e.$": "a.b",
                    "f.$": 3,
                    "nested": {"g.$": "$..[", "ok.$": "$['a b'][0]"}
                },
                "ResultPath": "$.list[*]",
                "End": true
            }
        }
    });
    expect![[r#"
        States.P.Parameters.a.$: unknown intrinsic function States.Nope
        States.P.Parameters.b.$: expected ',' or ')' at offset 17
        States.P.Parameters.c.$: States.MathAdd takes 2 arguments, not 1
        States.P.Parameters.d.$: invalid JSONPath '$.a[?(@.x)]': filters and script expressions are not supported
        States.P.Parameters.e.$: invalid JSONPath 'a.b': a path starts with $
        States.P.Parameters.f.$: a key ending in .$ takes a JSONPath or an intrinsic function
        States.P.Parameters.nested.g.$: invalid JSONPath '$..[': '..' must be followed by a name
        States.P.ResultPath: '$.list[*]' must be a Reference Path (no $$, *, slices or ..)
    "#]]
    .assert_eq(&run(definition, json!({}), &[]));
}

#[test]
fn json_paths_select_like_asl() {
    let input = json!({
        "a": {"b": [{"c": 1}, {"c": 2}, {"d": 3}]},
        "weird key": {"x.y": true},
        "list": [10, 20, 30, 40]
    });
    let mut out = String::new();
    for path in [
        "$",
        "$.a.b[0].c",
        "$['weird key']['x.y']",
        "$.a.b[*].c",
        "$.list[-1]",
        "$.list[1:3]",
        "$.list[:2]",
        "$..c",
        "$.a.*",
        "$.nope",
        "$$.Execution.Name",
        "$$.State.Name",
        "$$.StateMachine.Id",
        "$$.Execution.StartTime",
    ] {
        let definition = pass(json!({"Parameters": {"r.$": path}, "OutputPath": "$.r"}));
        let res = outcome(definition, input.clone());
        let _ = writeln!(
            out,
            "{path} => {}",
            res.strip_prefix("ExecutionSucceeded ").unwrap_or(&res)
        );
    }
    expect![[r#"
        $ => {"a":{"b":[{"c":1},{"c":2},{"d":3}]},"list":[10,20,30,40],"weird key":{"x.y":true}}
        $.a.b[0].c => 1
        $['weird key']['x.y'] => true
        $.a.b[*].c => [1,2]
        $.list[-1] => 40
        $.list[1:3] => [20,30]
        $.list[:2] => [10,20]
        $..c => [1,2]
        $.a.* => [[{"c":1},{"c":2},{"d":3}]]
        $.nope => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). Invalid path '$.nope' : No results for path: $.nope (in Parameters)
        $$.Execution.Name => "run-1"
        $$.State.Name => "P"
        $$.StateMachine.Id => "arn:aws:states:us-east-1:123456789012:stateMachine:demo"
        $$.Execution.StartTime => "2023-11-14T22:13:20.000Z"
    "#]]
    .assert_eq(&out);
}

/// Each rule against `input`: `true`, `false` or the execution's error.
fn choices(input: Value, rules: &[Value]) -> String {
    let mut out = String::new();
    for rule in rules {
        let mut choice = rule.clone();
        if let Some(object) = choice.as_object_mut() {
            object.insert("Next".to_owned(), json!("Yes"));
        }
        let definition = json!({
            "StartAt": "C",
            "States": {
                "C": {"Type": "Choice", "Choices": [choice], "Default": "No"},
                "Yes": {"Type": "Pass", "Result": true, "End": true},
                "No": {"Type": "Pass", "Result": false, "End": true}
            }
        });
        let res = outcome(definition, input.clone());
        let _ = writeln!(
            out,
            "{rule} => {}",
            res.strip_prefix("ExecutionSucceeded ").unwrap_or(&res)
        );
    }
    out
}

#[test]
fn choice_operators() {
    let input = json!({
        "s": "order-17", "n": 10, "f": 2.5, "b": true, "nul": null,
        "t": "2024-03-01T12:00:00Z", "t2": "2024-03-01T13:00:00+01:00", "other": "order-17", "m": 10.0
    });
    expect![[r#"
        {"StringEquals":"order-17","Variable":"$.s"} => true
        {"StringEqualsPath":"$.other","Variable":"$.s"} => true
        {"StringLessThan":"order-2","Variable":"$.s"} => true
        {"StringGreaterThan":"order-2","Variable":"$.s"} => false
        {"StringLessThanEquals":"order-17","Variable":"$.s"} => true
        {"StringGreaterThanEqualsPath":"$.other","Variable":"$.s"} => true
        {"StringMatches":"order-*","Variable":"$.s"} => true
        {"StringMatches":"*-1?","Variable":"$.s"} => false
        {"StringMatches":"ord*1*7","Variable":"$.s"} => true
        {"StringEquals":"10","Variable":"$.n"} => false
        {"NumericEquals":10,"Variable":"$.n"} => true
        {"NumericEqualsPath":"$.m","Variable":"$.n"} => true
        {"NumericLessThan":3,"Variable":"$.f"} => true
        {"NumericGreaterThan":3,"Variable":"$.f"} => false
        {"NumericLessThanEquals":10,"Variable":"$.n"} => true
        {"NumericGreaterThanEqualsPath":"$.f","Variable":"$.n"} => true
        {"NumericLessThanPath":"$.f","Variable":"$.n"} => false
        {"BooleanEquals":true,"Variable":"$.b"} => true
        {"BooleanEqualsPath":"$.nul","Variable":"$.b"} => false
        {"TimestampEquals":"2024-03-01T12:00:00.000Z","Variable":"$.t"} => true
        {"TimestampEqualsPath":"$.t2","Variable":"$.t"} => true
        {"TimestampLessThan":"2024-03-01T12:00:01Z","Variable":"$.t"} => true
        {"TimestampGreaterThan":"2024-03-01T12:00:01Z","Variable":"$.t"} => false
        {"TimestampLessThanEqualsPath":"$.t2","Variable":"$.t"} => true
        {"TimestampGreaterThanEquals":"2024-03-01T11:00:00-01:00","Variable":"$.t"} => true
        {"TimestampEquals":"2024-03-01T12:00:00Z","Variable":"$.s"} => false
        {"IsPresent":true,"Variable":"$.s"} => true
        {"IsPresent":false,"Variable":"$.missing"} => true
        {"IsNull":true,"Variable":"$.nul"} => true
        {"IsString":true,"Variable":"$.s"} => true
        {"IsNumeric":true,"Variable":"$.f"} => true
        {"IsBoolean":false,"Variable":"$.b"} => false
        {"IsTimestamp":true,"Variable":"$.t"} => true
        {"IsTimestamp":true,"Variable":"$.s"} => false
        {"And":[{"NumericGreaterThan":5,"Variable":"$.n"},{"BooleanEquals":true,"Variable":"$.b"}]} => true
        {"Or":[{"NumericGreaterThan":50,"Variable":"$.n"},{"StringEquals":"x","Variable":"$.s"}]} => false
        {"Not":{"StringEquals":"x","Variable":"$.s"}} => true
        {"StringEquals":"x","Variable":"$.missing"} => ExecutionFailed States.Runtime: An error occurred while executing the state 'C' (entered at the event id #2). Invalid path '$.missing': The choice state's condition path references an invalid value.
        {"StringEqualsPath":"$.missing","Variable":"$.s"} => ExecutionFailed States.Runtime: An error occurred while executing the state 'C' (entered at the event id #2). Invalid path '$.missing' : No results for path: $.missing (in StringEquals)
    "#]]
    .assert_eq(&choices(
        input,
        &[
            json!({"Variable": "$.s", "StringEquals": "order-17"}),
            json!({"Variable": "$.s", "StringEqualsPath": "$.other"}),
            json!({"Variable": "$.s", "StringLessThan": "order-2"}),
            json!({"Variable": "$.s", "StringGreaterThan": "order-2"}),
            json!({"Variable": "$.s", "StringLessThanEquals": "order-17"}),
            json!({"Variable": "$.s", "StringGreaterThanEqualsPath": "$.other"}),
            json!({"Variable": "$.s", "StringMatches": "order-*"}),
            json!({"Variable": "$.s", "StringMatches": "*-1?"}),
            json!({"Variable": "$.s", "StringMatches": "ord*1*7"}),
            json!({"Variable": "$.n", "StringEquals": "10"}),
            json!({"Variable": "$.n", "NumericEquals": 10}),
            json!({"Variable": "$.n", "NumericEqualsPath": "$.m"}),
            json!({"Variable": "$.f", "NumericLessThan": 3}),
            json!({"Variable": "$.f", "NumericGreaterThan": 3}),
            json!({"Variable": "$.n", "NumericLessThanEquals": 10}),
            json!({"Variable": "$.n", "NumericGreaterThanEqualsPath": "$.f"}),
            json!({"Variable": "$.n", "NumericLessThanPath": "$.f"}),
            json!({"Variable": "$.b", "BooleanEquals": true}),
            json!({"Variable": "$.b", "BooleanEqualsPath": "$.nul"}),
            json!({"Variable": "$.t", "TimestampEquals": "2024-03-01T12:00:00.000Z"}),
            json!({"Variable": "$.t", "TimestampEqualsPath": "$.t2"}),
            json!({"Variable": "$.t", "TimestampLessThan": "2024-03-01T12:00:01Z"}),
            json!({"Variable": "$.t", "TimestampGreaterThan": "2024-03-01T12:00:01Z"}),
            json!({"Variable": "$.t", "TimestampLessThanEqualsPath": "$.t2"}),
            json!({"Variable": "$.t", "TimestampGreaterThanEquals": "2024-03-01T11:00:00-01:00"}),
            json!({"Variable": "$.s", "TimestampEquals": "2024-03-01T12:00:00Z"}),
            json!({"Variable": "$.s", "IsPresent": true}),
            json!({"Variable": "$.missing", "IsPresent": false}),
            json!({"Variable": "$.nul", "IsNull": true}),
            json!({"Variable": "$.s", "IsString": true}),
            json!({"Variable": "$.f", "IsNumeric": true}),
            json!({"Variable": "$.b", "IsBoolean": false}),
            json!({"Variable": "$.t", "IsTimestamp": true}),
            json!({"Variable": "$.s", "IsTimestamp": true}),
            json!({"And": [{"Variable": "$.n", "NumericGreaterThan": 5}, {"Variable": "$.b", "BooleanEquals": true}]}),
            json!({"Or": [{"Variable": "$.n", "NumericGreaterThan": 50}, {"Variable": "$.s", "StringEquals": "x"}]}),
            json!({"Not": {"Variable": "$.s", "StringEquals": "x"}}),
            json!({"Variable": "$.missing", "StringEquals": "x"}),
            json!({"Variable": "$.s", "StringEqualsPath": "$.missing"}),
        ],
    ));
}

#[test]
fn choice_without_a_match_or_default_fails_with_no_choice_matched() {
    check_run(
        json!({
            "StartAt": "C",
            "States": {
                "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "D"}], "OutputPath": "$.x"},
                "D": {"Type": "Succeed"}
            }
        }),
        json!({"x": 2}),
        &[],
        expect![[r#"
            ExecutionStarted
            ChoiceStateEntered C {"x":2}
            ExecutionFailed States.NoChoiceMatched: No Matches! (in the Choice state 'C')
        "#]],
    );
}

#[test]
fn task_result_goes_through_result_selector_result_path_and_output_path() {
    check_run(
        json!({
            "StartAt": "Invoke",
            "States": {
                "Invoke": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "InputPath": "$.order",
                    "Parameters": {"FunctionName": "price", "Payload": {"id.$": "$.id", "exec.$": "$$.Execution.Id", "try.$": "$$.State.RetryCount"}},
                    "ResultSelector": {"total.$": "$.Payload.total"},
                    "ResultPath": "$.price",
                    "OutputPath": "$.price.total",
                    "End": true
                }
            }
        }),
        json!({"order": {"id": "o-1"}, "keep": true}),
        &[("Invoke", r#"{"StatusCode": 200, "Payload": {"total": 99}}"#)],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered Invoke {"keep":true,"order":{"id":"o-1"}}
            TaskScheduled {"FunctionName":"price","Payload":{"exec":"arn:aws:states:us-east-1:123456789012:execution:demo:run-1","id":"o-1","try":0}}
            TaskSucceeded {"Payload":{"total":99},"StatusCode":200}
            TaskStateExited Invoke 99
            ExecutionSucceeded 99
        "#]],
    );
}

#[test]
fn retry_backs_off_then_succeeds() {
    check_run(
        json!({
            "StartAt": "Flaky",
            "States": {
                "Flaky": {
                    "Type": "Task",
                    "Resource": "arn:aws:lambda:us-east-1:123456789012:function:flaky",
                    "Retry": [
                        {"ErrorEquals": ["Validation"], "MaxAttempts": 0},
                        {"ErrorEquals": ["Lambda.ServiceException", "States.TaskFailed"], "IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 4, "MaxDelaySeconds": 3}
                    ],
                    "End": true
                }
            }
        }),
        json!({"try": 1}),
        &[
            ("Flaky", "!Lambda.ServiceException:boom"),
            ("Flaky", "!Lambda.ServiceException:boom"),
            ("Flaky", "!CustomError:still"),
            ("Flaky", r#"{"ok": true}"#),
        ],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered Flaky {"try":1}
            TaskScheduled {"try":1}
            TaskFailed Lambda.ServiceException: boom (retry at +1s)
            +1s
            TaskScheduled {"try":1}
            TaskFailed Lambda.ServiceException: boom (retry at +3s)
            +3s
            TaskScheduled {"try":1}
            TaskFailed CustomError: still (retry at +6s)
            +6s
            TaskScheduled {"try":1}
            TaskSucceeded {"ok":true}
            TaskStateExited Flaky {"ok":true}
            ExecutionSucceeded {"ok":true}
        "#]],
    );
}

#[test]
fn retries_run_out_then_catch_puts_the_error_at_its_result_path() {
    check_run(
        json!({
            "StartAt": "Charge",
            "States": {
                "Charge": {
                    "Type": "Task",
                    "Resource": "arn:aws:lambda:us-east-1:123456789012:function:charge",
                    "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 1, "JitterStrategy": "FULL"}],
                    "Catch": [
                        {"ErrorEquals": ["CardDeclined"], "Next": "Declined", "ResultPath": "$.error"},
                        {"ErrorEquals": ["States.ALL"], "Next": "Broken"}
                    ],
                    "End": true
                },
                "Declined": {"Type": "Pass", "End": true},
                "Broken": {"Type": "Fail", "Error": "Broken"}
            }
        }),
        json!({"amount": 5}),
        &[
            ("Charge", "!CardDeclined:insufficient funds"),
            ("Charge", "!CardDeclined:insufficient funds"),
        ],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered Charge {"amount":5}
            TaskScheduled {"amount":5}
            TaskFailed CardDeclined: insufficient funds (retry at +0.834718s)
            +0.834718s
            TaskScheduled {"amount":5}
            TaskFailed CardDeclined: insufficient funds (catch 0)
            TaskStateExited Charge {"amount":5,"error":{"Cause":"insufficient funds","Error":"CardDeclined"}}
            PassStateEntered Declined {"amount":5,"error":{"Cause":"insufficient funds","Error":"CardDeclined"}}
            PassStateExited Declined {"amount":5,"error":{"Cause":"insufficient funds","Error":"CardDeclined"}}
            ExecutionSucceeded {"amount":5,"error":{"Cause":"insufficient funds","Error":"CardDeclined"}}
        "#]],
    );
}

#[test]
fn uncaught_task_failure_fails_the_execution_with_its_error() {
    check_run(
        json!({
            "StartAt": "T",
            "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "Retry": [{"ErrorEquals": ["Other"]}], "End": true}}
        }),
        json!({}),
        &[("T", r#"!Error:{"errorMessage":"bad","errorType":"Error"}"#)],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered T {}
            TaskScheduled {}
            TaskFailed Error: {"errorMessage":"bad","errorType":"Error"} (fail)
            ExecutionFailed Error: {"errorMessage":"bad","errorType":"Error"}
        "#]],
    );
}

#[test]
fn task_timeout_and_heartbeat_raise_states_timeout_errors() {
    let definition = json!({
        "StartAt": "Slow",
        "States": {
            "Slow": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSecondsPath": "$.timeout",
                "HeartbeatSeconds": 2,
                "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Beat", "ResultPath": "$.e"}],
                "End": true
            },
            "Beat": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "TimeoutSeconds": 5, "End": true}
        }
    });
    check_run(
        definition,
        json!({"timeout": 10}),
        &[("Slow", "..."), ("Beat", "...")],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered Slow {"timeout":10}
            TaskScheduled {"MessageBody":{"token":"6ef58dc4-25f6-476b-a678-9aba4441e0ee"},"QueueUrl":"q"}
            +2s
            TaskTimedOut States.HeartbeatTimeout: The task sent no heartbeat within its HeartbeatSeconds (catch 0)
            TaskStateExited Slow {"e":{"Cause":"The task sent no heartbeat within its HeartbeatSeconds","Error":"States.HeartbeatTimeout"},"timeout":10}
            TaskStateEntered Beat {"e":{"Cause":"The task sent no heartbeat within its HeartbeatSeconds","Error":"States.HeartbeatTimeout"},"timeout":10}
            TaskScheduled {"e":{"Cause":"The task sent no heartbeat within its HeartbeatSeconds","Error":"States.HeartbeatTimeout"},"timeout":10}
            +7s
            TaskTimedOut States.Timeout: The task did not finish within its TimeoutSeconds (fail)
            ExecutionFailed States.Timeout: The task did not finish within its TimeoutSeconds
        "#]],
    );
}

#[test]
fn wait_states_wait_for_seconds_timestamps_and_paths() {
    check_run(
        json!({
            "StartAt": "W1",
            "States": {
                "W1": {"Type": "Wait", "Seconds": 2, "Next": "W2"},
                "W2": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "W3"},
                "W3": {"Type": "Wait", "Timestamp": "2023-11-14T22:14:00Z", "Next": "W4"},
                "W4": {"Type": "Wait", "TimestampPath": "$.until", "OutputPath": "$.delay", "Next": "W5"},
                "W5": {"Type": "Wait", "TimestampPath": "$", "End": true}
            }
        }),
        json!({"delay": 3, "until": "2023-11-14T22:15:00.500Z"}),
        &[],
        expect![[r#"
            ExecutionStarted
            WaitStateEntered W1 {"delay":3,"until":"2023-11-14T22:15:00.500Z"}
            +2s
            WaitStateExited W1 {"delay":3,"until":"2023-11-14T22:15:00.500Z"}
            WaitStateEntered W2 {"delay":3,"until":"2023-11-14T22:15:00.500Z"}
            +5s
            WaitStateExited W2 {"delay":3,"until":"2023-11-14T22:15:00.500Z"}
            WaitStateEntered W3 {"delay":3,"until":"2023-11-14T22:15:00.500Z"}
            +40s
            WaitStateExited W3 {"delay":3,"until":"2023-11-14T22:15:00.500Z"}
            WaitStateEntered W4 {"delay":3,"until":"2023-11-14T22:15:00.500Z"}
            +100.5s
            WaitStateExited W4 3
            WaitStateEntered W5 3
            ExecutionFailed States.Runtime: An error occurred while executing the state 'W5' (entered at the event id #10). The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-tim...
        "#]],
    );
}

#[test]
fn fail_state_takes_error_and_cause_from_paths() {
    check_run(
        json!({
            "StartAt": "F",
            "States": {"F": {"Type": "Fail", "ErrorPath": "$.code", "CausePath": "States.Format('order {} failed', $.id)"}}
        }),
        json!({"code": "OrderFailed", "id": 7}),
        &[],
        expect![[r#"
            ExecutionStarted
            FailStateEntered F {"code":"OrderFailed","id":7}
            ExecutionFailed OrderFailed: order 7 failed
        "#]],
    );
}

#[test]
fn parallel_collects_branch_outputs_in_order() {
    check_run(
        json!({
            "StartAt": "Both",
            "States": {
                "Both": {
                    "Type": "Parallel",
                    "Parameters": {"id.$": "$.id"},
                    "Branches": [
                        {"StartAt": "Slow", "States": {"Slow": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:slow", "Next": "Done"}, "Done": {"Type": "Succeed"}}},
                        {"StartAt": "Fast", "States": {"Fast": {"Type": "Pass", "Result": "fast", "End": true}}}
                    ],
                    "ResultSelector": {"slow.$": "$[0]", "fast.$": "$[1]"},
                    "ResultPath": "$.results",
                    "End": true
                }
            }
        }),
        json!({"id": 1}),
        &[("Slow", r#""slow""#)],
        expect![[r#"
            ExecutionStarted
            ParallelStateEntered Both {"id":1}
            ParallelStateStarted
              TaskStateEntered Slow {"id":1}
              TaskScheduled {"id":1}
              PassStateEntered Fast {"id":1}
              PassStateExited Fast "fast"
              TaskSucceeded "slow"
              TaskStateExited Slow "slow"
              SucceedStateEntered Done "slow"
              SucceedStateExited Done "slow"
            ParallelStateSucceeded
            ParallelStateExited Both {"id":1,"results":{"fast":"fast","slow":"slow"}}
            ExecutionSucceeded {"id":1,"results":{"fast":"fast","slow":"slow"}}
        "#]],
    );
}

#[test]
fn a_failed_branch_fails_the_parallel_which_catches_it() {
    check_run(
        json!({
            "StartAt": "Both",
            "States": {
                "Both": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "Hang", "States": {"Hang": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:hang", "End": true}}},
                        {"StartAt": "Boom", "States": {"Boom": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:boom", "End": true}}}
                    ],
                    "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 1}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Recover"}],
                    "End": true
                },
                "Recover": {"Type": "Pass", "End": true}
            }
        }),
        json!({}),
        &[
            ("Hang", "..."),
            ("Boom", "!Flaky:once"),
            ("Hang", "..."),
            ("Boom", "!Broken:twice"),
        ],
        expect![[r#"
            ExecutionStarted
            ParallelStateEntered Both {}
            ParallelStateStarted
              TaskStateEntered Hang {}
              TaskScheduled {}
              TaskStateEntered Boom {}
              TaskScheduled {}
              TaskFailed Flaky: once (fail)
            ParallelStateFailed Flaky: once (retry at +1s)
            +1s
            ParallelStateStarted
              TaskStateEntered Hang {}
              TaskScheduled {}
              TaskStateEntered Boom {}
              TaskScheduled {}
              TaskFailed Broken: twice (fail)
            ParallelStateFailed Broken: twice (catch 0)
            ParallelStateExited Both {"failure":{"Cause":"twice","Error":"Broken"}}
            PassStateEntered Recover {"failure":{"Cause":"twice","Error":"Broken"}}
            PassStateExited Recover {"failure":{"Cause":"twice","Error":"Broken"}}
            ExecutionSucceeded {"failure":{"Cause":"twice","Error":"Broken"}}
        "#]],
    );
}

#[test]
fn map_runs_iterations_within_max_concurrency() {
    check_run(
        json!({
            "StartAt": "Each",
            "States": {
                "Each": {
                    "Type": "Map",
                    "ItemsPath": "$.orders",
                    "MaxConcurrency": 2,
                    "ItemSelector": {"order.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "customer.$": "$.customer"},
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "INLINE"},
                        "StartAt": "Ship",
                        "States": {"Ship": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:ship", "ResultPath": "$.shipped", "End": true}}
                    },
                    "ResultPath": "$.shipments",
                    "OutputPath": "$.shipments",
                    "End": true
                }
            }
        }),
        json!({"customer": "c-1", "orders": ["a", "b", "c"]}),
        &[("Ship", "true"), ("Ship", "false"), ("Ship", "true")],
        expect![[r#"
            ExecutionStarted
            MapStateEntered Each {"customer":"c-1","orders":["a","b","c"]}
            MapStateStarted
            MapIterationStarted 0
            MapIterationStarted 1
              TaskStateEntered Ship {"customer":"c-1","index":0,"order":"a"}
              TaskScheduled {"customer":"c-1","index":0,"order":"a"}
              TaskStateEntered Ship {"customer":"c-1","index":1,"order":"b"}
              TaskScheduled {"customer":"c-1","index":1,"order":"b"}
              TaskSucceeded true
              TaskStateExited Ship {"customer":"c-1","index":0,"order":"a","shipped":true}
            MapIterationSucceeded 0
            MapIterationStarted 2
              TaskStateEntered Ship {"customer":"c-1","index":2,"order":"c"}
              TaskScheduled {"customer":"c-1","index":2,"order":"c"}
              TaskSucceeded false
              TaskStateExited Ship {"customer":"c-1","index":1,"order":"b","shipped":false}
            MapIterationSucceeded 1
              TaskSucceeded true
              TaskStateExited Ship {"customer":"c-1","index":2,"order":"c","shipped":true}
            MapIterationSucceeded 2
            MapStateSucceeded
            MapStateExited Each [{"customer":"c-1","index":0,"order":"a","shipped":true},{"customer":"c-1","index":1,"order":"b","shipped":false},{"customer":"c-1","index":2,"order":"c","shipped":true}]
            ExecutionSucceeded [{"customer":"c-1","index":0,"order":"a","shipped":true},{"customer":"c-1","index":1,"order":"b","shipped":false},{"customer":"c-1","index":2,"order":"c","shipped":true}]
        "#]],
    );
}

#[test]
fn map_tolerates_failures_up_to_its_threshold() {
    let definition = |count: u64| {
        json!({
            "StartAt": "Each",
            "States": {
                "Each": {
                    "Type": "Map",
                    "ToleratedFailureCount": count,
                    "Iterator": {"StartAt": "Check", "States": {
                        "Check": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericGreaterThan": 1, "Next": "Bad"}], "Default": "Good"},
                        "Bad": {"Type": "Fail", "Error": "TooBig", "Cause": "over 1"},
                        "Good": {"Type": "Succeed"}
                    }},
                    "End": true
                }
            }
        })
    };
    expect![[r#"
        ExecutionSucceeded [1,{"Cause":"over 1","Error":"TooBig"},0]
        ExecutionFailed States.ExceedToleratedFailureThreshold: The number of failed items exceeded the tolerated failure threshold
        ExecutionFailed States.Runtime: An error occurred while executing the state 'M' (entered at the event id #2). Map's ItemsPath must select an array, not a string"#]]
    .assert_eq(&format!(
        "{}\n{}\n{}",
        outcome(definition(1), json!([1, 2, 0])),
        outcome(definition(0), json!([1, 2, 0])),
        outcome(json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.x", "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}}), json!({"x": "no"})),
    ));
}

#[test]
fn map_over_nothing_and_nested_parallel_inside_map() {
    check_run(
        json!({
            "StartAt": "Empty",
            "States": {
                "Empty": {"Type": "Map", "ItemsPath": "$.none", "ResultPath": "$.out", "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "Next": "Each"},
                "Each": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemProcessor": {"StartAt": "Fork", "States": {"Fork": {
                        "Type": "Parallel",
                        "Branches": [
                            {"StartAt": "Double", "States": {"Double": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, $)"}, "OutputPath": "$.v", "End": true}}},
                            {"StartAt": "Same", "States": {"Same": {"Type": "Pass", "End": true}}}
                        ],
                        "End": true
                    }}},
                    "End": true
                }
            }
        }),
        json!({"none": [], "items": [1, 2]}),
        &[],
        expect![[r#"
            ExecutionStarted
            MapStateEntered Empty {"items":[1,2],"none":[]}
            MapStateStarted
            MapStateSucceeded
            MapStateExited Empty {"items":[1,2],"none":[],"out":[]}
            MapStateEntered Each {"items":[1,2],"none":[],"out":[]}
            MapStateStarted
            MapIterationStarted 0
            MapIterationStarted 1
              ParallelStateEntered Fork 1
              ParallelStateStarted
              ParallelStateEntered Fork 2
              ParallelStateStarted
                PassStateEntered Double 1
                PassStateExited Double 2
                PassStateEntered Same 1
                PassStateExited Same 1
                PassStateEntered Double 2
                PassStateExited Double 4
                PassStateEntered Same 2
                PassStateExited Same 2
              ParallelStateSucceeded
              ParallelStateExited Fork [2,1]
              ParallelStateSucceeded
              ParallelStateExited Fork [4,2]
            MapIterationSucceeded 0
            MapIterationSucceeded 1
            MapStateSucceeded
            MapStateExited Each [[2,1],[4,2]]
            ExecutionSucceeded [[2,1],[4,2]]
        "#]],
    );
}

#[test]
fn validation_reports_every_structural_problem() {
    let definition = json!({
        "StartAt": "Start",
        "Comment": "many mistakes",
        "States": {
            "Start": {"Type": "Pass", "Next": "Nowhere", "Retry": [{"ErrorEquals": ["States.ALL"]}]},
            "Orphan": {"Type": "Succeed"},
            "NoEnd": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f"},
            "Both": {"Type": "Pass", "Next": "Start", "End": true},
            "Task": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
                "TimeoutSeconds": 5,
                "HeartbeatSeconds": 10,
                "Retry": [
                    {"ErrorEquals": ["States.ALL"], "BackoffRate": 0.5},
                    {"ErrorEquals": ["States.Oops", "Custom"], "JitterStrategy": "SOME"}
                ],
                "Catch": [{"ErrorEquals": ["States.ALL", "Custom"], "Next": "Missing"}],
                "End": true
            },
            "Choose": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": "1", "Next": "Start"}, {"Variable": "$.x", "Bogus": 1, "Next": "Start"}, {"Not": {"Variable": "$.x", "IsNull": true, "Next": "Start"}, "Next": "Start"}], "Default": "Gone"},
            "Waiter": {"Type": "Wait", "Seconds": 1, "Timestamp": "2024-01-01T00:00:00Z", "End": true},
            "Failer": {"Type": "Fail", "Error": "States.Made.Up"},
            "Mapper": {"Type": "Map", "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Y"}}}, "ItemReader": {}, "End": true},
            "Fork": {"Type": "Parallel", "Branches": [{"StartAt": "In", "States": {"In": {"Type": "Pass", "Next": "Start"}}}], "End": true},
            "Odd": {"Type": "Sleep"}
        }
    });
    expect![[r#"
        States.Both: has both Next and End
        States.Choose.Choices[0].NumericEquals: NumericEquals takes a number
        States.Choose.Choices[1].Bogus: unknown choice operator 'Bogus'
        States.Choose.Choices[2].Not.Next: only top-level choice rules have Next
        States.Mapper.ItemReader: ItemReader belongs to a distributed Map, which nimbus does not run
        States.Mapper.ItemProcessor.ProcessorConfig.Mode: DISTRIBUTED Map is not supported; only INLINE
        States.NoEnd: needs Next or End: true
        States.Odd.Type: unknown state type 'Sleep'
        States.Start.Retry: a Pass state cannot have Retry: only Task, Parallel and Map can
        States.Task.Retry[0].BackoffRate: must be a number of at least 1.0
        States.Task.Retry[1].JitterStrategy: must be FULL or NONE
        States.Waiter: a Wait state needs exactly one of Seconds, Timestamp, SecondsPath and TimestampPath
        States.Choose.Default: no state is named 'Gone' in this state machine
        warning: States.Failer.Error: 'States.Made.Up': error names starting with States. are reserved
        States.Fork.Branches[0].States.In.Next: no state is named 'Start' in this branch
        States.Mapper.ItemProcessor.States.X.Next: no state is named 'Y' in this Map's processor
        States.Start.Next: no state is named 'Nowhere' in this state machine
        States.Task.Catch[0].Next: no state is named 'Missing' in this state machine
        States.Task.Retry[0].ErrorEquals: States.ALL must be in the last Retry entry
        warning: States.Task.Retry[1].ErrorEquals: unknown error name 'States.Oops': names starting with States. are reserved
        States.Task.Catch[0].ErrorEquals: States.ALL must be the only error name in its ErrorEquals
        States.Task.HeartbeatSeconds: must be smaller than TimeoutSeconds
        States.Both: the state 'Both' is not reachable from StartAt
        States.Choose: the state 'Choose' is not reachable from StartAt
        States.Failer: the state 'Failer' is not reachable from StartAt
        States.Fork: the state 'Fork' is not reachable from StartAt
        States.Mapper: the state 'Mapper' is not reachable from StartAt
        States.NoEnd: the state 'NoEnd' is not reachable from StartAt
        States.Orphan: the state 'Orphan' is not reachable from StartAt
        States.Task: the state 'Task' is not reachable from StartAt
    "#]]
    .assert_eq(&run(definition, json!({}), &[]));
}

#[test]
fn validation_of_a_parsed_definition_finds_graph_problems() {
    let definition = json!({
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "Ghost"},
            "Lonely": {"Type": "Pass", "End": true},
            "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["Custom"]}], "Catch": [{"ErrorEquals": ["States.TaskFailed", "States.ALL"], "Next": "A"}], "End": true},
            "Fork": {"Type": "Parallel", "Branches": [{"StartAt": "In", "States": {"In": {"Type": "Pass", "Next": "A"}}}], "End": true},
            "F": {"Type": "Fail", "Error": "States.Made.Up"}
        }
    });
    expect![[r#"
        States.A.Next: no state is named 'Ghost' in this state machine
        warning: States.F.Error: 'States.Made.Up': error names starting with States. are reserved
        States.Fork.Branches[0].States.In.Next: no state is named 'A' in this branch
        States.T.Retry[0].ErrorEquals: States.ALL must be in the last Retry entry
        States.T.Catch[0].ErrorEquals: States.ALL must be the only error name in its ErrorEquals
        States.F: the state 'F' is not reachable from StartAt
        States.Fork: the state 'Fork' is not reachable from StartAt
        States.Lonely: the state 'Lonely' is not reachable from StartAt
        States.T: the state 'T' is not reachable from StartAt
    "#]]
    .assert_eq(&run(definition, json!({}), &[]));
}

/// A saga in the style of AWS's travel-booking sample: reserve, charge and confirm, with each
/// step's failure caught and compensated in reverse order.
fn saga() -> Value {
    let step = |resource: &str, next: &str, error_path: &str, on_error: &str| {
        json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": resource, "Payload.$": "$"},
            "ResultSelector": {"id.$": "$.Payload.id"},
            "ResultPath": format!("$.results.{resource}"),
            "Retry": [{"ErrorEquals": ["Lambda.ServiceException", "Lambda.TooManyRequestsException"], "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 2}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": error_path, "Next": on_error}],
            "Next": next
        })
    };
    let undo = |resource: &str, next: &str| {
        json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": resource, "Payload.$": "$"},
            "ResultPath": null,
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3}],
            "Next": next
        })
    };
    json!({
        "Comment": "Order saga: reserve stock, charge the card, ship; undo what was done on failure",
        "StartAt": "ReserveStock",
        "States": {
            "ReserveStock": step("reserve", "ChargeCard", "$.errors.reserve", "Failed"),
            "ChargeCard": step("charge", "Ship", "$.errors.charge", "ReleaseStock"),
            "Ship": step("ship", "Notify", "$.errors.ship", "RefundCard"),
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:123456789012:orders", "Message.$": "States.Format('Order {} shipped', $.orderId)"},
                "ResultPath": null,
                "Next": "Done"
            },
            "Done": {"Type": "Succeed"},
            "RefundCard": undo("refund", "ReleaseStock"),
            "ReleaseStock": undo("release", "Failed"),
            "Failed": {"Type": "Fail", "Error": "OrderFailed", "CausePath": "States.Format('order {} was rolled back', $.orderId)"}
        }
    })
}

#[test]
fn saga_happy_path_ships_and_notifies() {
    check_run(
        saga(),
        json!({"orderId": "o-7", "amount": 30}),
        &[
            (
                "ReserveStock",
                r#"{"Payload": {"id": "r-1"}, "StatusCode": 200}"#,
            ),
            (
                "ChargeCard",
                r#"{"Payload": {"id": "c-1"}, "StatusCode": 200}"#,
            ),
            ("Ship", r#"{"Payload": {"id": "s-1"}, "StatusCode": 200}"#),
        ],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered ReserveStock {"amount":30,"orderId":"o-7"}
            TaskScheduled {"FunctionName":"reserve","Payload":{"amount":30,"orderId":"o-7"}}
            TaskSucceeded {"Payload":{"id":"r-1"},"StatusCode":200}
            TaskStateExited ReserveStock {"amount":30,"orderId":"o-7","results":{"reserve":{"id":"r-1"}}}
            TaskStateEntered ChargeCard {"amount":30,"orderId":"o-7","results":{"reserve":{"id":"r-1"}}}
            TaskScheduled {"FunctionName":"charge","Payload":{"amount":30,"orderId":"o-7","results":{"reserve":{"id":"r-1"}}}}
            TaskSucceeded {"Payload":{"id":"c-1"},"StatusCode":200}
            TaskStateExited ChargeCard {"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"}}}
            TaskStateEntered Ship {"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"}}}
            TaskScheduled {"FunctionName":"ship","Payload":{"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"}}}}
            TaskSucceeded {"Payload":{"id":"s-1"},"StatusCode":200}
            TaskStateExited Ship {"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"},"ship":{"id":"s-1"}}}
            TaskStateEntered Notify {"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"},"ship":{"id":"s-1"}}}
            TaskScheduled {"Message":"Order o-7 shipped","TopicArn":"arn:aws:sns:us-east-1:123456789012:orders"}
            TaskSucceeded {"Message":"Order o-7 shipped","TopicArn":"arn:aws:sns:us-east-1:123456789012:orders"}
            TaskStateExited Notify {"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"},"ship":{"id":"s-1"}}}
            SucceedStateEntered Done {"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"},"ship":{"id":"s-1"}}}
            SucceedStateExited Done {"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"},"ship":{"id":"s-1"}}}
            ExecutionSucceeded {"amount":30,"orderId":"o-7","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"},"ship":{"id":"s-1"}}}
        "#]],
    );
}

#[test]
fn saga_compensates_in_reverse_when_shipping_fails() {
    check_run(
        saga(),
        json!({"orderId": "o-8", "amount": 30}),
        &[
            ("ReserveStock", r#"{"Payload": {"id": "r-1"}}"#),
            ("ChargeCard", "!Lambda.ServiceException:throttled"),
            ("ChargeCard", r#"{"Payload": {"id": "c-1"}}"#),
            (
                "Ship",
                r#"!NoCourier:{"errorMessage":"no courier","errorType":"NoCourier"}"#,
            ),
        ],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered ReserveStock {"amount":30,"orderId":"o-8"}
            TaskScheduled {"FunctionName":"reserve","Payload":{"amount":30,"orderId":"o-8"}}
            TaskSucceeded {"Payload":{"id":"r-1"}}
            TaskStateExited ReserveStock {"amount":30,"orderId":"o-8","results":{"reserve":{"id":"r-1"}}}
            TaskStateEntered ChargeCard {"amount":30,"orderId":"o-8","results":{"reserve":{"id":"r-1"}}}
            TaskScheduled {"FunctionName":"charge","Payload":{"amount":30,"orderId":"o-8","results":{"reserve":{"id":"r-1"}}}}
            TaskFailed Lambda.ServiceException: throttled (retry at +2s)
            +2s
            TaskScheduled {"FunctionName":"charge","Payload":{"amount":30,"orderId":"o-8","results":{"reserve":{"id":"r-1"}}}}
            TaskSucceeded {"Payload":{"id":"c-1"}}
            TaskStateExited ChargeCard {"amount":30,"orderId":"o-8","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"}}}
            TaskStateEntered Ship {"amount":30,"orderId":"o-8","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"}}}
            TaskScheduled {"FunctionName":"ship","Payload":{"amount":30,"orderId":"o-8","results":{"charge":{"id":"c-1"},"reserve":{"id":"r-1"}}}}
            TaskFailed NoCourier: {"errorMessage":"no courier","errorType":"NoCourier"} (catch 0)
            TaskStateExited Ship {"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results":{"charge":{"id":"c-1"},"rese...
            TaskStateEntered RefundCard {"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results":{"charge":{"id":"c-1"...
            TaskScheduled {"FunctionName":"refund","Payload":{"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results":...
            TaskSucceeded {"FunctionName":"refund","Payload":{"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results":...
            TaskStateExited RefundCard {"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results":{"charge":{"id":"c-1"}...
            TaskStateEntered ReleaseStock {"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results":{"charge":{"id":"c-...
            TaskScheduled {"FunctionName":"release","Payload":{"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results"...
            TaskSucceeded {"FunctionName":"release","Payload":{"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results"...
            TaskStateExited ReleaseStock {"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results":{"charge":{"id":"c-1...
            FailStateEntered Failed {"amount":30,"errors":{"ship":{"Cause":"{\"errorMessage\":\"no courier\",\"errorType\":\"NoCourier\"}","Error":"NoCourier"}},"orderId":"o-8","results":{"charge":{"id":"c-1"},"r...
            ExecutionFailed OrderFailed: order o-8 was rolled back
        "#]],
    );
}

/// A Map over an order's lines in the style of AWS's inventory samples: each line is checked
/// and priced; a Choice routes the order by the total.
#[test]
fn map_over_order_lines_then_choose_by_total() {
    check_run(
        json!({
            "StartAt": "PriceLines",
            "States": {
                "PriceLines": {
                    "Type": "Map",
                    "ItemsPath": "$.lines",
                    "MaxConcurrency": 0,
                    "ItemSelector": {"sku.$": "$$.Map.Item.Value.sku", "qty.$": "$$.Map.Item.Value.qty", "currency.$": "$.currency"},
                    "ItemProcessor": {"StartAt": "InStock", "States": {
                        "InStock": {"Type": "Choice", "Choices": [{"Variable": "$.qty", "NumericGreaterThan": 0, "Next": "Price"}], "Default": "Skip"},
                        "Skip": {"Type": "Pass", "Result": 0, "End": true},
                        "Price": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:price", "ResultSelector": {"total.$": "$.total"}, "OutputPath": "$.total", "End": true}
                    }},
                    "ResultPath": "$.totals",
                    "Next": "Sum"
                },
                "Sum": {"Type": "Pass", "Parameters": {"orderId.$": "$.orderId", "lines.$": "States.ArrayLength($.totals)", "totals.$": "$.totals"}, "Next": "Route"},
                "Route": {"Type": "Choice", "Choices": [
                    {"And": [{"Variable": "$.lines", "NumericGreaterThanEquals": 3}, {"Variable": "$.totals[0]", "NumericGreaterThan": 10}], "Next": "Review"}
                ], "Default": "Accept"},
                "Review": {"Type": "Succeed", "Comment": "large orders get a look"},
                "Accept": {"Type": "Succeed"}
            }
        }),
        json!({"orderId": "o-1", "currency": "EUR", "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}, {"sku": "c", "qty": 1}]}),
        &[("Price", r#"{"total": 20}"#), ("Price", r#"{"total": 5}"#)],
        expect![[r#"
            ExecutionStarted
            MapStateEntered PriceLines {"currency":"EUR","lines":[{"qty":2,"sku":"a"},{"qty":0,"sku":"b"},{"qty":1,"sku":"c"}],"orderId":"o-1"}
            MapStateStarted
            MapIterationStarted 0
            MapIterationStarted 1
            MapIterationStarted 2
              ChoiceStateEntered InStock {"currency":"EUR","qty":2,"sku":"a"}
              ChoiceStateExited InStock {"currency":"EUR","qty":2,"sku":"a"}
              ChoiceStateEntered InStock {"currency":"EUR","qty":0,"sku":"b"}
              ChoiceStateExited InStock {"currency":"EUR","qty":0,"sku":"b"}
              ChoiceStateEntered InStock {"currency":"EUR","qty":1,"sku":"c"}
              ChoiceStateExited InStock {"currency":"EUR","qty":1,"sku":"c"}
              TaskStateEntered Price {"currency":"EUR","qty":2,"sku":"a"}
              TaskScheduled {"currency":"EUR","qty":2,"sku":"a"}
              PassStateEntered Skip {"currency":"EUR","qty":0,"sku":"b"}
              PassStateExited Skip 0
              TaskStateEntered Price {"currency":"EUR","qty":1,"sku":"c"}
              TaskScheduled {"currency":"EUR","qty":1,"sku":"c"}
            MapIterationSucceeded 1
              TaskSucceeded {"total":20}
              TaskStateExited Price 20
            MapIterationSucceeded 0
              TaskSucceeded {"total":5}
              TaskStateExited Price 5
            MapIterationSucceeded 2
            MapStateSucceeded
            MapStateExited PriceLines {"currency":"EUR","lines":[{"qty":2,"sku":"a"},{"qty":0,"sku":"b"},{"qty":1,"sku":"c"}],"orderId":"o-1","totals":[20,0,5]}
            PassStateEntered Sum {"currency":"EUR","lines":[{"qty":2,"sku":"a"},{"qty":0,"sku":"b"},{"qty":1,"sku":"c"}],"orderId":"o-1","totals":[20,0,5]}
            PassStateExited Sum {"lines":3,"orderId":"o-1","totals":[20,0,5]}
            ChoiceStateEntered Route {"lines":3,"orderId":"o-1","totals":[20,0,5]}
            ChoiceStateExited Route {"lines":3,"orderId":"o-1","totals":[20,0,5]}
            SucceedStateEntered Review {"lines":3,"orderId":"o-1","totals":[20,0,5]}
            SucceedStateExited Review {"lines":3,"orderId":"o-1","totals":[20,0,5]}
            ExecutionSucceeded {"lines":3,"orderId":"o-1","totals":[20,0,5]}
        "#]],
    );
}

#[test]
fn a_folded_history_resumes_where_it_stopped() {
    let definition = check(&json!({
        "TimeoutSeconds": 600,
        "StartAt": "Wait",
        "States": {
            "Wait": {"Type": "Wait", "Seconds": 10, "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "Parameters": {"token.$": "$$.Task.Token"}, "HeartbeatSeconds": 60, "End": true}
        }
    }))
    .expect("valid");
    let (state, mut history, commands) = advance(
        &definition,
        &ExecutionState::default(),
        T0,
        Event::Start {
            info: info(),
            input: json!({"a": 1}),
        },
    );
    // The host crashed here: it folds the journal and re-arms what is outstanding.
    let rebuilt = ExecutionState::fold(&definition, &history);
    assert_eq!(rebuilt, state);
    assert_eq!(rebuilt.outstanding(&definition), commands);
    let wait = commands
        .iter()
        .find(|c| matches!(c, Command::StartTimer { timer, .. } if timer.kind == TimerKind::Wait));
    let Some(Command::StartTimer { timer, due_us }) = wait.cloned() else {
        panic!("a Wait starts a timer: {commands:?}");
    };
    let (state, events, commands) =
        advance(&definition, &rebuilt, due_us, Event::TimerFired { timer });
    history.extend(events);
    let rebuilt = ExecutionState::fold(&definition, &history);
    assert_eq!(rebuilt, state);
    // After a second crash the running task is dispatched again with the same key.
    let again = rebuilt.outstanding(&definition);
    assert!(
        commands.iter().all(|c| again.contains(c)),
        "{again:?} re-arms {commands:?}"
    );
    let Some(Command::Invoke {
        task,
        key,
        completion: Completion::Token(token),
        ..
    }) = commands.first().cloned()
    else {
        panic!("the task waits for its token: {commands:?}");
    };
    assert_eq!(rebuilt.task_by_token(&token), Some(task.clone()));
    let (_, heartbeat_events, heartbeat) = advance(
        &definition,
        &rebuilt,
        due_us + 5_000_000,
        Event::TaskHeartbeat { task: task.clone() },
    );
    assert!(heartbeat_events.is_empty());
    let (state, events, commands) = advance(
        &definition,
        &rebuilt,
        due_us + 7_000_000,
        Event::TaskSucceeded {
            task: task.clone(),
            output: json!("done"),
        },
    );
    history.extend(events);
    // A second SendTaskSuccess for the same token changes nothing.
    let (_, late_events, late) = advance(
        &definition,
        &state,
        due_us + 8_000_000,
        Event::TaskSucceeded {
            task,
            output: json!("again"),
        },
    );
    expect![[r#"
        key arn:aws:states:us-east-1:123456789012:execution:demo:run-1/Work#0
        heartbeat [StartTimer { timer: TimerId { scope: [], state: "Work", attempt: 0, kind: Heartbeat }, due_us: 1700000075000000 }]
        end [Succeed { output: String("done") }]
        late [] []
        1 ExecutionStarted
        2 WaitStateEntered
        3 WaitStateExited
        4 TaskStateEntered
        5 TaskScheduled
        6 TaskSucceeded
        7 TaskStateExited
        8 ExecutionSucceeded
    "#]]
    .assert_eq(&format!(
        "key {key}\nheartbeat {heartbeat:?}\nend {commands:?}\nlate {late_events:?} {late:?}\n{}",
        history.iter().map(|e| format!("{} {}\n", e.id, e.event_type())).collect::<String>()
    ));
}

#[test]
fn stop_aborts_and_cancels_running_tasks() {
    let definition = check(&json!({
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "End": true}}
    }))
    .expect("valid");
    let (state, _, _) = advance(
        &definition,
        &ExecutionState::default(),
        T0,
        Event::Start {
            info: info(),
            input: json!({}),
        },
    );
    let (state, events, commands) = advance(
        &definition,
        &state,
        T0 + 1,
        Event::Stop {
            error: Some("Stopped".to_owned()),
            cause: None,
        },
    );
    expect![[r#"
        Aborted
        ExecutionAborted
        [Cancel { task: TaskId { scope: [], state: "T", attempt: 0 } }]"#]]
    .assert_eq(&format!(
        "{:?}\n{}\n{commands:?}",
        state.status,
        events
            .iter()
            .map(HistoryEvent::event_type)
            .collect::<Vec<_>>()
            .join(",")
    ));
}

#[test]
fn execution_timeout_and_data_limits_end_the_execution() {
    check_run(
        json!({"TimeoutSeconds": 3, "StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "End": true}}}),
        json!({}),
        &[("T", "...")],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered T {}
            TaskScheduled {}
            +3s
            ExecutionTimedOut States.Timeout: The execution ran longer than its TimeoutSeconds
        "#]],
    );
    let big = "x".repeat(300 * 1024);
    check_run(
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": true}, "C": {"Type": "Succeed"}}}),
        json!({}),
        &[("T", &format!("\"{big}\""))],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered T {}
            TaskScheduled {}
            TaskFailed States.DataLimitExceeded: The state/task 'T' returned a result of 307202 bytes, larger than the 262144 bytes allowed (fail)
            ExecutionFailed States.DataLimitExceeded: The state/task 'T' returned a result of 307202 bytes, larger than the 262144 bytes allowed
        "#]],
    );
    check_run(
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": true}, "C": {"Type": "Succeed"}}}),
        json!({}),
        &[(
            "T",
            "!States.Runtime:the function returned text that is not JSON",
        )],
        expect![[r#"
            ExecutionStarted
            TaskStateEntered T {}
            TaskScheduled {}
            TaskFailed States.Runtime: the function returned text that is not JSON (fail)
            ExecutionFailed States.Runtime: the function returned text that is not JSON
        "#]],
    );
}

#[test]
fn history_events_read_as_get_execution_history_json() {
    let definition = check(&json!({
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"}, "TimeoutSeconds": 30, "End": true}}
    }))
    .expect("valid");
    let (_, events, _) = advance(
        &definition,
        &ExecutionState::default(),
        T0,
        Event::Start {
            info: info(),
            input: json!({"a": 1}),
        },
    );
    let text: Vec<String> = events.iter().map(|e| e.to_json().to_string()).collect();
    expect![[r#"
        {"executionStartedEventDetails":{"input":"{\"a\":1}","inputDetails":{"truncated":false},"roleArn":"arn:aws:iam::123456789012:role/demo","stateMachineArn":"arn:aws:states:us-east-1:123456789012:stateMachine:demo"},"id":1,"nimbus":{"execution":{"executionArn":"arn:aws:states:us-east-1:123456789012:execution:demo:run-1","name":"run-1","seed":"42","stateMachineName":"demo"},"timestampUs":1700000000000000},"previousEventId":0,"timestamp":1700000000.0,"type":"ExecutionStarted"}
        {"id":2,"nimbus":{"timestampUs":1700000000000000},"previousEventId":1,"stateEnteredEventDetails":{"input":"{\"a\":1}","inputDetails":{"truncated":false},"name":"T"},"timestamp":1700000000.0,"type":"TaskStateEntered"}
        {"id":3,"nimbus":{"timestampUs":1700000000000000},"previousEventId":2,"taskScheduledEventDetails":{"nimbusResource":"arn:aws:states:::lambda:invoke","parameters":"{\"FunctionName\":\"f\"}","region":"us-east-1","resource":"invoke","resourceType":"lambda","timeoutInSeconds":30},"timestamp":1700000000.0,"type":"TaskScheduled"}"#]]
    .assert_eq(&text.join("\n"));
}

#[test]
fn task_resources_are_classified_or_refused() {
    let mut out = String::new();
    for resource in [
        "arn:aws:lambda:us-east-1:123456789012:function:orders-dev-reserve",
        "arn:aws:lambda:us-east-1:123456789012:function:reserve:live",
        "arn:aws:states:::lambda:invoke",
        "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "arn:aws:states:::dynamodb:updateItem",
        "arn:aws:states:::states:startExecution.sync:2",
        "arn:aws:states:::dynamodb:putItem.sync",
        "arn:aws:states:::aws-sdk:s3:getObject",
        "arn:aws:states:::glue:startJobRun.sync",
        "arn:aws:states:us-east-1:123456789012:activity:approve",
        "hello",
    ] {
        let _ = writeln!(out, "{resource} => {:?}", Resource::parse(resource));
    }
    expect![[r#"
        arn:aws:lambda:us-east-1:123456789012:function:orders-dev-reserve => Ok(Function { name: "orders-dev-reserve", qualifier: None })
        arn:aws:lambda:us-east-1:123456789012:function:reserve:live => Ok(Function { name: "reserve", qualifier: Some("live") })
        arn:aws:states:::lambda:invoke => Ok(Service { service: "lambda", action: "invoke", pattern: RequestResponse })
        arn:aws:states:::lambda:invoke.waitForTaskToken => Ok(Service { service: "lambda", action: "invoke", pattern: WaitForTaskToken })
        arn:aws:states:::sqs:sendMessage.waitForTaskToken => Ok(Service { service: "sqs", action: "sendMessage", pattern: WaitForTaskToken })
        arn:aws:states:::dynamodb:updateItem => Ok(Service { service: "dynamodb", action: "updateItem", pattern: RequestResponse })
        arn:aws:states:::states:startExecution.sync:2 => Ok(Service { service: "states", action: "startExecution", pattern: Sync2 })
        arn:aws:states:::dynamodb:putItem.sync => Err("'arn:aws:states:::dynamodb:putItem.sync': dynamodb:putItem does not support this pattern")
        arn:aws:states:::aws-sdk:s3:getObject => Err("'arn:aws:states:::aws-sdk:s3:getObject': AWS SDK integrations are not supported; call the service from a function")
        arn:aws:states:::glue:startJobRun.sync => Err("'arn:aws:states:::glue:startJobRun.sync': nimbus runs the lambda:invoke, sqs:sendMessage, sns:publish, events:putEvents, dynamodb:getItem, dynamodb:putItem, dynamodb:updateItem, dynamodb:deleteItem, states:startExecution integrations only")
        arn:aws:states:us-east-1:123456789012:activity:approve => Err("'arn:aws:states:us-east-1:123456789012:activity:approve': activities are not supported")
        hello => Err("'hello' is neither a Lambda function ARN nor an arn:aws:states::: integration")
    "#]]
    .assert_eq(&out);
}

#[test]
fn an_endless_loop_of_states_fails_at_the_history_limit() {
    let text = run(
        json!({
            "StartAt": "Spin",
            "States": {
                "Spin": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": "Again"},
                "Again": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericLessThan": 0, "Next": "Out"}], "Default": "Spin"},
                "Out": {"Type": "Succeed"}
            }
        }),
        json!({"n": 0}),
        &[],
    );
    let lines: Vec<&str> = text.lines().collect();
    expect![[r#"
        25002 events
        ChoiceStateExited Again {"n":6250}
        ExecutionFailed States.Runtime: The execution reached the limit of 25000 history events"#]]
    .assert_eq(&format!(
        "{} events\n{}",
        lines.len(),
        lines[lines.len() - 2..].join("\n")
    ));
}

#[test]
fn null_and_reference_paths_in_processing_fields() {
    let cases = [
        json!({"InputPath": null, "Parameters": {"got.$": "$"}}),
        json!({"OutputPath": null}),
        json!({"Result": "r", "ResultPath": null}),
        json!({"Result": "r", "ResultPath": "$.deep.er.path"}),
        json!({"Result": "r", "ResultPath": "$.list[1]"}),
        json!({"Result": "r", "ResultPath": "$.text.inner"}),
        json!({"Result": "r", "ResultPath": "$.list[9]"}),
        json!({"InputPath": "$.list[0]", "OutputPath": "$.nope"}),
    ];
    let mut out = String::new();
    for fields in cases {
        let res = outcome(pass(fields.clone()), json!({"text": "t", "list": [1, 2]}));
        let _ = writeln!(out, "{fields} => {res}");
    }
    expect![[r#"
        {"InputPath":null,"Parameters":{"got.$":"$"}} => ExecutionSucceeded {"got":{}}
        {"OutputPath":null} => ExecutionSucceeded {}
        {"Result":"r","ResultPath":null} => ExecutionSucceeded {"list":[1,2],"text":"t"}
        {"Result":"r","ResultPath":"$.deep.er.path"} => ExecutionSucceeded {"deep":{"er":{"path":"r"}},"list":[1,2],"text":"t"}
        {"Result":"r","ResultPath":"$.list[1]"} => ExecutionSucceeded {"list":[1,"r"],"text":"t"}
        {"Result":"r","ResultPath":"$.text.inner"} => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). unable to apply ReferencePath $.text.inner to input {"list":[1,2],"text":"t"}
        {"Result":"r","ResultPath":"$.list[9]"} => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). unable to apply ReferencePath $.list[9] to input {"list":[1,2],"text":"t"}
        {"InputPath":"$.list[0]","OutputPath":"$.nope"} => ExecutionFailed States.Runtime: An error occurred while executing the state 'P' (entered at the event id #2). Invalid path '$.nope' : No results for path: $.nope (in OutputPath)
    "#]]
    .assert_eq(&out);
}

#[test]
fn a_chain_of_a_thousand_pass_states_runs_in_one_step() {
    let mut states = serde_json::Map::new();
    for i in 0..1000 {
        let mut state = json!({"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}});
        if let Some(object) = state.as_object_mut() {
            if i == 999 {
                object.insert("End".to_owned(), json!(true));
            } else {
                object.insert("Next".to_owned(), json!(format!("S{}", i + 1)));
            }
        }
        states.insert(format!("S{i}"), state);
    }
    let definition = check(&json!({"StartAt": "S0", "States": states})).expect("valid");
    let (state, events, commands) = advance(
        &definition,
        &ExecutionState::default(),
        T0,
        Event::Start {
            info: info(),
            input: json!({"n": 0}),
        },
    );
    assert_eq!(events.len(), 2002);
    assert_eq!(
        commands,
        vec![Command::Succeed {
            output: json!({"n": 1000})
        }]
    );
    assert_eq!(ExecutionState::fold(&definition, &events), state);
}

/// A first-to-finish race in the style of AWS's quorum sample: the winning branch fails with a
/// made-up `States.` error that the Parallel catches. Step Functions runs such names, so
/// validation only warns.
#[test]
fn custom_states_errors_warn_but_run() {
    let definition = json!({
        "StartAt": "Race",
        "States": {
            "Race": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Slow", "States": {"Slow": {"Type": "Wait", "Seconds": 30, "Next": "Late"}, "Late": {"Type": "Fail", "Error": "States.TooLate"}}},
                    {"StartAt": "Fast", "States": {"Fast": {"Type": "Wait", "Seconds": 1, "Next": "Won"}, "Won": {"Type": "Fail", "Error": "States.Won", "Cause": "fast"}}}
                ],
                "Catch": [
                    {"ErrorEquals": ["States.Won"], "ResultPath": "$.winner", "Next": "Done"},
                    {"ErrorEquals": ["States.TooLate"], "Next": "Done"}
                ],
                "End": true
            },
            "Done": {"Type": "Succeed"}
        }
    });
    let warnings: String = parse(&definition)
        .map(|d| validate(&d).iter().map(|w| format!("{w}\n")).collect())
        .unwrap_or_default();
    expect![[r#"
        warning: States.Race.Branches[0].States.Late.Error: 'States.TooLate': error names starting with States. are reserved
        warning: States.Race.Branches[1].States.Won.Error: 'States.Won': error names starting with States. are reserved
        warning: States.Race.Catch[0].ErrorEquals: unknown error name 'States.Won': names starting with States. are reserved
        warning: States.Race.Catch[1].ErrorEquals: unknown error name 'States.TooLate': names starting with States. are reserved
        ExecutionStarted
        ParallelStateEntered Race {}
        ParallelStateStarted
          WaitStateEntered Slow {}
          WaitStateEntered Fast {}
        +1s
          WaitStateExited Fast {}
          FailStateEntered Won {}
        ParallelStateFailed States.Won: fast (catch 0)
        ParallelStateExited Race {"winner":{"Cause":"fast","Error":"States.Won"}}
        SucceedStateEntered Done {"winner":{"Cause":"fast","Error":"States.Won"}}
        SucceedStateExited Done {"winner":{"Cause":"fast","Error":"States.Won"}}
        ExecutionSucceeded {"winner":{"Cause":"fast","Error":"States.Won"}}
    "#]]
    .assert_eq(&format!("{warnings}{}", run(definition, json!({}), &[])));
}

#[test]
fn next_function_follows_next_through_pass_states_to_a_task() {
    let arn = |name: &str| format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
    // Parsed, not validated: the Pass loop is not reachable from StartAt.
    let definition = parse(&json!({
        "StartAt": "A",
        "States": {
            "A": { "Type": "Task", "Resource": arn("first"), "Next": "Shape" },
            "Shape": { "Type": "Pass", "Next": "B" },
            "B": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": { "FunctionName": "second:live", "Payload.$": "$" },
                "Next": "C"
            },
            "C": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": { "FunctionName": arn("third"), "Payload.$": "$" },
                "Next": "D"
            },
            "D": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": { "FunctionName.$": "$.name" },
                "Next": "E"
            },
            "E": { "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": { "QueueUrl": "q", "MessageBody": "m" }, "Next": "F" },
            "F": { "Type": "Wait", "Seconds": 1, "Next": "G" },
            "G": { "Type": "Task", "Resource": arn("last"), "End": true },
            "Loop": { "Type": "Pass", "Next": "Loop2" },
            "Loop2": { "Type": "Pass", "Next": "Loop" }
        }
    }))
    .expect("a valid definition");
    let next = |from: &str| definition.machine.next_function(from);
    assert_eq!(
        next("A").as_deref(),
        Some("second"),
        "through the Pass state, lambda:invoke's name without its qualifier"
    );
    assert_eq!(
        next("B").as_deref(),
        Some("third"),
        "lambda:invoke's FunctionName as an ARN"
    );
    assert_eq!(
        next("C"),
        None,
        "FunctionName from a Path is not known before the state runs"
    );
    assert_eq!(next("D"), None, "a service integration invokes no function");
    assert_eq!(next("E"), None, "a Wait comes first");
    assert_eq!(next("G"), None, "the end");
    assert_eq!(next("Loop"), None, "a loop of Pass states");
    assert_eq!(next("Nowhere"), None);
}
