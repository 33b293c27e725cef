//! `nimbus deploy`, `versions`, `promote`, `rollback` and `alias set`: the client side of
//! a `nimbus server`'s admin API.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::app::{self, Fetch, LoadOptions};

/// Which server, app and stage a command talks about.
#[derive(clap::Args)]
pub(crate) struct Target {
    /// The server's admin API, such as http://127.0.0.1:3001 (https:// when the server
    /// has TLS).
    #[arg(long = "to")]
    to: String,
    /// The certificate authority (PEM) an https:// server's certificate must chain to,
    /// such as a `nimbus server --tls-dev`'s `<state>/tls-dev/ca.pem` (default: the
    /// system's authorities).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// The stage (default: the manifest's, usually dev).
    #[arg(long)]
    stage: Option<String>,
    /// The region `${opt:region}` and `provider.region` resolve to (default: the
    /// manifest's, or us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// The admin token (default: the NIMBUS_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
}

/// Which app the version commands mean: named, or read from a folder's manifest.
#[derive(clap::Args)]
pub(crate) struct AppTarget {
    #[command(flatten)]
    target: Target,
    /// The service (default: the one named by the manifest in --dir).
    #[arg(long)]
    service: Option<String>,
    /// The app folder whose manifest names the service and default stage.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// Check an app, pack it and deploy it to a `nimbus server` as a new version.
///
/// `live` points at the new version once it serves; with `--canary 10%` it keeps the
/// current version and sends 10% of requests to the new one.
#[derive(clap::Args)]
pub(crate) struct DeployCommand {
    /// The app folder, holding nimbus.yaml or serverless.yml.
    #[arg(default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    target: Target,
    /// Send this share of `live`'s requests to the new version (1% to 99%).
    #[arg(long)]
    canary: Option<String>,
}

/// List the versions of an app's stage, when each was deployed and which aliases point at
/// it.
#[derive(clap::Args)]
pub(crate) struct VersionsCommand {
    #[command(flatten)]
    app: AppTarget,
}

/// Move `live` fully to its canary.
#[derive(clap::Args)]
pub(crate) struct PromoteCommand {
    #[command(flatten)]
    app: AppTarget,
}

/// Drop `live`'s canary, or point `live` back at the version it served before.
#[derive(clap::Args)]
pub(crate) struct RollbackCommand {
    #[command(flatten)]
    app: AppTarget,
}

/// Manage aliases of an app's stage.
#[derive(clap::Args)]
pub(crate) struct AliasCommand {
    #[command(subcommand)]
    action: AliasAction,
}

#[derive(clap::Subcommand)]
enum AliasAction {
    /// Point an alias at a version, or at two as `3=90,4=10` (version=weight).
    Set {
        name: String,
        version: String,
        #[command(flatten)]
        app: AppTarget,
    },
}

/// A connection to a server's admin API.
struct AdminClient {
    authority: String,
    token: String,
    /// For https://: the TLS client and the name the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl DeployCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let canary = match &self.canary {
            Some(text) => {
                Some(nimbus_server::host::parse_percent(text).map_err(|e| anyhow::anyhow!(e))?)
            }
            None => None,
        };
        if let Some(region) = &self.target.region {
            check_region(region)?;
        }
        let client = AdminClient::new(&self.target)?;
        // The same checks and diagnostics as `nimbus validate`, before anything is sent.
        let app = app::load(
            &self.dir,
            &LoadOptions {
                stage: self.target.stage.clone(),
                region: self.target.region.clone(),
                fetch: Fetch::ToolsOnly,
            },
        )?;
        let service = app.manifest.service.clone();
        let stage = app.manifest.stage.clone();
        let bundle = crate::bundle::pack(&app.dir)
            .with_context(|| format!("packing {}", app.dir.display()))?;
        drop(app);
        let mut path = format!("/v1/deployments?service={service}&stage={stage}");
        if let Some(percent) = canary {
            path.push_str(&format!("&canary={percent}"));
        }
        if let Some(region) = &self.target.region {
            path.push_str(&format!("&region={region}"));
        }
        let value = crate::runtime()?.block_on(client.call(http::Method::POST, &path, bundle))?;
        let number = value["deployed"].as_u64().unwrap_or(0);
        let mut out = std::io::stdout().lock();
        match canary {
            Some(percent) => writeln!(
                out,
                "deployed {service} ({stage}) version {number} as a {percent}% canary of live"
            )?,
            None => writeln!(out, "deployed {service} ({stage}) version {number}: live")?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl VersionsCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let (client, base) = self.app.resolve()?;
        let value = crate::runtime()?.block_on(client.call(
            http::Method::GET,
            &format!("{base}/versions"),
            Vec::new(),
        ))?;
        print_versions(&value)?;
        Ok(ExitCode::SUCCESS)
    }
}

impl PromoteCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let (client, base) = self.app.resolve()?;
        let value = crate::runtime()?.block_on(client.call(
            http::Method::POST,
            &format!("{base}/promote"),
            Vec::new(),
        ))?;
        print_live(&value)?;
        Ok(ExitCode::SUCCESS)
    }
}

impl RollbackCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let (client, base) = self.app.resolve()?;
        let value = crate::runtime()?.block_on(client.call(
            http::Method::POST,
            &format!("{base}/rollback"),
            Vec::new(),
        ))?;
        print_live(&value)?;
        Ok(ExitCode::SUCCESS)
    }
}

impl AliasCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let AliasAction::Set { name, version, app } = self.action;
        let targets = parse_targets(&version)?;
        let (client, base) = app.resolve()?;
        let body = serde_json::json!({ "targets": targets }).to_string();
        let value = crate::runtime()?.block_on(client.call(
            http::Method::PUT,
            &format!("{base}/aliases/{name}"),
            body.into_bytes(),
        ))?;
        let line = alias_line(&value, &name);
        writeln!(std::io::stdout().lock(), "{name} -> {line}")?;
        Ok(ExitCode::SUCCESS)
    }
}

impl AppTarget {
    /// The client and the admin API path of the app's stage.
    fn resolve(&self) -> anyhow::Result<(AdminClient, String)> {
        let client = AdminClient::new(&self.target)?;
        let (service, stage) = match (&self.service, &self.target.stage) {
            (Some(service), Some(stage)) => (service.clone(), stage.clone()),
            _ => {
                let app = load_quietly(
                    &self.dir,
                    self.target.stage.clone(),
                    self.target.region.clone(),
                )?;
                (
                    self.service.clone().unwrap_or(app.manifest.service),
                    app.manifest.stage,
                )
            }
        };
        Ok((client, format!("/v1/apps/{service}/{stage}")))
    }
}

/// Loads the app only for its service and stage names.
/// A region name as AWS spells them (`eu-west-1`): letters, digits and `-`.
fn check_region(region: &str) -> anyhow::Result<()> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        anyhow::bail!("--region {region:?} is not a region name such as eu-west-1");
    }
    Ok(())
}

fn load_quietly(
    dir: &Path,
    stage: Option<String>,
    region: Option<String>,
) -> anyhow::Result<app::App> {
    app::load(
        dir,
        &LoadOptions {
            stage,
            region,
            fetch: Fetch::ToolsOnly,
        },
    )
    .with_context(|| {
        format!(
            "reading the service name from {} (or pass --service and --stage)",
            dir.display()
        )
    })
}

impl AdminClient {
    fn new(target: &Target) -> anyhow::Result<AdminClient> {
        let token = match &target.token {
            Some(token) => token.clone(),
            None => std::env::var("NIMBUS_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .context("no admin token: pass --token or set NIMBUS_TOKEN")?,
        };
        let url = if target.to.contains("://") {
            target.to.clone()
        } else {
            format!("http://{}", target.to)
        };
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("{} is not a URL", target.to))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            other => anyhow::bail!(
                "the server's admin API speaks http:// or https://, not {}",
                other.unwrap_or("?")
            ),
        };
        let authority = uri
            .authority()
            .with_context(|| format!("{} names no host", target.to))?;
        let host = authority.host();
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{host}:{}", if https { 443 } else { 80 }),
        };
        let tls = if https {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .with_context(|| format!("{host} is not a host name for TLS"))?;
            Some((tls_connector(target.cacert.as_deref())?, name))
        } else {
            None
        };
        Ok(AdminClient {
            authority,
            token,
            tls,
        })
    }

    /// One admin call; a non-2xx answer is an error carrying the server's message and
    /// diagnostics.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<serde_json::Value> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to the server at {}", self.authority))?;
        let mut sender = match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .with_context(|| format!("TLS with the server at {}", self.authority))?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                sender
            }
            None => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                sender
            }
        };
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.authority.as_str())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .body(Full::new(Bytes::from(body)))?;
        let res = sender
            .send_request(req)
            .await
            .context("sending the request to the server")?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::json!({ "message": String::from_utf8_lossy(&body) }));
        if status.is_success() {
            return Ok(value);
        }
        if let Some(diagnostics) = value["diagnostics"].as_array() {
            for line in diagnostics {
                eprintln!("error: {}", line.as_str().unwrap_or_default());
            }
        }
        let text = value["message"].as_str().unwrap_or("no message");
        anyhow::bail!("the server answered {status}: {text}")
    }
}

/// A TLS client trusting the authorities in `cacert` (PEM), or the system's: the file
/// `SSL_CERT_FILE` names, or the distribution's bundle.
fn tls_connector(cacert: Option<&Path>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let path = match cacert {
        Some(path) => path.to_owned(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(
                [
                    "/etc/ssl/certs/ca-certificates.crt",
                    "/etc/pki/tls/certs/ca-bundle.crt",
                    "/etc/ssl/cert.pem",
                ]
                .map(PathBuf::from),
            )
            .find(|path| path.is_file())
            .context("no certificate authorities on this machine: pass --cacert FILE")?,
    };
    let pem = std::fs::read(&path)
        .with_context(|| format!("reading the certificate authority {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("reading a certificate of {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("a certificate of {} cannot be trusted", path.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    );
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS settings")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// `3` or `3=90,4=10` as (version, weight) targets.
fn parse_targets(text: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    text.split(',')
        .map(|part| {
            let (version, weight) = part.split_once('=').unwrap_or((part, "100"));
            let version: u64 = version
                .trim()
                .parse()
                .with_context(|| format!("{version:?} is not a version number"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("{weight:?} is not a weight"))?;
            Ok(serde_json::json!({ "version": version, "weight": weight }))
        })
        .collect()
}

/// `3` or `3 (90%), 4 (10%)`.
fn alias_line(value: &serde_json::Value, alias: &str) -> String {
    let targets = value["aliases"][alias]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let [only] = targets.as_slice() {
        return only["version"].to_string();
    }
    targets
        .iter()
        .map(|t| format!("{} ({}%)", t["version"], t["weight"]))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_live(value: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(
        std::io::stdout().lock(),
        "live -> {}",
        alias_line(value, "live")
    )?;
    Ok(())
}

fn print_versions(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "VERSION  DEPLOYED              ALIASES")?;
    for version in value["versions"].as_array().cloned().unwrap_or_default() {
        let aliases: Vec<String> = version["aliases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                let name = a["alias"].as_str().unwrap_or_default();
                match a["weight"].as_u64() {
                    Some(100) | None => name.to_owned(),
                    Some(weight) => format!("{name} ({weight}%)"),
                }
            })
            .collect();
        let created = version["created"].as_u64().unwrap_or(0);
        writeln!(
            out,
            "{:<8} {:<21} {}",
            version["version"],
            format_time(created),
            aliases.join(", ")
        )?;
    }
    Ok(())
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
fn format_time(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn targets_parse_with_default_weight() {
        let targets = parse_targets("3=90,4=10").expect("parses");
        assert_eq!(targets[1]["weight"], 10);
        assert_eq!(parse_targets("2").expect("parses")[0]["weight"], 100);
        assert!(parse_targets("x").is_err());
    }
}
