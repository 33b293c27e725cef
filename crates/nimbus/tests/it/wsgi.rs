//! Python WSGI apps in serverless-wsgi's layout, without the plugin: `handler:
//! wsgi_handler.handler` with `custom.wsgi.app` serves the app for REST (payload 1.0)
//! and HTTP API (payload 2.0) events (issue 11, part 5).

use sha2::Digest as _;

use crate::harness::{Response, TestApp, TestServer};

const MANIFEST: &str = "service: notes
provider:
  runtime: python3.12
  timeout: 10
plugins:
  - serverless-wsgi
  - serverless-python-requirements
custom:
  wsgi:
    app: app.app
functions:
  rest:
    handler: wsgi_handler.handler
    events:
      - http: ANY /
      - http: ANY /{proxy+}
  api:
    handler: wsgi_handler.handler
    events:
      - httpApi: ANY /v2/{proxy+}
";

/// One blueprint mounted twice: at `/` for the REST function, at `/v2` for the HTTP API.
const APP_PY: &str = r#"import hashlib
import importlib.metadata

import flask
from flask import Blueprint, Flask, jsonify, make_response, redirect, request, url_for

app = Flask(__name__)
notes = Blueprint("notes", __name__)

# A PNG signature followed by every byte value: not text in any encoding.
LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@notes.get("/notes/<note_id>")
def get_note(note_id):
    return jsonify(
        id=note_id,
        tags=request.args.getlist("tag"),
        limit=request.args.get("limit"),
        script_root=request.script_root,
        url=url_for(".get_note", note_id=note_id),
    )


@notes.post("/notes")
def create_note():
    note = request.get_json()
    res = make_response(jsonify(created=note, length=request.content_length), 201)
    res.set_cookie("last_note", note["title"])
    res.set_cookie("session", "s3cr3t", httponly=True)
    return res


@notes.get("/whoami")
def whoami():
    return jsonify(
        method=request.method,
        cookies=request.cookies,
        client=request.headers.get("X-Client"),
        flask=importlib.metadata.version("flask"),
        flask_file=flask.__file__,
    )


@notes.get("/old-notes/<note_id>")
def old_note(note_id):
    return redirect(url_for(".get_note", note_id=note_id))


@notes.get("/logo.png")
def logo():
    return LOGO, 200, {"Content-Type": "image/png"}


@notes.post("/upload")
def upload():
    data = request.get_data()
    return jsonify(size=len(data), sha256=hashlib.sha256(data).hexdigest())


app.register_blueprint(notes)
app.register_blueprint(notes, url_prefix="/v2", name="v2")
"#;

/// The bytes `LOGO` holds in app.py.
fn logo() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(0..=255u8);
    bytes
}

fn set_cookies(res: &Response) -> Vec<String> {
    res.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// The same requests through the REST function (at `prefix` "" or "/dev") and the HTTP
/// API one (at "/v2"); `script_root` is what Flask sees as SCRIPT_NAME.
async fn check_app(server: &TestServer, prefix: &str, script_root: &str) {
    let res = server
        .get(&format!("{prefix}/notes/42?tag=work&tag=home&limit=5"))
        .await;
    assert_eq!(res.status, 200, "{prefix}: {}", res.text());
    let body = res.json();
    assert_eq!(body["id"], "42", "{body}");
    assert_eq!(body["tags"], serde_json::json!(["work", "home"]), "{body}");
    assert_eq!(body["limit"], "5", "{body}");
    assert_eq!(body["script_root"], script_root, "{body}");
    // The app's own URLs lead back the way it was asked.
    assert_eq!(body["url"], format!("{prefix}/notes/42"), "{body}");

    let res = server
        .request(
            "POST",
            &format!("{prefix}/notes"),
            &[("content-type", "application/json")],
            br#"{"title":"groceries","items":["milk","tea"]}"#.to_vec(),
        )
        .await;
    assert_eq!(res.status, 201, "{prefix}: {}", res.text());
    assert_eq!(
        res.json()["created"]["items"],
        serde_json::json!(["milk", "tea"])
    );
    assert_eq!(res.json()["length"], 44);
    let cookies = set_cookies(&res);
    assert_eq!(cookies.len(), 2, "{prefix}: {cookies:?}");
    assert!(cookies[0].starts_with("last_note=groceries"), "{cookies:?}");
    assert!(
        cookies[1].starts_with("session=s3cr3t") && cookies[1].contains("HttpOnly"),
        "{cookies:?}"
    );

    let res = server
        .request(
            "GET",
            &format!("{prefix}/whoami"),
            &[("cookie", "theme=dark; lang=en"), ("x-client", "cli/1.0")],
            Vec::new(),
        )
        .await;
    assert_eq!(res.status, 200, "{prefix}: {}", res.text());
    let body = res.json();
    assert_eq!(
        body["cookies"],
        serde_json::json!({ "theme": "dark", "lang": "en" }),
        "{body}"
    );
    assert_eq!(body["client"], "cli/1.0", "{body}");
    // Flask comes from the app's requirements.txt, not from this machine's Python.
    assert_eq!(body["flask"], "3.0.3", "{body}");
    let flask_file = body["flask_file"].as_str().expect("a path");
    assert!(
        flask_file.contains("/.nimbus/requirements/"),
        "{flask_file}"
    );

    let res = server.get(&format!("{prefix}/old-notes/7")).await;
    assert_eq!(res.status, 302, "{prefix}: {}", res.text());
    assert_eq!(res.header("location"), Some(&*format!("{prefix}/notes/7")));

    // Flask's own 404 page, not the gateway's.
    let res = server.get(&format!("{prefix}/no-such-page")).await;
    assert_eq!(res.status, 404, "{prefix}: {}", res.text());
    assert!(
        res.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{:?}",
        res.headers
    );
    assert!(res.text().contains("Not Found"), "{}", res.text());

    let res = server.get(&format!("{prefix}/logo.png")).await;
    assert_eq!(res.status, 200, "{prefix}: {}", res.text());
    assert_eq!(res.header("content-type"), Some("image/png"));
    assert_eq!(res.body.as_ref(), logo().as_slice());

    let upload: Vec<u8> = (0..=255u8).rev().cycle().take(1000).collect();
    let res = server
        .request(
            "POST",
            &format!("{prefix}/upload"),
            &[("content-type", "application/octet-stream")],
            upload.clone(),
        )
        .await;
    assert_eq!(res.status, 200, "{prefix}: {}", res.text());
    let sha = sha2::Sha256::digest(&upload);
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        res.json(),
        serde_json::json!({ "size": 1000, "sha256": hex })
    );
}

#[tokio::test]
async fn a_flask_app_behind_serverless_wsgi_answers_rest_and_http_api_requests() {
    let app = TestApp::new(&[
        ("serverless.yml", MANIFEST),
        // Pinned below the newest Flask, which this machine's own Python may have.
        ("requirements.txt", "Flask==3.0.3\nWerkzeug==3.0.6\n"),
        ("app.py", APP_PY),
    ]);
    let server = TestServer::start(app.path(), &[]);
    // REST at /{stage}/path: Flask's SCRIPT_NAME is the stage, as serverless-wsgi sets it
    // on API Gateway's own domain; at /path there is none.
    check_app(&server, "/dev", "/dev").await;
    check_app(&server, "", "").await;
    check_app(&server, "/v2", "").await;
    let logs = server.logs();
    assert!(
        !logs.contains("plugin"),
        "serverless-wsgi is not warned about: {logs}"
    );
}

/// A WSGI app without a framework, in a folder of its own (serverless-wsgi's "alternative
/// directory structure"), importing a neighbour module from that folder.
const PLAIN_MANIFEST: &str = "service: plain
provider:
  runtime: python3.12
functions:
  api:
    handler: wsgi_handler.handler
    events:
      - httpApi: '*'
custom:
  wsgi:
    app: web/api.app
    textMimeTypes:
      - application/vnd.notes+json
";

const PLAIN_API_PY: &str = r#"from greetings import greet


def app(environ, start_response):
    # PEP 3333: PATH_INFO holds the path's bytes as latin-1.
    path = environ["PATH_INFO"].encode("latin-1").decode("utf-8")
    if path == "/report":
        start_response("200 OK", [("Content-Type", "application/vnd.notes+json")])
        return [b'{"report": true}']
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [greet(path).encode("utf-8")]
"#;

#[tokio::test]
async fn a_plain_wsgi_app_in_a_folder_serves_and_its_text_types_stay_text() {
    let app = TestApp::new(&[
        ("serverless.yml", PLAIN_MANIFEST),
        ("web/api.py", PLAIN_API_PY),
        (
            "web/greetings.py",
            "def greet(path):\n    return 'hello ' + path.strip('/')\n",
        ),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/caf%C3%A9").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), "hello café");

    let invoke = |event: serde_json::Value| {
        let path = app.path().to_owned();
        let server = &server;
        async move {
            let res = server
                .admin_json(
                    &path,
                    "POST",
                    "/2015-03-31/functions/api/invocations",
                    &event.to_string(),
                )
                .await;
            assert_eq!(res.status, 200, "{}", res.text());
            res.json()
        }
    };
    // A type listed in textMimeTypes comes back as text, where any other
    // `application/*` type would be base64.
    let result = invoke(serde_json::json!({
        "httpMethod": "GET",
        "path": "/report",
        "headers": { "Host": "127.0.0.1" },
        "requestContext": { "stage": "dev" },
    }))
    .await;
    assert_eq!(result["isBase64Encoded"], false, "{result}");
    assert_eq!(result["body"], r#"{"report": true}"#, "{result}");
    assert_eq!(
        result["multiValueHeaders"]["Content-Type"],
        serde_json::json!(["application/vnd.notes+json"])
    );
    // Warming events are answered without the app, as serverless-wsgi does.
    let result = invoke(serde_json::json!({ "source": "serverless-plugin-warmup" })).await;
    assert_eq!(result, serde_json::json!({}));
}

#[tokio::test]
async fn an_apps_own_wsgi_handler_wins_over_nimbus_adapter() {
    let app = TestApp::new(&[
        ("serverless.yml", PLAIN_MANIFEST),
        ("web/api.py", PLAIN_API_PY),
        (
            "wsgi_handler.py",
            "def handler(event, context):\n    return {'statusCode': 200, 'body': 'my own handler'}\n",
        ),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/anything").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), "my own handler");
}

#[tokio::test]
async fn a_wsgi_app_attribute_that_is_missing_fails_the_invocation_naming_it() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            &PLAIN_MANIFEST.replace("web/api.app", "web/api.application"),
        ),
        ("web/api.py", PLAIN_API_PY),
        ("web/greetings.py", "def greet(path):\n    return path\n"),
    ]);
    // The module is there; `nimbus validate` imports it (issue 20) and names the missing
    // attribute, and without loading (`--no-load`) it cannot tell.
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("functions.api.handler: "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("application"), "{}", out.stderr);
    let out = app.nimbus(&["validate", "--no-load"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/x").await;
    assert_eq!(res.status, 502, "{}", res.text());
    // Invoked directly, the function's error says what is wrong.
    let res = server
        .admin_json(
            app.path(),
            "POST",
            "/2015-03-31/functions/api/invocations",
            "{}",
        )
        .await;
    assert!(
        res.header("x-amz-function-error").is_some(),
        "{}",
        res.text()
    );
    let error = res.json();
    assert_eq!(error["errorType"], "WsgiAppError", "{error}");
    assert!(
        error["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("web/api.py) has no attribute 'application'")),
        "{error}"
    );
    let logs = server.logs();
    assert!(
        logs.contains("WsgiAppError: custom.wsgi.app is 'web/api.application', but module api (")
            && logs.contains("has no attribute 'application'"),
        "{logs}"
    );
}

#[test]
fn a_wsgi_app_module_that_is_missing_is_a_manifest_error() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            &PLAIN_MANIFEST.replace("web/api.app", "web/apj.app"),
        ),
        ("web/api.py", PLAIN_API_PY),
    ]);
    for args in [&["validate"][..], &["up", ".", "--port", "0"]] {
        let out = app.nimbus(args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(
                "functions.api.handler: custom.wsgi.app is \"web/apj.app\", but its module apj is not in the app folder: looked for web/apj.py and web/apj/__init__.py in "
            ),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn the_wsgi_handler_without_custom_wsgi_app_is_a_manifest_error() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            "service: plain\nprovider:\n  runtime: python3.12\nfunctions:\n  api:\n    handler: wsgi_handler.handler\n",
        ),
        ("api.py", PLAIN_API_PY),
    ]);
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("functions.api.handler: handler wsgi_handler.handler is serverless-wsgi's, but custom.wsgi.app is not set: set it to module.attribute of your WSGI app"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn base_path_and_strip_stage_path_set_script_name_as_serverless_wsgi_documents() {
    let manifest = "service: paths
provider:
  runtime: python3.12
custom:
  wsgi:
    app: paths.app
functions:
  stripped:
    handler: wsgi_handler.handler
    environment:
      STRIP_STAGE_PATH: 'yes'
    events:
      - http: GET /rest/{proxy+}
  based:
    handler: wsgi_handler.handler
    environment:
      API_GATEWAY_BASE_PATH: shop
    events:
      - httpApi: GET /shop/{proxy+}
";
    let paths_py = "def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [('%s|%s' % (environ['SCRIPT_NAME'], environ['PATH_INFO'])).encode()]
";
    let app = TestApp::new(&[("serverless.yml", manifest), ("paths.py", paths_py)]);
    let server = TestServer::start(app.path(), &[]);
    // STRIP_STAGE_PATH: no stage in SCRIPT_NAME even when the URL carried it.
    let res = server.get("/dev/rest/a/b").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), "|/rest/a/b");
    // API_GATEWAY_BASE_PATH is the script name and leaves the path.
    let res = server.get("/shop/basket").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), "/shop|/basket");
}

const DJANGO_MANIFEST: &str = "service: shop
provider:
  runtime: python3.12
  timeout: 10
plugins:
  - serverless-wsgi
custom:
  wsgi:
    app: shop.wsgi.application
functions:
  site:
    handler: wsgi_handler.handler
    events:
      - http: ANY /{proxy+}
  forms:
    handler: wsgi_handler.handler
    events:
      - httpApi: POST /orders
";

const DJANGO_SETTINGS: &str = r#"SECRET_KEY = "only-for-this-test"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
"#;

const DJANGO_URLS: &str = r#"from django.http import JsonResponse
from django.urls import path


def item(request, item_id):
    return JsonResponse({"id": item_id, "path": request.path, "q": request.GET.getlist("q")})


def order(request):
    return JsonResponse({"name": request.POST["name"], "qty": int(request.POST["qty"])}, status=201)


urlpatterns = [path("items/<int:item_id>", item), path("orders", order)]
"#;

#[tokio::test]
async fn a_django_project_behind_serverless_wsgi_serves_its_urls() {
    let app = TestApp::new(&[
        ("serverless.yml", DJANGO_MANIFEST),
        ("requirements.txt", "Django==4.2.16\n"),
        ("shop/__init__.py", ""),
        ("shop/settings.py", DJANGO_SETTINGS),
        ("shop/urls.py", DJANGO_URLS),
        (
            "shop/wsgi.py",
            "import os\n\nfrom django.core.wsgi import get_wsgi_application\n\nos.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"shop.settings\")\napplication = get_wsgi_application()\n",
        ),
    ]);
    let server = TestServer::start(app.path(), &[]);
    // Django's request.path is SCRIPT_NAME + PATH_INFO: the stage the URL carried, then the
    // path without it.
    let res = server.get("/dev/items/7?q=red&q=blue").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.json(),
        serde_json::json!({ "id": 7, "path": "/dev/items/7", "q": ["red", "blue"] })
    );
    // A form post reaches an HTTP API function base64-encoded and Django reads it.
    let res = server
        .request(
            "POST",
            "/orders",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"name=green+tea&qty=3".to_vec(),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(
        res.json(),
        serde_json::json!({ "name": "green tea", "qty": 3 })
    );
    let res = server.get("/dev/nowhere").await;
    assert_eq!(res.status, 404, "{}", res.text());
    assert!(res.text().contains("Not Found"), "{}", res.text());
}

#[tokio::test]
async fn custom_wsgi_python_bin_is_the_interpreter_that_serves_the_app() {
    let app = TestApp::new(&[(
        "api.py",
        "import sys\n\n\ndef app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [sys.executable.encode()]\n",
    )]);
    // A link of its own to this machine's Python, so the answer tells which one ran.
    let real = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("running python3");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    let bin = app.path().join("bin/app-python");
    std::fs::create_dir_all(app.path().join("bin")).expect("mkdir");
    std::os::unix::fs::symlink(&real, &bin).expect("linking python");
    let manifest = format!(
        "service: bin\nprovider:\n  runtime: python3.12\nfunctions:\n  api:\n    handler: wsgi_handler.handler\n    events:\n      - httpApi: '*'\ncustom:\n  wsgi:\n    app: api.app\n    pythonBin: {}\n",
        bin.display()
    );
    std::fs::write(app.path().join("serverless.yml"), &manifest).expect("writing manifest");
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/which").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), bin.display().to_string());
    drop(server);

    std::fs::write(
        app.path().join("serverless.yml"),
        manifest.replace(&bin.display().to_string(), "python3-not-installed"),
    )
    .expect("writing manifest");
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("functions.api.handler: custom.wsgi.pythonBin is \"python3-not-installed\", which cannot be run here: install it, or remove pythonBin to use python3"),
        "{}",
        out.stderr
    );
}
