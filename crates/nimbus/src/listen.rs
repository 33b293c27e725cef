//! The flags of an HTTP listener that faces clients (`nimbus up`'s gateway, `nimbus
//! server`): connection limits and deadlines.

use std::time::Duration;

use nimbus_server::ListenerConfig;

use crate::duration;

/// How many connections a listener holds open at most, and how long a slow client may
/// hold one.
#[derive(clap::Args, Clone)]
pub(crate) struct ListenerArgs {
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

impl ListenerArgs {
    /// The listener settings the flags give.
    pub(crate) fn config(&self) -> ListenerConfig {
        ListenerConfig {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            max_connections: self
                .max_connections
                .map_or_else(default_max_connections, |n| n as usize),
        }
    }
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
