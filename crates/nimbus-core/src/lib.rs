//! The vocabulary of nimbus: functions, runtimes, invocations, outcomes, faults, the
//! manifest schema, the `Executor` trait and the `Services` trait functions reach
//! queues, topics, buckets and KV through.
//!
//! This crate does no IO: it has no tokio, hyper or wasmtime, reads no files and no
//! environment. Callers hand it text and values; it hands back validated types.
#![warn(missing_docs)]

pub mod events;
pub mod function;
pub mod invocation;
pub mod manifest;
pub mod policy;
pub mod schedule;
pub mod services;
pub mod tables;
pub mod time;

/// The AWS account id in the ARNs, events and `${aws:accountId}` nimbus fills in: the one
/// AWS's own documentation uses, since nimbus has no account.
pub const ACCOUNT_ID: &str = "123456789012";

pub use function::{ApiKind, FunctionSpec, HttpMethod, HttpRoute, Runtime};
pub use invocation::{
    BoxFuture, Executor, ExecutorStats, Fault, Invocation, InvocationReport, InvokeError, LogLine,
    LogSink, LogStream, Outcome,
};
