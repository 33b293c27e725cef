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
            let _ = writeln!(out, "{indent}{}", describe(e));
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
            TaskFailed CardDeclined: insufficient funds (retry at +0.610722s)
            +0.610722s
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
            TaskScheduled {"MessageBody":{"token":"fa797f03-f3c8-4f80-9c5a-84b9a60bd82c"},"QueueUrl":"q"}
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
            ExecutionFailed States.Runtime: An error occurred while executing the state 'W5' (entered at the event id #10). The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: '$'
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
