//! serverless-wsgi without the plugin: a Python function whose handler is
//! `wsgi_handler.handler` serves the WSGI app `custom.wsgi.app` names, through the adapter
//! nimbus ships (`bootstrap/python/wsgi_handler.py`).

use std::path::{Path, PathBuf};

use nimbus_core::{FunctionSpec, Runtime};
use serde_json::Value;

use crate::code::{Code, CodeError, nearest_requirements};

/// The handler serverless-wsgi's functions name. The plugin writes `wsgi_handler.py` into
/// the package at deploy time; nimbus puts its own adapter of that name on the function's
/// `PYTHONPATH` instead.
pub const WSGI_HANDLER: &str = "wsgi_handler.handler";

/// The parts of serverless-wsgi's `custom.wsgi` that change what a request sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsgiApp {
    /// `custom.wsgi.app` as written: `module.attribute`, where the module may start with
    /// the folder it is in (`web/api.app`), as the plugin's "alternative directory
    /// structure" has it.
    pub app: String,
    /// `custom.wsgi.textMimeTypes`: response types sent as text besides `text/*` and the
    /// plugin's own list; every other type is sent base64-encoded.
    pub text_mime_types: Vec<String>,
    /// `custom.wsgi.pythonBin`: the interpreter that installs the requirements and serves
    /// the app (the plugin's packaging and `sls wsgi serve`); `python3` when unset.
    pub python_bin: Option<String>,
}

impl WsgiApp {
    /// Reads `custom.wsgi`: the app, when `custom.wsgi.app` names one, and a warning for
    /// each setting nimbus reads but does not follow.
    pub fn from_custom(custom: Option<&Value>) -> (Option<WsgiApp>, Vec<String>) {
        let mut warnings = Vec::new();
        let Some(wsgi) = custom.and_then(|c| c.get("wsgi")) else {
            return (None, warnings);
        };
        let Some(wsgi) = wsgi.as_object() else {
            warnings.push("custom.wsgi must be a mapping; ignored".to_owned());
            return (None, warnings);
        };
        let mut text_mime_types = Vec::new();
        match wsgi.get("textMimeTypes") {
            None | Some(Value::Null) => {}
            Some(Value::Array(types)) => {
                for mime in types {
                    match mime.as_str() {
                        Some(mime) => text_mime_types.push(mime.trim().to_ascii_lowercase()),
                        None => warnings.push(format!(
                            "custom.wsgi.textMimeTypes: {mime} is not a MIME type string; ignored"
                        )),
                    }
                }
            }
            Some(other) => warnings.push(format!(
                "custom.wsgi.textMimeTypes must be a list of MIME types, got {other}; ignored"
            )),
        }
        let python_bin = match wsgi.get("pythonBin") {
            None | Some(Value::Null) => None,
            Some(Value::String(bin)) if !bin.trim().is_empty() => Some(bin.trim().to_owned()),
            Some(other) => {
                warnings.push(format!(
                    "custom.wsgi.pythonBin must name a Python executable, got {other}; python3 is used"
                ));
                None
            }
        };
        if wsgi.contains_key("pipArgs") {
            warnings.push(
                "custom.wsgi.pipArgs is not followed: nimbus installs requirements.txt with plain `pip install -r`"
                    .to_owned(),
            );
        }
        if wsgi.get("packRequirements") == Some(&Value::Bool(false)) {
            warnings.push(
                "custom.wsgi.packRequirements: false is not followed: nimbus installs the function's requirements.txt, as serverless-python-requirements would"
                    .to_owned(),
            );
        }
        let app = match wsgi.get("app") {
            None | Some(Value::Null) => None,
            Some(Value::String(app)) => Some(app.trim().to_owned()),
            Some(other) => {
                warnings.push(format!(
                    "custom.wsgi.app must be a string, module.attribute of your WSGI app (for example app.app), got {other}; ignored"
                ));
                None
            }
        };
        (
            app.map(|app| WsgiApp {
                app,
                text_mime_types,
                python_bin,
            }),
            warnings,
        )
    }
}

/// Whether `spec` is a serverless-wsgi function that nimbus's adapter serves: a Python
/// function with the plugin's handler and no `wsgi_handler.py` of its own in the app
/// folder (an app's own file always wins).
pub fn uses_wsgi_adapter(app_dir: &Path, spec: &FunctionSpec) -> bool {
    matches!(spec.runtime, Runtime::Python { .. })
        && spec.handler == WSGI_HANDLER
        && !app_dir.join("wsgi_handler.py").is_file()
}

/// The code of a function `uses_wsgi_adapter` accepted: the adapter serving `wsgi`'s app,
/// with the `requirements.txt` nearest to the app's module. Without `custom.wsgi.app`, or
/// when its module is not in the app folder, the error says what to write.
pub fn resolve_wsgi(app_dir: &Path, wsgi: Option<&WsgiApp>) -> Result<Code, CodeError> {
    let Some(wsgi) = wsgi else {
        return Err(CodeError {
            message: format!(
                "handler {WSGI_HANDLER} is serverless-wsgi's, but custom.wsgi.app is not set: set it to module.attribute of your WSGI app (for example app.app for `app = Flask(__name__)` in app.py), or add your own wsgi_handler.py"
            ),
        });
    };
    let module_file = app_module_file(app_dir, &wsgi.app)?;
    if let Some(bin) = &wsgi.python_bin
        && crate::spawn::interpreter_version(bin).is_none()
    {
        return Err(CodeError {
            message: format!(
                "custom.wsgi.pythonBin is {bin:?}, which cannot be run here: install it, or remove pythonBin to use python3"
            ),
        });
    }
    Ok(Code::Python {
        requirements: nearest_requirements(app_dir, &module_file),
        dependencies: None,
        wsgi: Some(wsgi.clone()),
    })
}

/// The file of the module `app` names, relative to the app folder: `web/api.app` is
/// `web/api.py`, `project.wsgi.application` is `project/wsgi.py` (or a package's
/// `__init__.py`).
fn app_module_file(app_dir: &Path, app: &str) -> Result<PathBuf, CodeError> {
    let (folder, dotted) = match app.rsplit_once('/') {
        Some((folder, dotted)) => (folder, dotted),
        None => ("", app),
    };
    let Some((module, _attribute)) = dotted
        .rsplit_once('.')
        .filter(|(m, a)| !m.is_empty() && !a.is_empty())
    else {
        return Err(CodeError {
            message: format!(
                "custom.wsgi.app is {app:?}: it must be module.attribute of your WSGI app, for example app.app for `app = Flask(__name__)` in app.py"
            ),
        });
    };
    let base = Path::new(folder).join(module.replace('.', "/"));
    let candidates = [base.with_extension("py"), base.join("__init__.py")];
    if let Some(found) = candidates.iter().find(|c| app_dir.join(c).is_file()) {
        return Ok(found.clone());
    }
    Err(CodeError {
        message: format!(
            "custom.wsgi.app is {app:?}, but its module {module} is not in the app folder: looked for {} and {} in {}",
            candidates[0].display(),
            candidates[1].display(),
            app_dir.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use serde_json::json;

    use super::*;

    fn check(custom: Value, expect: Expect) {
        let (app, warnings) = WsgiApp::from_custom(Some(&custom));
        expect.assert_eq(&format!("{app:?}\n{}", warnings.join("\n")));
    }

    #[test]
    fn custom_wsgi_settings() {
        check(
            json!({}),
            expect![[r#"
            None
        "#]],
        );
        check(
            json!({"wsgi": {"app": "api.app"}}),
            expect![[r#"
                Some(WsgiApp { app: "api.app", text_mime_types: [], python_bin: None })
            "#]],
        );
        check(
            json!({"wsgi": {"app": "web/api.app", "textMimeTypes": ["Application/Custom+JSON", 3]}}),
            expect![[r#"
                Some(WsgiApp { app: "web/api.app", text_mime_types: ["application/custom+json"], python_bin: None })
                custom.wsgi.textMimeTypes: 3 is not a MIME type string; ignored"#]],
        );
        check(
            json!({"wsgi": {"app": "api.app", "pythonBin": "python3.11", "packRequirements": false}}),
            expect![[r#"
                Some(WsgiApp { app: "api.app", text_mime_types: [], python_bin: Some("python3.11") })
                custom.wsgi.packRequirements: false is not followed: nimbus installs the function's requirements.txt, as serverless-python-requirements would"#]],
        );
        check(
            json!({"wsgi": {"app": 7}}),
            expect![[r#"
                None
                custom.wsgi.app must be a string, module.attribute of your WSGI app (for example app.app), got 7; ignored"#]],
        );
    }

    fn check_module(files: &[&str], app: &str, expect: Expect) {
        let dir = tempfile::tempdir().expect("a temp dir");
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, "").expect("write");
        }
        let res = app_module_file(dir.path(), app)
            .map(|p| p.display().to_string())
            .map_err(|e| e.message.replace(&dir.path().display().to_string(), "APP"));
        expect.assert_eq(&format!("{res:?}"));
    }

    #[test]
    fn app_modules_are_found_as_serverless_wsgi_finds_them() {
        check_module(&["api.py"], "api.app", expect![[r#"Ok("api.py")"#]]);
        check_module(
            &["web/api.py"],
            "web/api.app",
            expect![[r#"Ok("web/api.py")"#]],
        );
        check_module(
            &["shop/wsgi.py"],
            "shop.wsgi.application",
            expect![[r#"Ok("shop/wsgi.py")"#]],
        );
        check_module(
            &["shop/__init__.py"],
            "shop.app",
            expect![[r#"Ok("shop/__init__.py")"#]],
        );
        check_module(
            &["api.py"],
            "apj.app",
            expect![[
                r#"Err("custom.wsgi.app is \"apj.app\", but its module apj is not in the app folder: looked for apj.py and apj/__init__.py in APP")"#
            ]],
        );
        check_module(
            &["api.py"],
            "api",
            expect![[
                r#"Err("custom.wsgi.app is \"api\": it must be module.attribute of your WSGI app, for example app.app for `app = Flask(__name__)` in app.py")"#
            ]],
        );
    }
}
