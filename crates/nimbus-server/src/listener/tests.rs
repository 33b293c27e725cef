//! The listener's limits, against real sockets on loopback.

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

/// A listener serving `GET /` (ok), `POST /echo` (the body back, 400 if it cannot be
/// read) and `GET /upgrade` (101, then an echo of whatever the client sends).
struct Listening {
    addr: std::net::SocketAddr,
    _trigger: crate::ShutdownTrigger,
}

async fn listen(cfg: ListenerConfig) -> Listening {
    use axum::routing::{get, post};
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("binding on loopback");
    let addr = listener.local_addr().expect("an address");
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/upgrade", get(upgrade));
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(serve(listener, router, cfg, shutdown));
    Listening {
        addr,
        _trigger: trigger,
    }
}

async fn upgrade(mut req: axum::extract::Request) -> http::Response<axum::body::Body> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        let mut buf = [0u8; 64];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    http::Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(axum::body::Body::empty())
        .expect("a valid response")
}

/// Every deadline at `timeout`, room for 100 connections.
fn limits(timeout: Duration) -> ListenerConfig {
    ListenerConfig {
        header_timeout: timeout,
        body_timeout: timeout,
        max_connections: 100,
        tls: None,
    }
}

/// Reads until the server closes the connection: what it sent. Fails the test after 5 s.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open; it sent {:?}",
        String::from_utf8_lossy(&received)
    );
    received
}

/// `GET /` on a new connection; the status line.
async fn get_status(addr: std::net::SocketAddr) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = TcpStream::connect(addr).await.expect("connecting");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("writing a request");
    let res = read_until_closed(&mut stream).await;
    String::from_utf8_lossy(&res)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt as _;
    let listening = listen(limits(Duration::from_millis(300))).await;
    let mut silent = TcpStream::connect(listening.addr)
        .await
        .expect("connecting");
    assert_eq!(read_until_closed(&mut silent).await, b"");
    // One that stops inside HTTP/2's preface, where hyper has not yet picked a protocol.
    let mut half = TcpStream::connect(listening.addr)
        .await
        .expect("connecting");
    half.write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("writing");
    assert_eq!(read_until_closed(&mut half).await, b"");
    assert_eq!(get_status(listening.addr).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_header_timeout() {
    let listening = listen(limits(Duration::from_millis(300))).await;
    let stream = TcpStream::connect(listening.addr)
        .await
        .expect("connecting");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("an HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let req = http::Request::get(format!("http://{}/", listening.addr))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("a request");
    let res = sender.send_request(req).await.expect("an answer");
    assert_eq!(res.status(), 200);
    drop(res);
    // The client answers every ping, but sends no request: the server ends it.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
}

#[tokio::test]
async fn a_trickled_body_is_refused_and_its_connection_closed() {
    use tokio::io::AsyncWriteExt as _;
    let listening = listen(limits(Duration::from_millis(300))).await;
    let mut slow = TcpStream::connect(listening.addr)
        .await
        .expect("connecting");
    slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .await
        .expect("writing the head");
    let trickle = async {
        for _ in 0..100 {
            if slow.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .ok();
    let res = read_until_closed(&mut slow).await;
    let res = String::from_utf8_lossy(&res);
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
}

#[tokio::test]
async fn a_body_that_keeps_up_the_minimum_rate_is_read_whole() {
    use tokio::io::AsyncWriteExt as _;
    let listening = listen(limits(Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(listening.addr)
        .await
        .expect("connecting");
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4096\r\n\r\n",
        )
        .await
        .expect("writing the head");
    // 4 KiB over about 800 ms: past the 300 ms deadline, but each KiB earns a second.
    for _ in 0..4 {
        stream.write_all(&[b'k'; 1024]).await.expect("writing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let res = read_until_closed(&mut stream).await;
    let res = String::from_utf8_lossy(&res);
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.ends_with(&"k".repeat(4096)), "{res}");
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_for_new_ones() {
    let listening = listen(ListenerConfig {
        max_connections: 3,
        ..limits(Duration::from_secs(60))
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            TcpStream::connect(listening.addr)
                .await
                .expect("connecting"),
        );
    }
    // The fourth waits in the backlog until an idle one is closed for it.
    let status = tokio::time::timeout(Duration::from_secs(10), get_status(listening.addr)).await;
    assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn an_upgraded_connection_has_no_idle_deadline_and_keeps_its_slot() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listening = listen(ListenerConfig {
        max_connections: 1,
        ..limits(Duration::from_millis(200))
    })
    .await;
    let mut upgraded = TcpStream::connect(listening.addr)
        .await
        .expect("connecting");
    upgraded
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .expect("writing");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        upgraded
            .read_exact(&mut byte)
            .await
            .expect("reading the 101");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    // Well past every deadline, the upgraded socket still echoes.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    upgraded.write_all(b"ping").await.expect("writing");
    let mut echo = [0u8; 4];
    upgraded
        .read_exact(&mut echo)
        .await
        .expect("reading the echo");
    assert_eq!(&echo, b"ping");
    // It holds the only slot (it is busy, so it is not closed for a newcomer): a new
    // connection is served once it closes.
    let waiting = tokio::spawn(get_status(listening.addr));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection got past the cap of 1"
    );
    drop(upgraded);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert_eq!(
        status.ok().and_then(Result::ok).as_deref(),
        Some("HTTP/1.1 200 OK")
    );
}

// Issue 14: a head over 64 KiB is refused with 431 (API Gateway's header limits are
// smaller still), and the listener serves the next connection as before.
#[tokio::test]
async fn a_head_over_64_kib_gets_431_and_the_next_request_is_served() {
    use tokio::io::AsyncWriteExt as _;
    let server = listen(limits(Duration::from_secs(5))).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connecting");
    let filler = "a".repeat(70 * 1024);
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n");
    // The server may answer and close before it has read the whole head.
    let _ = stream.write_all(head.as_bytes()).await;
    let res = read_until_closed(&mut stream).await;
    let status = String::from_utf8_lossy(&res)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(get_status(server.addr).await, "HTTP/1.1 200 OK");
}
