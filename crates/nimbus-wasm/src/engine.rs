//! The shared wasmtime engine: configuration, the epoch ticker, the linker, and loading
//! components through the on-disk compilation cache.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::host::Host;

/// How often the engine's epoch advances. Running guests yield to the async runtime at
/// every tick, so this is also the granularity of timeouts and the longest a looping
/// guest holds a worker thread.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The first bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// The version field of a component (layer 1), after the magic.
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
/// The version field of a core module.
const MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// The export a wasi:http component has; any 0.2.x patch version.
const HTTP_EXPORT_PREFIX: &str = "wasi:http/incoming-handler@0.2.";
/// The export a nimbus-world component has: any 0.2.x version, or 0.1.x for guests
/// built before the world imported services (the handler's shape is the same).
const NIMBUS_EXPORT_PREFIXES: [&str; 2] = [
    "nimbus:function/handler@0.2.",
    "nimbus:function/handler@0.1.",
];

/// What a component must export, for error messages.
const EXPECTED_EXPORTS: &str = "expected a WebAssembly component exporting wasi:http/incoming-handler@0.2 or nimbus:function/handler@0.2";

/// The one wasmtime engine of a process, shared by every wasm function.
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<Host>,
    /// One permit per slot of the pooling allocator, so a burst waits for a slot instead
    /// of failing to instantiate.
    pub(crate) slots: Arc<Semaphore>,
    cache_dir: PathBuf,
    /// Components already loaded in this process, by content hash: functions sharing
    /// one `.wasm` share its compiled code.
    loaded: Mutex<HashMap<String, Component>>,
    stop_ticker: Arc<AtomicBool>,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct WasmEngineConfig {
    /// Where compiled components are kept between runs (`<app>/.nimbus/wasm-cache`).
    pub cache_dir: PathBuf,
    /// How many instances may be alive at once across all functions; further
    /// invocations wait for one to finish.
    pub max_instances: u32,
}

/// Which interface a component exports, which decides how events reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `wasi:http/incoming-handler@0.2`: API Gateway events become HTTP requests.
    Http,
    /// `nimbus:function/handler@0.2` (or 0.1): any event, as JSON text.
    Nimbus,
}

/// A component ready to be instantiated: compiled for this engine and of a known world.
#[derive(Clone)]
pub struct WasmComponent {
    pub(crate) component: Component,
    /// The world it exports.
    pub world: World,
    /// Whether it was compiled now rather than loaded from the cache.
    pub compiled_now: bool,
}

/// A handler that is not a component nimbus can invoke; the message says what was
/// expected and how to get there.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    /// What is wrong and what to do.
    pub message: String,
}

/// Bytes of each linear memory reset with `memset` rather than `madvise` when an instance
/// is freed; a small handler touches less than this.
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;

/// The same for each table.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Decommits gathered into one flush.
const DECOMMIT_BATCH: usize = 16;

impl WasmEngine {
    /// Configures the engine and starts its epoch ticker thread.
    pub fn new(cfg: &WasmEngineConfig) -> Result<WasmEngine, ComponentError> {
        let mut pooling = PoolingAllocationConfig::default();
        let n = cfg.max_instances.max(1);
        // A component instantiates several core instances (the module plus adapter
        // shims); JavaScript and Python components have more tables than Rust ones.
        pooling
            .total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_core_instances_per_component(32)
            // Every invocation frees its instance, so resetting a slot is on the request
            // path. By default that is an `madvise` per memory and table, which costs more
            // than the invocation of a small handler; instead zero what was touched with
            // `memset` (the pages stay resident for the next instance), finding it with the
            // PAGEMAP_SCAN ioctl where the kernel has it (Linux 6.7+), and batch the
            // `madvise`s still needed beyond these sizes.
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(KEEP_RESIDENT_TABLE)
            .pagemap_scan(Enabled::Auto)
            .decommit_batch_size(DECOMMIT_BATCH);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config).map_err(|e| ComponentError {
            message: format!("configuring the wasm engine: {e}"),
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| {
                crate::world::Function::add_to_linker::<Host, HasSelf<Host>>(&mut linker, |host| {
                    host
                })
            })
            .map_err(|e| ComponentError {
                message: format!("linking WASI and nimbus's services into the wasm engine: {e}"),
            })?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("nimbus-wasm-epoch".to_owned())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| ComponentError {
                message: format!("starting the wasm epoch ticker: {e}"),
            })?;

        Ok(WasmEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                slots: Arc::new(Semaphore::new(n as usize)),
                cache_dir: cfg.cache_dir.clone(),
                loaded: Mutex::new(HashMap::new()),
                stop_ticker,
            }),
        })
    }

    /// Reads the component at `path`, checks it is a component of a world nimbus
    /// invokes, and compiles it (or loads it from the cache).
    pub fn load(&self, path: &Path) -> Result<WasmComponent, ComponentError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ComponentError {
                    message: format!(
                        "component not found: {}; build it first (for Rust: cargo build --release --target wasm32-wasip2)",
                        path.display()
                    ),
                });
            }
            Err(e) => {
                return Err(ComponentError {
                    message: format!("reading {}: {e}", path.display()),
                });
            }
        };
        check_header(&bytes, path)?;
        let (component, compiled_now) = self.compile_cached(&bytes, path)?;
        let world = world_of(&self.inner.engine, &component)?;
        // Linking now turns a missing import into an error at `up`, not at a request.
        if let Err(e) = self.inner.linker.instantiate_pre(&component) {
            return Err(ComponentError {
                message: format!(
                    "the component imports something nimbus does not provide ({e}); nimbus provides wasi:cli, wasi:clocks, wasi:random, wasi:io, wasi:filesystem (no preopens), wasi:sockets (denied) and wasi:http 0.2, and nimbus:function 0.2 (queue, topic, bucket, kv)"
                ),
            });
        }
        Ok(WasmComponent {
            component,
            world,
            compiled_now,
        })
    }

    fn compile_cached(
        &self,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(Component, bool), ComponentError> {
        let engine = &self.inner.engine;
        // The key covers the component and everything about the engine that compiled
        // code depends on (wasmtime's version, its settings, the host CPU's features).
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut compat);
        let digest = Sha256::digest(bytes);
        let key = format!(
            "{}-{:016x}",
            digest
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            compat.finish()
        );
        if let Some(component) = self.loaded().get(&key) {
            return Ok((component.clone(), false));
        }
        let cached = self.inner.cache_dir.join(format!("{key}.cwasm"));
        if cached.is_file() {
            // SAFETY: the cache folder holds only what `Engine::precompile_component`
            // wrote below under a key naming this engine's configuration; it is trusted
            // like the nimbus binary itself (ARCHITECTURE.md, nimbus-wasm invariant).
            match unsafe { Component::deserialize_file(engine, &cached) } {
                Ok(component) => {
                    self.loaded().insert(key, component.clone());
                    return Ok((component, false));
                }
                Err(e) => tracing::warn!(
                    "ignoring unusable compiled component {}: {e}",
                    cached.display()
                ),
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| ComponentError {
                message: format!(
                    "{} is not a valid WebAssembly component: {e}",
                    path.display()
                ),
            })?;
        let component = match write_cache(&self.inner.cache_dir, &cached, &compiled) {
            // SAFETY: as above; the file was just written from `precompile_component`.
            Ok(()) => unsafe { Component::deserialize_file(engine, &cached) },
            Err(e) => {
                tracing::warn!(
                    "cannot cache compiled component in {}: {e}",
                    self.inner.cache_dir.display()
                );
                // SAFETY: the bytes come straight from `precompile_component` of this engine.
                unsafe { Component::deserialize(engine, &compiled) }
            }
        }
        .map_err(|e| ComponentError {
            message: format!("loading compiled {}: {e}", path.display()),
        })?;
        self.loaded().insert(key, component.clone());
        Ok((component, true))
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        // A panic while holding this lock leaves the map valid; keep going.
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Tells a core module and other files apart from a component before compiling.
fn check_header(bytes: &[u8], path: &Path) -> Result<(), ComponentError> {
    let expected = EXPECTED_EXPORTS;
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(ComponentError {
            message: format!("{expected}; {} is not WebAssembly at all", path.display()),
        });
    }
    let version = [bytes[4], bytes[5], bytes[6], bytes[7]];
    if version == MODULE_VERSION {
        return Err(ComponentError {
            message: format!(
                "{expected}; {} is a core module: build with --target wasm32-wasip2 or wrap it with `wasm-tools component new`",
                path.display()
            ),
        });
    }
    if version != COMPONENT_VERSION {
        return Err(ComponentError {
            message: format!(
                "{expected}; {} has an unknown WebAssembly version {version:02x?}",
                path.display()
            ),
        });
    }
    Ok(())
}

fn world_of(engine: &Engine, component: &Component) -> Result<World, ComponentError> {
    let ty = component.component_type();
    let names: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    if names.iter().any(|n| n.starts_with(HTTP_EXPORT_PREFIX)) {
        return Ok(World::Http);
    }
    if nimbus_handler_export(engine, component).is_some() {
        return Ok(World::Nimbus);
    }
    let exports = if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    };
    Err(ComponentError {
        message: format!("{EXPECTED_EXPORTS}; this component exports {exports}"),
    })
}

/// The full name of the handler interface a nimbus-world component exports
/// (`nimbus:function/handler@0.2.0`), of any version this host invokes.
pub(crate) fn nimbus_handler_export(engine: &Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    ty.exports(engine)
        .map(|(name, _)| name)
        .find(|name| NIMBUS_EXPORT_PREFIXES.iter().any(|p| name.starts_with(p)))
        .map(str::to_owned)
}

/// Writes through a temporary file, so a concurrent reader never sees half a file.
fn write_cache(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
