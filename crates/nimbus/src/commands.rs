//! One module per subcommand.

pub(crate) mod cost;
pub(crate) mod deploy;
pub(crate) mod dev;
pub(crate) mod invocations;
pub(crate) mod invoke;
pub(crate) mod logs;
pub(crate) mod resources;
pub(crate) mod runtimes;
pub(crate) mod secret;
pub(crate) mod server;
pub(crate) mod stream;
pub(crate) mod table;
pub(crate) mod top;
pub(crate) mod trace;
pub(crate) mod up;
pub(crate) mod validate;
pub(crate) mod workflow;

use std::path::Path;

use anyhow::Context as _;

/// Opens the app's store for reading, for the commands that show what `nimbus up` kept.
pub(crate) fn open_store(dir: &Path) -> anyhow::Result<nimbus_store::Store> {
    let state_dir = dir.join(".nimbus");
    nimbus_store::Store::open_read_only(&state_dir)
        .with_context(|| format!("opening the records of {}", dir.display()))
}
