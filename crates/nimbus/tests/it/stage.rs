//! REST APIs at their stage path, the start-up banner, `nimbus validate`'s verdict on events
//! nimbus does not serve, and Python tracebacks at ERROR (issue 21).

use std::time::Duration;

use crate::harness::{TestApp, TestServer};

const ITEMS_JS: &str = r#"
exports.list = async (event) => ({
  statusCode: 200,
  body: JSON.stringify({
    items: ['a', 'b'],
    path: event.path,
    contextPath: event.requestContext.path,
    stage: event.requestContext.stage,
    id: (event.pathParameters || {}).id || null,
  }),
});
exports.tick = async () => {};
exports.work = async () => {};
"#;

fn rest_app(custom: &str) -> TestApp {
    let manifest = format!(
        r#"
service: todos
{custom}
provider:
  runtime: nodejs20.x
functions:
  list:
    handler: items.list
    events:
      - http: GET items
      - http: GET items/{{id}}
  api:
    handler: items.list
    events:
      - httpApi: GET /v2/items
  tick:
    handler: items.tick
    events:
      - schedule: cron(0 12 * * ? *)
  work:
    handler: items.work
    events:
      - sqs: jobs
queues:
  jobs: {{}}
"#
    );
    TestApp::new(&[("serverless.yml", &manifest), ("items.js", ITEMS_JS)])
}

#[tokio::test]
async fn rest_routes_answer_under_the_stage_and_without_it() {
    let app = rest_app("");
    let server = TestServer::start(app.path(), &[]);
    let staged = server.get("/dev/items").await;
    assert_eq!(staged.status, 200, "{}", staged.text());
    let plain = server.get("/items").await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let (staged, plain) = (staged.json(), plain.json());
    assert_eq!(staged["items"], plain["items"]);
    // As API Gateway fills them: `path` without the stage, `requestContext.path` as asked.
    assert_eq!(staged["path"], "/items");
    assert_eq!(staged["contextPath"], "/dev/items");
    assert_eq!(plain["path"], "/items");
    assert_eq!(plain["contextPath"], "/items");
    assert_eq!(staged["stage"], "dev");
    let one = server.get("/dev/items/42").await.json();
    assert_eq!(one["id"], "42");
    assert_eq!(one["contextPath"], "/dev/items/42");
    // HTTP APIs have the `$default` stage, which takes no path segment.
    assert_eq!(server.get("/v2/items").await.status, 200);
    assert_eq!(server.get("/dev/v2/items").await.status, 404);
}

#[tokio::test]
async fn stage_path_can_be_turned_off_as_in_serverless_offline_or_required() {
    let app = rest_app("custom:\n  serverless-offline:\n    noPrependStageInUrl: true");
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(server.get("/items").await.status, 200);
    assert_eq!(server.get("/dev/items").await.status, 404);
    drop(server);

    let app = rest_app("custom:\n  nimbus:\n    stagePath: required");
    let server = TestServer::start(app.path(), &["--stage", "prod"]);
    let res = server.get("/prod/items").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["contextPath"], "/prod/items");
    assert_eq!(server.get("/items").await.status, 404);
    assert_eq!(server.get("/dev/items").await.status, 404);
}

#[tokio::test]
async fn the_banner_lists_urls_schedules_and_event_sources() {
    let app = rest_app("");
    let server = TestServer::start(app.path(), &[]);
    let base = format!("http://{}", server.addr);
    let mut stdout = String::new();
    for _ in 0..100 {
        stdout = server.stdout();
        if stdout.contains("sqs jobs") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stdout.contains(&format!("GET     {base}/dev/items (also /items) -> list")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("GET     {base}/v2/items -> api")),
        "{stdout}"
    );
    let schedule = stdout
        .lines()
        .find(|line| line.contains("schedule tick-schedule-1 cron(0 12 * * ? *)"))
        .unwrap_or_else(|| panic!("no schedule line in:\n{stdout}"));
    assert!(
        schedule.contains("T12:00:00.000Z) -> tick"),
        "the next fire is at noon UTC: {schedule}"
    );
    assert!(stdout.contains("sqs jobs (batch 10) -> work"), "{stdout}");
}

#[test]
fn validate_fails_when_a_function_has_only_events_nimbus_does_not_serve() {
    let manifest = r#"
service: chat
provider:
  runtime: nodejs20.x
functions:
  connect:
    handler: ws.connect
    events:
      - alexaSkill: amzn1.ask.skill.x
  default:
    handler: ws.connect
    events:
      - alexaSkill: amzn1.ask.skill.y
      - httpApi: GET /health
"#;
    let app = TestApp::new(&[
        ("serverless.yml", manifest),
        (
            "ws.js",
            "exports.connect = async () => ({ statusCode: 200 });\n",
        ),
    ]);
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("functions.connect.events[0].alexaSkill: `alexaSkill` events are not yet served by nimbus; ignored"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "error: function `connect` has only events nimbus does not serve yet (alexaSkill); it would never be invoked"
        ),
        "{}",
        out.stderr
    );
    // `default` is still reachable over HTTP, so it is not reported.
    assert!(!out.stderr.contains("function `default`"), "{}", out.stderr);
}

#[tokio::test]
async fn a_raising_python_handlers_traceback_is_logged_at_error() {
    let manifest = r#"
service: py
provider:
  runtime: python3.11
functions:
  boom:
    handler: handler.boom
    events:
      - httpApi: GET /boom
"#;
    let handler = "def helper():\n    raise ValueError('no such order')\n\n\ndef boom(event, context):\n    return helper()\n";
    let app = TestApp::new(&[("serverless.yml", manifest), ("handler.py", handler)]);
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/boom").await;
    assert_eq!(res.status, 502);
    let logs = app
        .nimbus_until(&["logs", "boom"], |out| out.contains("REPORT"))
        .await;
    let level_of = |needle: &str| {
        let line = logs
            .lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{logs}"));
        line.split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(level_of("ValueError: no such order"), "ERROR", "{logs}");
    assert_eq!(
        level_of("Traceback (most recent call last):"),
        "ERROR",
        "{logs}"
    );
    assert_eq!(level_of("in helper"), "ERROR", "{logs}");
    assert_eq!(level_of("raise ValueError"), "ERROR", "{logs}");
}
