//! `nimbus secret set|ls|rm`: the app's secrets, encrypted in its state folder.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use nimbus_core::time::rfc3339_millis;
use nimbus_store::{SECRET_KEY_FILE, Secrets};

use crate::app::MANIFEST_NAMES;

/// Set, list and remove the app's secrets; functions get them as environment variables
/// through `${secret:NAME}` in the manifest's `environment`.
///
/// Values are encrypted in .nimbus/nimbus.db under a key in .nimbus/secrets.key: whoever can
/// read that key file can read the secrets.
#[derive(clap::Args)]
pub(crate) struct SecretCommand {
    #[command(subcommand)]
    action: SecretAction,
    /// The app folder.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum SecretAction {
    /// Set a secret to the value read from stdin (one trailing newline is dropped), so it
    /// never lands in shell history: `printf %s "$VALUE" | nimbus secret set NAME`.
    Set { name: String },
    /// List secrets: names and when each was set, never values.
    Ls,
    /// Remove a secret.
    Rm { name: String },
}

impl SecretCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let state_dir = app_state_dir(&self.dir)?;
        match self.action {
            SecretAction::Set { name } => set(&state_dir, &name),
            SecretAction::Ls => list(&state_dir),
            SecretAction::Rm { name } => remove(&state_dir, &name),
        }
    }
}

/// `<dir>/.nimbus`, once `dir` is known to be an app folder, so a secret is not set into
/// a folder no app reads.
fn app_state_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("opening app folder {}", dir.display()))?;
    if !MANIFEST_NAMES.iter().any(|name| dir.join(name).is_file()) {
        anyhow::bail!(
            "{} is not an app folder (no {}): pass the app's folder with --dir",
            dir.display(),
            MANIFEST_NAMES.join(", ")
        );
    }
    Ok(dir.join(".nimbus"))
}

fn set(state_dir: &Path, name: &str) -> anyhow::Result<ExitCode> {
    nimbus_store::check_secret_name(name)?;
    let mut stdin = std::io::stdin().lock();
    if stdin.is_terminal() {
        eprintln!(
            "enter the value of {name}, then Ctrl-D (it shows as you type; pipe it in to avoid that)"
        );
    }
    let mut bytes = Vec::new();
    stdin
        .read_to_end(&mut bytes)
        .context("reading the secret's value from stdin")?;
    let Ok(mut value) = String::from_utf8(bytes) else {
        anyhow::bail!(
            "the value on stdin is not UTF-8 text; environment variables hold text (encode binary values, e.g. with base64)"
        );
    };
    // `echo value |` and a typed line end in a newline that is not part of the value.
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        anyhow::bail!(
            "no value on stdin for secret {name}: pipe it in, as in `printf %s \"$VALUE\" | nimbus secret set {name}`"
        );
    }
    let secrets = Secrets::open(state_dir)
        .with_context(|| format!("opening the secrets in {}", state_dir.display()))?;
    secrets
        .set(name, &value)
        .with_context(|| format!("setting secret {name}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "set secret {name} (encrypted with the key in .nimbus/{SECRET_KEY_FILE}); a running `nimbus up` sees it after a restart"
    )?;
    Ok(ExitCode::SUCCESS)
}

fn list(state_dir: &Path) -> anyhow::Result<ExitCode> {
    let infos = match Secrets::open_read_only(state_dir)
        .with_context(|| format!("opening the secrets in {}", state_dir.display()))?
    {
        Some(secrets) => secrets.list()?,
        None => Vec::new(),
    };
    if infos.is_empty() {
        eprintln!("no secrets; `nimbus secret set NAME` sets one");
        return Ok(ExitCode::SUCCESS);
    }
    let width = infos
        .iter()
        .map(|info| info.name.len())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<width$}  UPDATED", "NAME")?;
    for info in &infos {
        writeln!(
            out,
            "{:<width$}  {}",
            info.name,
            rfc3339_millis(info.updated)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(state_dir: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let removed = match Secrets::open_read_only(state_dir)
        .with_context(|| format!("opening the secrets in {}", state_dir.display()))?
    {
        // Open for writing only when there is something to remove.
        Some(_) => Secrets::open(state_dir)?.remove(name)?,
        None => false,
    };
    if !removed {
        anyhow::bail!("no secret named {name}; `nimbus secret ls` lists them");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "removed secret {name}")?;
    Ok(ExitCode::SUCCESS)
}
