//! `nimbus credentials create|ls|revoke`: operators' AWS access keys for `nimbus server`,
//! each scoped to the apps of one (service, stage). SigV4 needs the secret itself to check
//! a signature, so secrets are sealed rather than hashed: in `STATE/operator/` with the
//! store's `Secrets` (XChaCha20-Poly1305 under a key file made mode 0600).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use nimbus_core::time::rfc3339_millis;
use nimbus_server::OperatorKey;
use nimbus_store::Secrets;

/// Make, list and revoke AWS access keys for operators of `nimbus server`: an AWS SDK or
/// the aws CLI signing with one reaches the buckets, queues, topics, tables and functions
/// of the (service, stage) it is for, at the server's gateway (`--endpoint-url`), as the
/// version `live` points at.
#[derive(clap::Args)]
pub(crate) struct CredentialsCommand {
    #[command(subcommand)]
    action: CredentialsAction,
    /// The server's state folder.
    #[arg(long, global = true, default_value = ".nimbus-server")]
    state: PathBuf,
}

#[derive(clap::Subcommand)]
enum CredentialsAction {
    /// Make an access key for one (service, stage) and print it with its secret, which is
    /// shown only this once.
    Create {
        /// The service whose apps the key reaches.
        #[arg(long)]
        service: String,
        /// The stage whose apps the key reaches.
        #[arg(long)]
        stage: String,
    },
    /// List the access key ids with their (service, stage), never the secrets.
    Ls,
    /// Revoke an access key: a running server refuses it from the next request on.
    Revoke { access_key_id: String },
}

impl CredentialsCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let dir = dir(&self.state);
        let mut out = std::io::stdout().lock();
        match self.action {
            CredentialsAction::Create { service, stage } => {
                for name in [&service, &stage] {
                    nimbus_server::host::check_name(name).map_err(|e| anyhow::anyhow!(e))?;
                }
                let secrets = Secrets::open(&dir)
                    .with_context(|| format!("opening the credentials in {}", dir.display()))?;
                let hex = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
                let access_key_id = format!("NIMBUSOP{}", &hex[..12]);
                let secret = format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                );
                let value = serde_json::json!({
                    "version": 1,
                    "secret": secret,
                    "service": service,
                    "stage": stage,
                });
                secrets.set(&access_key_id, &value.to_string())?;
                writeln!(out, "AWS_ACCESS_KEY_ID={access_key_id}")?;
                writeln!(out, "AWS_SECRET_ACCESS_KEY={secret}")?;
            }
            CredentialsAction::Ls => {
                let Some(secrets) = Secrets::open_read_only(&dir)? else {
                    return Ok(ExitCode::SUCCESS);
                };
                for info in secrets.list()? {
                    let scope = match lookup_in(&secrets, &info.name) {
                        Some(key) => format!("{} ({})", key.service, key.stage),
                        None => "(unreadable)".to_owned(),
                    };
                    writeln!(
                        out,
                        "{}  {scope}  created {}",
                        info.name,
                        rfc3339_millis(info.updated)
                    )?;
                }
            }
            CredentialsAction::Revoke { access_key_id } => {
                let removed = match Secrets::open_read_only(&dir)? {
                    Some(_) => Secrets::open(&dir)?.remove(&access_key_id)?,
                    None => false,
                };
                if !removed {
                    anyhow::bail!(
                        "no access key {access_key_id:?}; `nimbus credentials ls --state {}` lists them",
                        self.state.display()
                    );
                }
                writeln!(out, "revoked {access_key_id}")?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Where the credentials of the server with state folder `state` are kept.
pub(crate) fn dir(state: &Path) -> PathBuf {
    state.join("operator")
}

/// The operator's key `access_key_id` in `dir`, read now (so a revocation applies to the
/// next request).
pub(crate) fn lookup(dir: &Path, access_key_id: &str) -> Option<OperatorKey> {
    // Function keys and malformed ids are not looked up at all.
    if !access_key_id.starts_with("NIMBUSOP")
        || nimbus_store::check_secret_name(access_key_id).is_err()
    {
        return None;
    }
    let secrets = Secrets::open_read_only(dir).ok()??;
    lookup_in(&secrets, access_key_id)
}

fn lookup_in(secrets: &Secrets, access_key_id: &str) -> Option<OperatorKey> {
    let value = secrets.get(access_key_id).ok()??;
    let value: serde_json::Value = serde_json::from_str(&value).ok()?;
    Some(OperatorKey {
        secret: value["secret"].as_str()?.to_owned(),
        service: value["service"].as_str()?.to_owned(),
        stage: value["stage"].as_str()?.to_owned(),
    })
}
