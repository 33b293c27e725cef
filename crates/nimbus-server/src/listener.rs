//! The accept loop of every HTTP listener and the limits that keep slow or idle clients
//! from taking it over: a cap on open connections (idle ones make room for new ones at the
//! cap), a header-read deadline, a body-read deadline with a minimum rate, an idle deadline
//! for HTTP/1.1 and HTTP/2 alike, a send deadline for clients that stop reading; request
//! heads with a bare LF refused; graceful shutdown; and HTTP/2 without TLS for clients that
//! speak it with prior knowledge (h2c): the AWS SDK for JavaScript v3's Kinesis client
//! does, by default, against an `http://` endpoint.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower_service::Service as _;

use crate::Shutdown;
use crate::tls::Tls;

/// How long a client may take to send a request's head (request line and headers), and
/// how long a kept-alive connection may sit idle between requests: hyper arms the same
/// timer while it waits for the next head. Node's HTTP server closes idle connections after
/// 5 s and nginx gives a head 60 s; a slow-header client ("slowloris") holds a connection
/// at most this long.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request body may take before it must keep up [`BODY_MIN_RATE`]: Apache's
/// mod_reqtimeout gives a body 20 s, plus a second for every 500 bytes received.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most connections a listener holds open at once unless configured: each costs a file
/// descriptor and a few KiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Every byte of a request body received beyond [`DEFAULT_BODY_TIMEOUT`] earns this much
/// more time: a body must arrive at 1 KiB/s on average, so one trickled a byte at a time is
/// cut off, and a 6 MB upload over a slow link is not.
pub const BODY_MIN_RATE: u64 = 1024;

/// How long a write to a client may wait (a client that stops reading its response), as
/// nginx's `send_timeout`.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// At the connection cap, a connection with no request in flight for this long is closed to
/// make room for a new one (as nginx reuses kept-alive connections when it runs out).
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// The largest request head hyper buffers on HTTP/1.1 (431 beyond), and the read buffer of
/// a connection: API Gateway takes heads of 10 KiB, nginx 32 KiB; hyper's default (400 KiB)
/// would let 10,000 slow connections hold 4 GB.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How a listener treats its connections.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// How long a request's head may take to arrive, and a connection may sit with no
    /// request in flight (HTTP/1.1 and HTTP/2), before it is closed.
    pub header_timeout: Duration,
    /// How long a request's body may take, plus a second for every [`BODY_MIN_RATE`] bytes
    /// received; past it, reading the body fails (400) and the connection is closed.
    pub body_timeout: Duration,
    /// At most this many connections at once; beyond it, new connections wait in the
    /// kernel's backlog while idle ones are closed to make room.
    pub max_connections: usize,
    /// Speak TLS (HTTPS, and HTTP/2 by ALPN) rather than plain HTTP. The handshake must
    /// end within `header_timeout`.
    pub tls: Option<Tls>,
}

impl ListenerConfig {
    /// The defaults, for listeners only nimbus's own processes reach (a deployed version
    /// behind `nimbus server`'s gateway, tests).
    pub fn internal() -> ListenerConfig {
        ListenerConfig {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

/// An HTTP/1.1 connection builder with nimbus's limits: the header-read deadline (which
/// needs hyper's timer to take effect at all; axum's `serve` sets none).
pub fn http1_builder(header_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
}

/// A connection builder for HTTP/1.1 (with [`http1_builder`]'s limits) and HTTP/2 with
/// prior knowledge, told apart by the connection's first bytes (HTTP/2's preface).
fn auto_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    // A peer that stops answering pings is gone; one that answers but sends nothing is
    // closed by the idle deadline of `serve_connection`.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout)
        .max_concurrent_streams(256);
    builder
}

/// Serves `router` on `listener` until `shutdown`, then lets each connection finish the
/// request it is on (kept-alive idle ones close at once) and returns when all have.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: ListenerConfig,
    mut shutdown: Shutdown,
) {
    let cfg = Arc::new(cfg);
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let pressure = Arc::new(Notify::new());
    let mut connections = JoinSet::new();
    let mut warned_at: Option<Instant> = None;
    loop {
        // A slot first: at the cap, new connections wait in the kernel's backlog, and
        // connections with nothing in flight are asked, every second, to make room.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_at.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        "{} connections open on {}, the most allowed (--max-connections): \
                         new ones wait, idle ones are closed",
                        cfg.max_connections,
                        listener
                            .local_addr()
                            .map_or_else(|_| "a listener".to_owned(), |a| a.to_string()),
                    );
                    warned_at = Some(Instant::now());
                }
                let mut nudge = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => match slot {
                            Ok(slot) => break slot,
                            Err(_) => unreachable!("the semaphore is never closed"),
                        },
                        _ = nudge.tick() => pressure.notify_waiters(),
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        () = shutdown.wait() => {
                            drop(listener);
                            while connections.join_next().await.is_some() {}
                            return;
                        }
                    }
                }
            }
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for connections to close
                    // rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = shutdown.wait() => break,
        };
        connections.spawn(serve_connection(
            stream,
            slot,
            remote,
            router.clone(),
            cfg.clone(),
            pressure.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until the client closes it, it breaks a deadline, the listener
/// needs its slot while it is idle, or shutdown.
async fn serve_connection(
    stream: TcpStream,
    slot: OwnedSemaphorePermit,
    remote: std::net::SocketAddr,
    router: Router,
    cfg: Arc<ListenerConfig>,
    pressure: Arc<Notify>,
    mut shutdown: Shutdown,
) {
    let stream = match &cfg.tls {
        None => Stream::Plain(stream),
        Some(tls) => {
            let handshake = tls.acceptor.accept(stream);
            tokio::select! {
                res = tokio::time::timeout(cfg.header_timeout, handshake) => match res {
                    Ok(Ok(stream)) => Stream::Tls(Box::new(stream)),
                    // Scanners and clients that do not trust the certificate: nothing to
                    // tell the operator.
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake with {remote}: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake with {remote}: timed out");
                        return;
                    }
                },
                () = shutdown.wait() => return,
            }
        }
    };
    let over_tls = matches!(stream, Stream::Tls(_));
    let connection = Connection {
        stream,
        _slot: slot,
        send_stall: None,
    };
    let activity = Arc::new(Activity::new());
    let body_timeout = cfg.body_timeout;
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let guard = Activity::begin(&tracked);
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(remote));
        if over_tls {
            parts.extensions.insert(OverTls);
        }
        let body = axum::body::Body::new(TimedBody::new(body, body_timeout));
        let res = router.clone().call(http::Request::from_parts(parts, body));
        async move {
            let res = res.await?;
            Ok::<_, std::convert::Infallible>(res.map(|body| {
                axum::body::Body::new(TrackedBody {
                    body,
                    _guard: guard,
                })
            }))
        }
    });
    let builder = auto_builder(cfg.header_timeout);
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(StrictHeads::new(connection)), service);
    tokio::pin!(conn);
    // Closes a connection with nothing in flight for `header_timeout`: a client that
    // connects and sends nothing (hyper reads the first bytes to tell HTTP/1.1 from HTTP/2
    // with no deadline of its own), and an HTTP/2 connection whose client answers pings but
    // sends no request. An upgraded connection (WebSocket) has left `conn`: no deadline.
    let idle_timeout = cfg.header_timeout;
    let check = tokio::time::sleep(idle_timeout);
    tokio::pin!(check);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = check.as_mut() => {
                let now = Instant::now();
                match activity.idle_since() {
                    Some(since) if now >= since + idle_timeout => {
                        if closing {
                            // Asked to close a while ago and still idle: drop it.
                            return;
                        }
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        check.as_mut().reset(now + idle_timeout);
                    }
                    Some(since) => check.as_mut().reset(since + idle_timeout),
                    None => check.as_mut().reset(now + idle_timeout),
                }
            }
            () = pressure.notified(), if !closing => {
                if activity
                    .idle_since()
                    .is_some_and(|since| since.elapsed() >= EVICTABLE_AFTER)
                {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = shutdown.wait(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Marks a request that came over TLS.
#[derive(Clone, Copy)]
struct OverTls;

/// The URL a client used to reach this server, without a path (`https://example.com:3000`):
/// the scheme of its connection and the `Host` header (HTTP/1.1) or `:authority` (HTTP/2),
/// for URLs nimbus hands back (SQS queue URLs).
pub(crate) fn base_url(parts: &http::request::Parts) -> String {
    let scheme = match parts.extensions.get::<OverTls>() {
        Some(OverTls) => "https",
        None => "http",
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("127.0.0.1");
    format!("{scheme}://{host}")
}

/// What a connection is doing: how many requests are in flight (from a complete head to
/// the end of its response body), and since when none is.
struct Activity(Mutex<(usize, Instant)>);

/// One request in flight on a connection.
struct RequestGuard(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity(Mutex::new((0, Instant::now())))
    }

    fn begin(activity: &Arc<Activity>) -> RequestGuard {
        if let Ok(mut state) = activity.0.lock() {
            state.0 += 1;
        }
        RequestGuard(activity.clone())
    }

    /// Since when no request is in flight; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        let state = self.0.lock().ok()?;
        (state.0 == 0).then_some(state.1)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.0.lock() {
            state.0 = state.0.saturating_sub(1);
            if state.0 == 0 {
                state.1 = Instant::now();
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct TrackedBody {
    body: axum::body::Body,
    _guard: RequestGuard,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body with a deadline: `body_timeout` from the end of the head, plus a second
/// for every [`BODY_MIN_RATE`] bytes received. A client that trickles its body (the
/// "slow POST" form of slowloris) gets an error where the handler reads it.
struct TimedBody {
    body: Incoming,
    started: Instant,
    timeout: Duration,
    received: u64,
    /// Armed only while the body is waited for.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The error a handler reads from a body that broke its deadline.
#[derive(Debug)]
struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body arrived too slowly")
    }
}

impl std::error::Error for BodyTimeout {}

impl TimedBody {
    fn new(body: Incoming, timeout: Duration) -> TimedBody {
        TimedBody {
            body,
            started: Instant::now(),
            timeout,
            received: 0,
            sleep: None,
        }
    }

    fn deadline(&self) -> Instant {
        self.started + self.timeout + Duration::from_secs(self.received / BODY_MIN_RATE)
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline();
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An accepted connection holding its slot under the cap (for as long as the socket
/// lives, upgraded or not), with a deadline on writes that make no progress.
struct Connection {
    stream: Stream,
    _slot: OwnedSemaphorePermit,
    /// Armed while a write waits for the client to read.
    send_stall: Option<Pin<Box<Sleep>>>,
}

impl Connection {
    /// Called when a write is pending: an error once it has been for `SEND_TIMEOUT`.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let stall = self
            .send_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(SEND_TIMEOUT)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for 60 s",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        res: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match res {
            Poll::Pending => self.stalled(cx).map(Err),
            ready => {
                self.send_stall = None;
                ready
            }
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progressed(res, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.progressed(res, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.stream).poll_flush(cx);
        self.progressed(res, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A connection's socket, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection's bytes on their way to hyper, with every request head checked for a bare
/// LF. RFC 9112 §2.2 lets a recipient take a lone LF as a line end, and httparse does, so
/// `X-A: a<LF>X-B: b` would reach a handler as two headers; a proxy in front that reads it
/// as one header would disagree with nimbus about the request (request smuggling). A head
/// holding one is cut short with a byte hyper refuses, so hyper answers 400 and closes.
///
/// Heads are found by following the framing: a body of `Content-Length` bytes is skipped;
/// after a chunked body, an upgrade or anything unusual the connection is no longer checked
/// (hyper still parses it as before), so the check never refuses a valid request.
pub struct StrictHeads<T> {
    inner: T,
    state: HeadState,
    /// The head read so far, while in `HeadState::Head`.
    head: Vec<u8>,
}

enum HeadState {
    Head,
    Body {
        left: u64,
    },
    Unchecked,
    /// A bare LF was found; hyper got the refusal and reads nothing more.
    Refused,
}

/// What hyper gets instead of a head with a bare LF: a NUL is valid nowhere in a head.
const REFUSAL: &[u8] = b"\0\r\n\r\n";

/// Heads longer than this are left to hyper, which refuses them with 431.
const MAX_CHECKED_HEAD: usize = 64 * 1024;

impl<T> StrictHeads<T> {
    /// Wraps a connection whose first bytes are a request head.
    pub fn new(inner: T) -> StrictHeads<T> {
        StrictHeads {
            inner,
            state: HeadState::Head,
            head: Vec::new(),
        }
    }

    /// Follows the request framing over `bytes`; `Err` at a bare LF in a head.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), ()> {
        while !bytes.is_empty() {
            match &mut self.state {
                HeadState::Unchecked | HeadState::Refused => return Ok(()),
                HeadState::Body { left } => {
                    let n_body = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= n_body as u64;
                    bytes = &bytes[n_body..];
                    if *left == 0 {
                        self.state = HeadState::Head;
                    }
                }
                HeadState::Head => {
                    let Some((byte, rest)) = bytes.split_first() else {
                        return Ok(());
                    };
                    bytes = rest;
                    if *byte == b'\n' && self.head.last() != Some(&b'\r') {
                        return Err(());
                    }
                    self.head.push(*byte);
                    if self.head.len() > MAX_CHECKED_HEAD {
                        self.state = HeadState::Unchecked;
                    } else if self.head.ends_with(b"\r\n\r\n") {
                        self.state = next_state(&self.head);
                        self.head.clear();
                    } else if self.head == b"\r\n" {
                        // Empty lines before a request line are ignored (RFC 9112 §2.2).
                        self.head.clear();
                    }
                }
            }
        }
        Ok(())
    }
}

/// What follows a complete request head: its body, or the next head.
fn next_state(head: &[u8]) -> HeadState {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return HeadState::Unchecked;
    }
    if req.method == Some("CONNECT") || req.method == Some("PRI") {
        return HeadState::Unchecked;
    }
    let mut content_length = None;
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding")
            || header.name.eq_ignore_ascii_case("upgrade")
        {
            return HeadState::Unchecked;
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(header.value)
                .ok()
                .and_then(|value| value.trim().parse::<u64>().ok());
            match (content_length, parsed) {
                (None, Some(n)) => content_length = Some(n),
                (Some(seen), Some(n)) if seen == n => {}
                // hyper refuses these; whatever it does, stop following.
                _ => return HeadState::Unchecked,
            }
        }
    }
    match content_length {
        Some(left) if left > 0 => HeadState::Body { left },
        _ => HeadState::Head,
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StrictHeads<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if matches!(self.state, HeadState::Refused) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if matches!(self.state, HeadState::Unchecked) {
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        if this.scan(&buf.filled()[before..]).is_err() {
            this.state = HeadState::Refused;
            buf.set_filled(before);
            let n_refusal = REFUSAL.len().min(buf.remaining());
            buf.put_slice(&REFUSAL[..n_refusal]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StrictHeads<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
