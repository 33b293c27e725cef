//! The accept loop of every HTTP listener: a header-read deadline that also closes idle
//! kept-alive connections, request heads with a bare LF refused, graceful shutdown; and
//! HTTP/2 without TLS for clients that speak it with prior knowledge (h2c): the AWS SDK for
//! JavaScript v3's Kinesis client does, by default, against an `http://` endpoint.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower_service::Service as _;

use crate::Shutdown;

/// How long a client may take to send a request's head (request line and headers), and
/// how long a kept-alive connection may sit idle between requests: hyper arms the same
/// timer while it waits for the next head. Node's HTTP server closes idle connections after
/// 5 s and nginx gives a head 60 s; a slow-header client ("slowloris") holds a connection
/// at most this long.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 connection builder with nimbus's limits: the header-read deadline (which
/// needs hyper's timer to take effect at all; axum's `serve` sets none).
pub fn http1_builder(header_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
}

/// A connection builder for HTTP/1.1 (with [`http1_builder`]'s limits) and HTTP/2 with
/// prior knowledge, told apart by the connection's first bytes (HTTP/2's preface).
fn auto_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // An HTTP/2 connection that goes quiet is closed after the same time as an idle
    // HTTP/1.1 one: pings every `header_timeout`, and no answer within it ends it.
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
    header_timeout: Duration,
    mut shutdown: Shutdown,
) {
    let mut connections = JoinSet::new();
    loop {
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
        let router = router.clone();
        let mut shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                router.clone().call(req)
            });
            let builder = auto_builder(header_timeout);
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(StrictHeads::new(stream)), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = shutdown.wait() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
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
mod tests {
    use super::*;

    /// Feeds `chunks` through the scanner; the index of the chunk refused, if one is.
    fn refused_at(chunks: &[&[u8]]) -> Option<usize> {
        let mut heads = StrictHeads::new(());
        chunks.iter().position(|chunk| heads.scan(chunk).is_err())
    }

    #[test]
    fn a_bare_lf_in_a_head_is_refused_and_one_in_a_body_is_not() {
        assert_eq!(
            refused_at(&[b"GET / HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n"]),
            Some(0)
        );
        assert_eq!(refused_at(&[b"GET / HTTP/1.1\n\n"]), Some(0));
        assert_eq!(
            refused_at(&[b"GET / HTTP/1.1\r\nX-A: a\r", b"\nHost: x\r\n\r\n"]),
            None
        );
        // A body of Content-Length bytes may hold anything; the next head is checked again.
        let body = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\na\nb\nc";
        assert_eq!(refused_at(&[body, b"GET / HTTP/1.1\r\n\r\n"]), None);
        assert_eq!(
            refused_at(&[body, b"GET / HTTP/1.1\nX: y\r\n\r\n"]),
            Some(1)
        );
        // After a chunked body nothing more is checked.
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n\n\r\n0\r\n\r\n";
        assert_eq!(
            refused_at(&[chunked, b"GET / HTTP/1.1\nX: y\r\n\r\n"]),
            None
        );
        assert_eq!(refused_at(&[b"\r\nGET / HTTP/1.1\r\n\r\n"]), None);
    }
}
