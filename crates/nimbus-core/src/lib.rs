//! The vocabulary of nimbus: functions, runtimes, invocations, outcomes, faults, the
//! manifest schema, the `Executor` trait and the `Services` trait functions reach
//! queues, topics, buckets and KV through.
//!
//! This crate does no IO: it has no tokio, hyper or wasmtime, reads no files and no
//! environment. Callers hand it text and values; it hands back validated types.
#![warn(missing_docs)]

pub mod deploys;
pub mod durable_objects;
pub mod events;
pub mod function;
pub mod invocation;
pub mod kv;
pub mod manifest;
pub mod policy;
pub mod prewarm;
pub mod queues;
pub mod schedule;
pub mod services;
pub mod streams;
pub mod tables;
pub mod time;
pub mod websocket;
pub mod worker;
pub mod workflow;

/// The AWS account id in the ARNs, events and `${aws:accountId}` nimbus fills in: the one
/// AWS's own documentation uses, since nimbus has no account.
pub const ACCOUNT_ID: &str = "123456789012";

/// The scheme and host of the queue URLs the manifest's `Ref` of a queue, `Fn::GetAtt
/// [Q, QueueUrl]` and `${construct:q.queueUrl}` give. The gateway's address is known only
/// when an app is served, so the launcher puts it in their place in each function's
/// environment: `http://sqs.nimbus.internal/123456789012/jobs` becomes
/// `http://127.0.0.1:3000/123456789012/jobs`, the URL the AWS endpoint answers at.
pub const QUEUE_URL_HOST: &str = "http://sqs.nimbus.internal";

/// The URL of queue `name`, with [`QUEUE_URL_HOST`] for the gateway.
pub fn queue_url(name: &str) -> String {
    format!("{QUEUE_URL_HOST}/{ACCOUNT_ID}/{name}")
}

pub use function::{
    ApiKind, FunctionSpec, HttpMethod, HttpRoute, MAX_INSTANCE_CONCURRENCY, Runtime,
};
pub use invocation::{
    BoxFuture, Executor, ExecutorStats, Fault, Invocation, InvocationReport, InvokeError, LogLine,
    LogSink, LogStream, Outcome, SocketFrame, SocketSink,
};
