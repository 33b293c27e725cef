//! What a store holds for one invocation: WASI state, the outbound HTTP policy, the
//! memory limiter, the services context and the pipes that turn guest output into log
//! lines.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nimbus_core::{LogLine, LogSink, LogStream};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView, p2::bindings::http::types::ErrorCode,
};

use crate::services::ServiceContext;

/// The longest line kept from guest output; longer lines are split.
const MAX_LINE: usize = 8 * 1024;

/// The data of one invocation's store.
pub(crate) struct Host {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: OutboundPolicy,
    pub(crate) limiter: MemoryLimiter,
    /// The queues, topics, buckets and KV behind the `nimbus:function` imports.
    pub(crate) services: ServiceContext,
}

/// Lets outgoing HTTP requests through only to the function's `allowedOutboundHosts`.
pub(crate) struct OutboundPolicy {
    pub(crate) allowed: Arc<[String]>,
    pub(crate) function: Arc<str>,
    pub(crate) request_id: Arc<str>,
    pub(crate) log_sink: Arc<dyn LogSink>,
}

/// Denies memory growth beyond the function's `memorySize` and remembers that it did.
pub(crate) struct MemoryLimiter {
    pub(crate) limit_bytes: usize,
    pub(crate) peak_bytes: usize,
    pub(crate) denied: bool,
}

/// A guest's stdout or stderr: complete lines go to the log sink as they are written,
/// tagged with the invocation's request id.
#[derive(Clone)]
pub(crate) struct LogPipe {
    inner: Arc<Mutex<PipeState>>,
}

struct PipeState {
    function: Arc<str>,
    request_id: Arc<str>,
    stream: LogStream,
    sink: Arc<dyn LogSink>,
    partial: Vec<u8>,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl OutboundPolicy {
    /// Whether `authority` (`host` or `host:port`) is listed. A listed bare host allows
    /// every port; `*` allows everything.
    fn allows(&self, authority: &str, default_port: u16) -> bool {
        let authority = authority.to_ascii_lowercase();
        // `[::1]:8080` and `host:8080` have a port; a bare IPv6 address has none.
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port))
                if (!host.contains(':') || host.ends_with(']'))
                    && let Ok(port) = port.parse::<u16>() =>
            {
                (host.to_owned(), port)
            }
            _ => (authority.clone(), default_port),
        };
        self.allowed.iter().any(|allowed| {
            allowed == "*"
                || *allowed == host
                || *allowed == format!("{host}:{port}")
                || allowed
                    .strip_prefix("*.")
                    .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")))
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        let uri = request.uri();
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        if !self.allows(&authority, default_port) {
            let text = format!(
                "outbound HTTP request to {authority} denied: add it to the function's allowedOutboundHosts"
            );
            self.log_sink.log(LogLine {
                function: &self.function,
                request_id: Some(&self.request_id),
                stream: LogStream::Stderr,
                text: &text,
            });
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        _ = fut;
        Box::new(async move {
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(http_body_util::BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }

    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        tracing::debug!("outbound connect error: {err}");
        ErrorCode::ConnectionRefused
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Growth fails inside the guest (memory.grow returns -1), as the spec has it; the
        // guest usually traps right after, and the executor reports OutOfMemory then.
        if desired > self.limit_bytes {
            self.denied = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables count against no limit of Lambda's; the pool's own bound applies.
        Ok(desired <= 1_000_000)
    }
}

impl LogPipe {
    pub(crate) fn new(
        function: Arc<str>,
        request_id: Arc<str>,
        stream: LogStream,
        sink: Arc<dyn LogSink>,
    ) -> LogPipe {
        LogPipe {
            inner: Arc::new(Mutex::new(PipeState {
                function,
                request_id,
                stream,
                sink,
                partial: Vec::new(),
            })),
        }
    }

    /// Logs what is left after the last newline.
    pub(crate) fn finish(&self) {
        let mut state = self.lock();
        if !state.partial.is_empty() {
            let line = std::mem::take(&mut state.partial);
            state.emit(&line);
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut state = self.lock();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            match chunk.strip_suffix(b"\n") {
                Some(end) => {
                    let mut line = std::mem::take(&mut state.partial);
                    line.extend_from_slice(end);
                    state.emit(&line);
                }
                None => {
                    state.partial.extend_from_slice(chunk);
                    if state.partial.len() >= MAX_LINE {
                        let line = std::mem::take(&mut state.partial);
                        state.emit(&line);
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PipeState {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.sink.log(LogLine {
            function: &self.function,
            request_id: Some(&self.request_id),
            stream: self.stream,
            text,
        });
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoLog;
    impl LogSink for NoLog {
        fn log(&self, _line: LogLine<'_>) {}
    }

    fn policy(allowed: &[&str]) -> OutboundPolicy {
        OutboundPolicy {
            allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
            function: "f".into(),
            request_id: "r".into(),
            log_sink: Arc::new(NoLog),
        }
    }

    #[test]
    fn outbound_hosts_match_host_and_port() {
        let p = policy(&["api.example.com", "127.0.0.1:8080", "*.internal"]);
        assert!(p.allows("api.example.com", 443));
        assert!(p.allows("API.example.com:8443", 443));
        assert!(p.allows("127.0.0.1:8080", 80));
        assert!(!p.allows("127.0.0.1:8081", 80));
        assert!(!p.allows("127.0.0.1", 80));
        assert!(p.allows("db.internal", 80));
        assert!(!p.allows("internal", 80));
        assert!(!p.allows("example.com", 443));
        assert!(!policy(&[]).allows("api.example.com", 443));
    }
}
