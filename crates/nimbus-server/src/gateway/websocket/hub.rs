//! The live WebSocket connections of a server, by connection id: what `postToConnection`,
//! `getConnection` and `deleteConnection` reach, and what shutdown closes.
//!
//! The hub knows nothing of API Gateway: a connection is an id, a sender of frames and
//! the facts `getConnection` reports. A socket's own task (`websocket.rs` for Lambda
//! WebSocket APIs; later Workers' `WebSocketPair` and Durable Objects) registers it,
//! pumps its frames and removes it when it closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};

/// How many frames may wait for one slow client before `send` answers
/// `LimitExceeded`, as API Gateway does when a client's buffer is full.
const MAX_QUEUED_FRAMES: usize = 1024;

/// The connections of one server, shared by every generation of its app.
pub(crate) struct Hub {
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// Set once the server shuts down: every socket task closes its socket.
    closing: watch::Sender<bool>,
}

/// One live connection, as its socket task registered it.
pub(crate) struct Connection {
    pub(crate) id: String,
    pub(crate) connected_at: SystemTime,
    pub(crate) source_ip: String,
    pub(crate) user_agent: String,
    /// When a frame last came from the client or was sent to it.
    last_active: Mutex<SystemTime>,
    tx: mpsc::Sender<Outgoing>,
    /// Wakes the socket task to close at once, ahead of queued frames (a full queue).
    close_requested: Notify,
}

/// What the connection's facts are at registration.
pub(crate) struct ConnectionInfo {
    pub(crate) id: String,
    pub(crate) connected_at: SystemTime,
    pub(crate) source_ip: String,
    pub(crate) user_agent: String,
}

/// A frame for the socket task to write.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Text(String),
    Binary(Bytes),
    /// Close the connection with this code and reason (`deleteConnection`: 1000).
    Close(u16, String),
}

/// Why a frame could not be queued for a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// No such connection, or it has closed: API Gateway's `GoneException` (410).
    Gone,
    /// The client reads too slowly: API Gateway's `LimitExceededException` (429).
    Full,
}

/// The receiving half a socket task pumps into its socket.
pub(crate) struct Registration {
    pub(crate) connection: Arc<Connection>,
    pub(crate) rx: mpsc::Receiver<Outgoing>,
    pub(crate) closing: watch::Receiver<bool>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            connections: Mutex::new(HashMap::new()),
            closing: watch::Sender::new(false),
        }
    }

    /// Adds a connection; frames sent to its id queue until its task pumps them.
    pub(crate) fn register(&self, info: ConnectionInfo) -> Registration {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_FRAMES);
        let connection = Arc::new(Connection {
            id: info.id,
            connected_at: info.connected_at,
            source_ip: info.source_ip,
            user_agent: info.user_agent,
            last_active: Mutex::new(info.connected_at),
            tx,
            close_requested: Notify::new(),
        });
        self.lock()
            .insert(connection.id.clone(), connection.clone());
        Registration {
            connection,
            rx,
            closing: self.closing.subscribe(),
        }
    }

    /// Forgets a connection: from now on it is gone for senders.
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The connection `id`, while it is live (a closed one is gone, even while its
    /// `$disconnect` runs).
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.lock().get(id).filter(|c| !c.tx.is_closed()).cloned()
    }

    /// Queues a frame for connection `id`.
    pub(crate) fn send(&self, id: &str, frame: Outgoing) -> Result<(), SendError> {
        let connection = self.get(id).ok_or(SendError::Gone)?;
        connection.send(frame)
    }

    /// How many connections are live.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Tells every socket task to close its socket (1001, going away), and waits up to
    /// `within` for them to finish (their `$disconnect` invocations included).
    pub(crate) async fn close_all(&self, within: Duration) {
        self.closing.send_replace(true);
        let deadline = tokio::time::Instant::now() + within;
        while self.len() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Connection>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Connection {
    /// Queues a frame without waiting: a client that does not read is the sender's
    /// problem to hear about, not to wait for.
    pub(crate) fn send(&self, frame: Outgoing) -> Result<(), SendError> {
        match self.tx.try_send(frame) {
            Ok(()) => {
                self.touch();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(SendError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Gone),
        }
    }

    /// Asks the socket task to close the connection (1000) without waiting for the
    /// frames queued before.
    pub(crate) fn request_close(&self) {
        self.close_requested.notify_one();
    }

    /// Resolves once `request_close` was called.
    pub(crate) async fn close_requested(&self) {
        self.close_requested.notified().await;
    }

    /// Records activity now.
    pub(crate) fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = SystemTime::now();
    }

    pub(crate) fn last_active(&self) -> SystemTime {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> ConnectionInfo {
        ConnectionInfo {
            id: id.to_owned(),
            connected_at: SystemTime::UNIX_EPOCH,
            source_ip: "127.0.0.1".to_owned(),
            user_agent: "test".to_owned(),
        }
    }

    #[tokio::test]
    async fn frames_reach_a_live_connection_and_a_removed_one_is_gone() {
        let hub = Hub::new();
        let mut registration = hub.register(info("a"));
        assert_eq!(hub.len(), 1);
        hub.send("a", Outgoing::Text("hi".to_owned()))
            .expect("a is live");
        assert!(matches!(registration.rx.recv().await, Some(Outgoing::Text(t)) if t == "hi"));
        assert!(registration.connection.last_active() > SystemTime::UNIX_EPOCH);
        assert_eq!(
            hub.send("b", Outgoing::Text("x".to_owned())),
            Err(SendError::Gone)
        );
        hub.remove("a");
        assert_eq!(
            hub.send("a", Outgoing::Text("x".to_owned())),
            Err(SendError::Gone)
        );
        assert_eq!(hub.len(), 0);
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_fills_its_queue() {
        let hub = Hub::new();
        let _registration = hub.register(info("slow"));
        for _ in 0..MAX_QUEUED_FRAMES {
            hub.send("slow", Outgoing::Text(String::new()))
                .expect("room left");
        }
        assert_eq!(
            hub.send("slow", Outgoing::Text(String::new())),
            Err(SendError::Full)
        );
    }
}
