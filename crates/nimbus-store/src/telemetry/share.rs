//! Telemetry a cluster's nodes share, so `nimbus invocations`, `nimbus logs` and traces on
//! any node show what every node ran: each record a node stores is also handed to a
//! [`TelemetryShare`] (cluster mode's engine), and what other nodes shared is stored with
//! [`crate::Store::ingest`].

use super::{InvocationRecord, LogRecord, SpanRecord};

/// One telemetry record as nodes exchange it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SharedTelemetry {
    /// An invocation record.
    Invocation(InvocationRecord),
    /// A line of output.
    Log(LogRecord),
    /// A span.
    Span(SpanRecord),
    /// More dropped output lines of an invocation already shared.
    DroppedLines {
        /// The invocation.
        request_id: String,
        /// How many more.
        n: u64,
    },
}

/// Where a node's telemetry goes besides its own store. `publish` must not wait: a record
/// it cannot pass on is dropped there (the node's own store still has it).
pub trait TelemetryShare: Send + Sync {
    /// Passes a record the node just stored on to the other nodes.
    fn publish(&self, record: SharedTelemetry);
}
