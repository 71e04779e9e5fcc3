//! MCP's SSE transport: the server answers a client's POST to the message endpoint with `202
//! Accepted` and sends the JSON-RPC answer on the long-lived `GET /sse` stream. A call Palisade
//! blocks must therefore be answered on that stream too, or the client waits for ever.
//!
//! Every inspected SSE stream that announces an `endpoint` registers it here with the sender of
//! the client's stream; a blocked POST to that endpoint puts its JSON-RPC error on the stream.
//! The registry is shared by all workers, since the POST may land on another thread than the
//! stream. It is touched once per SSE session and once per blocked call, never per event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::body::BoxError;

type Sender = mpsc::Sender<Result<Bytes, BoxError>>;

/// Open MCP SSE sessions, by the endpoint (path and query) their clients POST to.
#[derive(Debug, Default)]
pub struct SseSessions {
    open: Mutex<HashMap<String, Sender>>,
}

impl SseSessions {
    /// Registers the stream announcing `endpoint`; the session is removed when the returned
    /// guard drops (the stream ended).
    pub fn register(self: &Arc<Self>, endpoint: &str, tx: Sender) -> SessionGuard {
        if let Ok(mut open) = self.open.lock() {
            open.insert(endpoint.to_owned(), tx);
        }
        SessionGuard {
            sessions: self.clone(),
            endpoint: endpoint.to_owned(),
        }
    }

    /// Sends `event` (a whole SSE event) on the stream of the session whose endpoint is
    /// `path_and_query`. False when no such session is open or its client is gone.
    pub async fn send(&self, path_and_query: &str, event: Bytes) -> bool {
        let tx = match self.open.lock() {
            Ok(open) => open.get(path_and_query).cloned(),
            Err(_) => None,
        };
        match tx {
            Some(tx) => tx.send(Ok(event)).await.is_ok(),
            None => false,
        }
    }

    /// Whether a session answers at `path_and_query`.
    pub fn contains(&self, path_and_query: &str) -> bool {
        self.open
            .lock()
            .map(|open| open.contains_key(path_and_query))
            .unwrap_or(false)
    }
}

/// Removes a session from the registry when dropped.
#[derive(Debug)]
pub struct SessionGuard {
    sessions: Arc<SseSessions>,
    endpoint: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Ok(mut open) = self.sessions.open.lock() {
            open.remove(&self.endpoint);
        }
    }
}
