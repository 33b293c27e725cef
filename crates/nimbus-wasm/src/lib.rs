//! The executor for WebAssembly components: one shared wasmtime engine, each component
//! compiled once (and cached on disk), a fresh sandboxed instance per invocation.
//!
//! Two kinds of component are invoked: those exporting `wasi:http/incoming-handler@0.2`
//! (any toolchain's HTTP components), which get API Gateway events turned back into HTTP
//! requests, and those of the nimbus world (`nimbus:function/handler`, WIT in `wit/`),
//! which get any event as JSON. Either may import the nimbus world's services (queue,
//! topic, bucket, kv), which go to the `Services` it is given.
//!
//! This crate is the only one that knows wasmtime. It does not route HTTP, does not
//! limit concurrency beyond the engine's instance pool (the caller does), gives guests
//! no file system, and writes nothing but the compiled-component cache it is pointed at.

mod engine;
mod executor;
mod host;
mod proxy;
mod services;
mod world;

use std::sync::Arc;

use nimbus_core::LogSink;
use nimbus_core::services::Services;

pub use engine::{ComponentError, WasmComponent, WasmEngine, WasmEngineConfig, World};
pub use executor::WasmExecutor;

/// Settings shared by every wasm function of an app.
#[derive(Clone)]
pub struct WasmConfig {
    /// `service` from the manifest; part of the Lambda function name.
    pub service: String,
    /// The stage; part of the Lambda function name.
    pub stage: String,
    /// `AWS_REGION` given to functions.
    pub region: String,
    /// Receives every line guests write to stdout and stderr.
    pub log_sink: Arc<dyn LogSink>,
    /// What the `nimbus:function` imports reach: queues, topics, buckets and KV, checked
    /// against each function's grants.
    pub services: Arc<dyn Services>,
}
