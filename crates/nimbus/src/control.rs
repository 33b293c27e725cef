//! The record a running `nimbus up` leaves in the app's state folder, and the client
//! `nimbus invoke` uses to reach it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Where a running app can be reached. Written as `.nimbus/up.json` (format version 1).
pub(crate) struct UpRecord {
    pub(crate) pid: u32,
    /// When that process started, in clock ticks after boot (`/proc/<pid>/stat`), so a
    /// later process given the same pid is not taken for it; `None` in older records.
    pub(crate) started: Option<u64>,
    pub(crate) gateway: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) token: String,
}

/// A function of a running app and its instances.
pub(crate) struct FunctionStatus {
    pub(crate) name: String,
    pub(crate) instances: u64,
    pub(crate) busy: u64,
    /// Why its instances are warm: reason label and count.
    pub(crate) warm: Vec<(String, u64)>,
}

/// The answer of a direct invocation.
pub(crate) struct Invoked {
    pub(crate) payload: Bytes,
    pub(crate) function_error: bool,
}

impl UpRecord {
    pub(crate) fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("up.json")
    }

    pub(crate) fn write(&self, state_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state folder {}", state_dir.display()))?;
        let record = serde_json::json!({
            "version": 1,
            "pid": self.pid,
            "started": self.started,
            "gateway": self.gateway.to_string(),
            "admin": self.admin.to_string(),
            "token": self.token,
        });
        let path = Self::path(state_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, record.to_string())
            .with_context(|| format!("writing {}", tmp.display()))?;
        // The record holds the control token: only the owner may read it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Reads the record, or `None` when no app is running here.
    pub(crate) fn read(state_dir: &Path) -> Option<UpRecord> {
        let text = std::fs::read_to_string(Self::path(state_dir)).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(UpRecord {
            pid: u32::try_from(value.get("pid")?.as_u64()?).ok()?,
            started: value.get("started").and_then(serde_json::Value::as_u64),
            gateway: value.get("gateway")?.as_str()?.parse().ok()?,
            admin: value.get("admin")?.as_str()?.parse().ok()?,
            token: value.get("token")?.as_str()?.to_owned(),
        })
    }

    /// Whether the process that wrote the record still serves: it exists, is not a zombie
    /// (a `kill -9`ed nimbus stays one until its parent reaps it) and is the same process,
    /// not a later one given the same pid.
    pub(crate) fn serving(&self) -> bool {
        match process_identity(self.pid) {
            Some(Identity { state, started }) => {
                !matches!(state, 'Z' | 'X' | 'x') && self.started.is_none_or(|s| s == started)
            }
            None => false,
        }
    }

    /// Invokes `function` through the running app's control API.
    pub(crate) async fn invoke(&self, function: &str, payload: Vec<u8>) -> anyhow::Result<Invoked> {
        let path = format!("/2015-03-31/functions/{function}/invocations");
        let (status, headers, body) = self.request(http::Method::POST, &path, payload).await?;
        let function_error = headers.contains_key("x-amz-function-error");
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            anyhow::bail!("the running app answered {status}: {message}");
        }
        Ok(Invoked {
            payload: body,
            function_error,
        })
    }

    /// The running app's functions and their instances.
    pub(crate) async fn functions(&self) -> anyhow::Result<Vec<FunctionStatus>> {
        let (status, _, body) = self
            .request(http::Method::GET, "/functions", Vec::new())
            .await?;
        anyhow::ensure!(status.is_success(), "the running app answered {status}");
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        let functions = value["functions"].as_array().cloned().unwrap_or_default();
        Ok(functions
            .iter()
            .map(|f| FunctionStatus {
                name: f["name"].as_str().unwrap_or_default().to_owned(),
                instances: f["instances"].as_u64().unwrap_or(0),
                busy: f["busy"].as_u64().unwrap_or(0),
                warm: f["warm"]
                    .as_object()
                    .map(|warm| {
                        warm.iter()
                            .map(|(reason, n)| (reason.clone(), n.as_u64().unwrap_or(0)))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect())
    }

    pub(crate) async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(http::StatusCode, http::HeaderMap, Bytes)> {
        self.request_with(method, path, body, &[]).await
    }

    /// A request to the control API with extra headers.
    pub(crate) async fn request_with(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<(http::StatusCode, http::HeaderMap, Bytes)> {
        let stream = tokio::net::TcpStream::connect(self.admin)
            .await
            .with_context(|| format!("connecting to the running app at {}", self.admin))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.admin.to_string())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(
                http::header::CONTENT_TYPE,
                headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                    .map_or("application/json", |(_, value)| value.as_str()),
            );
        let req = headers
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-type"))
            .fold(req, |req, (name, value)| req.header(*name, value.as_str()))
            .body(Full::new(Bytes::from(body)))?;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, headers, body))
    }
}

/// A process's state letter and start time, from `/proc/<pid>/stat` (proc(5)).
pub(crate) struct Identity {
    pub(crate) state: char,
    pub(crate) started: u64,
}

/// The identity of process `pid`; `None` when it does not exist.
pub(crate) fn process_identity(pid: u32) -> Option<Identity> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses;
    // the fields after the last `)` are plain: state is field 3, starttime field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let started = fields.nth(18)?.parse().ok()?;
    Some(Identity { state, started })
}
