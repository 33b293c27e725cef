//! `${secret:NAME}` values for the manifest, read from the app's store on first use.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use nimbus_core::manifest::SecretResolver;
use nimbus_store::Secrets;

/// Resolves `${secret:NAME}` from `<app>/.nimbus`, opening the store only when the manifest
/// names a secret (an app without secrets never touches it), and keeps the values it
/// handed out so executors can redact them from function output.
pub(crate) struct StoreSecrets {
    state_dir: PathBuf,
    /// The store, or why it could not be opened (that message, never a value).
    secrets: OnceLock<Result<Option<Secrets>, String>>,
    /// What was resolved, by name.
    resolved: Mutex<BTreeMap<String, String>>,
}

impl StoreSecrets {
    pub(crate) fn new(state_dir: PathBuf) -> StoreSecrets {
        StoreSecrets {
            state_dir,
            secrets: OnceLock::new(),
            resolved: Mutex::new(BTreeMap::new()),
        }
    }

    /// The values resolved so far, by name.
    pub(crate) fn resolved(&self) -> BTreeMap<String, String> {
        self.resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl SecretResolver for StoreSecrets {
    fn resolve(&self, name: &str) -> Result<Option<String>, String> {
        let secrets = self.secrets.get_or_init(|| {
            Secrets::open_read_only(&self.state_dir)
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
        });
        let secrets = match secrets {
            Ok(Some(secrets)) => secrets,
            Ok(None) => return Ok(None),
            Err(message) => return Err(message.clone()),
        };
        let value = secrets
            .get(name)
            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
        if let Some(value) = &value {
            self.resolved
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.to_owned(), value.clone());
        }
        Ok(value)
    }
}

/// Names the folder only: `Variables` derives `Debug`, and values must never be printed.
impl fmt::Debug for StoreSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSecrets")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}
