//! The flags of an HTTP listener that faces clients (`nimbus up`'s gateway, `nimbus
//! server`): the address, TLS, connection limits and deadlines.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use nimbus_server::{ListenerConfig, Tls};

use crate::duration;

/// Where a listener listens, whether it speaks TLS, how many connections it holds open at
/// most, and how long a slow client may hold one.
#[derive(clap::Args, Clone)]
pub(crate) struct ListenerArgs {
    /// Address to listen on (0.0.0.0 for every interface); anything but loopback should
    /// have TLS.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: IpAddr,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a development certificate for localhost, 127.0.0.1, ::1 and
    /// --host, signed by a certificate authority made once and kept in .nimbus/tls-dev/
    /// (give ca.pem to clients).
    #[arg(long, conflicts_with = "tls_cert")]
    tls_dev: bool,
    /// Close a connection whose request head takes longer than this to arrive, or that
    /// has no request in flight this long (HTTP/1.1 keep-alive and HTTP/2 alike).
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    header_timeout: Duration,
    /// Answer 400 and close a connection whose request body has not arrived this long
    /// after its head, plus a second for every KB received (1 KB/s at least).
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    body_timeout: Duration,
    /// At most this many open connections per listener; beyond it, new ones wait and
    /// idle ones are closed to make room. Default: 10000, or a quarter of the open-files
    /// limit (ulimit -n) when that is lower.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
}

/// A listener's settings, with what the banner says of its TLS.
pub(crate) struct Listener {
    pub(crate) config: ListenerConfig,
    /// `https` or `http`.
    pub(crate) scheme: &'static str,
    /// The banner's line about the certificate, with TLS.
    pub(crate) tls_line: Option<String>,
}

impl ListenerArgs {
    /// The listener settings the flags give; `state_dir` keeps `--tls-dev`'s certificates.
    pub(crate) fn listener(&self, state_dir: &Path) -> anyhow::Result<Listener> {
        let (tls, tls_line) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = load(cert, key)?;
                let line = format!("tls: {} (SHA-256 {})", cert.display(), tls.fingerprint());
                (Some(tls), Some(line))
            }
            _ if self.tls_dev => {
                let (tls, line) = dev_tls(&state_dir.join("tls-dev"), &self.dev_names())?;
                (Some(tls), Some(line))
            }
            _ => (None, None),
        };
        if tls.is_none() && !self.host.is_loopback() {
            tracing::warn!(
                "listening on {} without TLS: anyone on the network can read and change what \
                 clients send and receive; give it --tls-cert and --tls-key (or put a proxy \
                 that speaks TLS in front)",
                self.host
            );
        }
        Ok(Listener {
            scheme: if tls.is_some() { "https" } else { "http" },
            config: ListenerConfig {
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
                max_connections: self
                    .max_connections
                    .map_or_else(default_max_connections, |n| n as usize),
                tls,
            },
            tls_line,
        })
    }

    /// The names `--tls-dev`'s certificate is for.
    fn dev_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        if !self.host.is_loopback() && !self.host.is_unspecified() {
            names.push(self.host.to_string());
        }
        names
    }
}

/// TLS from `--tls-cert` and `--tls-key`.
fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
    let cert_pem =
        std::fs::read(cert).with_context(|| format!("reading --tls-cert {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading --tls-key {}", key.display()))?;
    Tls::from_pem(&cert_pem, &key_pem).with_context(|| {
        format!(
            "loading the certificate {} and key {}",
            cert.display(),
            key.display()
        )
    })
}

/// `--tls-dev`: the certificate in `dir` when it is for `names`, else a new one signed by
/// the authority kept there (made the first time), so clients keep trusting `ca.pem`.
fn dev_tls(dir: &Path, names: &[String]) -> anyhow::Result<(Tls, String)> {
    let file = |name: &str| dir.join(name);
    let read = |name: &str| std::fs::read_to_string(file(name)).ok();
    let wanted = names.join("\n");
    let cached = match (read("names"), read("cert.pem"), read("key.pem")) {
        (Some(cached_names), Some(cert), Some(key)) if cached_names == wanted => {
            Tls::from_pem(cert.as_bytes(), key.as_bytes()).ok()
        }
        _ => None,
    };
    let tls = match cached {
        Some(tls) => tls,
        None => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let ca = match (read("ca.pem"), read("ca-key.pem")) {
                (Some(ca), Some(key)) => Some((ca, key)),
                _ => None,
            };
            let dev = nimbus_server::dev_certificate(
                names,
                ca.as_ref().map(|(ca, key)| (ca.as_str(), key.as_str())),
            )
            .context("making the development certificate")?;
            write(&file("ca.pem"), &dev.ca_pem, 0o644)?;
            write(&file("ca-key.pem"), &dev.ca_key_pem, 0o600)?;
            write(&file("cert.pem"), &dev.cert_pem, 0o644)?;
            write(&file("key.pem"), &dev.key_pem, 0o600)?;
            write(&file("names"), &wanted, 0o644)?;
            Tls::from_pem(dev.cert_pem.as_bytes(), dev.key_pem.as_bytes())?
        }
    };
    let ca_path = file("ca.pem");
    let ca_fingerprint = read("ca.pem")
        .and_then(|ca| nimbus_server::pem_fingerprint(ca.as_bytes()))
        .unwrap_or_default();
    let line = format!(
        "tls: development certificate for {}; clients trust {} (SHA-256 {ca_fingerprint})",
        names.join(", "),
        ca_path.display()
    );
    Ok((tls, line))
}

/// Writes `text` to `path` with `mode` (a key is readable by its owner only).
fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// [`nimbus_server::DEFAULT_MAX_CONNECTIONS`], or a quarter of the soft limit on open
/// files when that is lower: each connection holds a descriptor, and instances, the store
/// and the other listener need theirs.
fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given, which lives on this stack.
    let res = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let open_files = if res == 0 { limit.rlim_cur } else { 1024 };
    let quarter = usize::try_from(open_files / 4).unwrap_or(usize::MAX);
    quarter.clamp(64, nimbus_server::DEFAULT_MAX_CONNECTIONS)
}
