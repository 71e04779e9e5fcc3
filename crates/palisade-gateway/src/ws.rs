//! WebSocket connections: the upgrade is forwarded, then every text message is inspected in both
//! directions as it completes.
//!
//! Control frames (ping, pong, close) pass at once. A text message that the policy allows is
//! forwarded as its original frames, byte for byte; a redacted one is re-sent as one frame (masked
//! towards the upstream, as clients must); a blocked one closes both sides with status 1008
//! (policy violation). Binary and compressed messages pass uninspected (compression is not
//! negotiated on `enforce` routes: the extension header is dropped from the upgrade). Framing
//! errors follow the failure mode: `fail_closed` closes with 1002, `fail_open` tunnels the rest
//! raw. `monitor` routes forward first and inspect afterwards.

use std::sync::Arc;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use palisade_policy::config::{Action, FailureMode, Mode};
use palisade_policy::Direction;
use palisade_protocol::ws::{close_frame, encode_frame, Opcode, WsDecoder, WsEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use crate::route::Target;
use crate::State;

type Io = TokioIo<Upgraded>;
type Writer = Arc<Mutex<WriteHalf<Io>>>;

const MAX_MESSAGE_BYTES: usize = 16 << 20;

fn mask_key() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    let v = h.finish().to_le_bytes();
    [v[0], v[1], v[2], v[3]]
}

/// Splices two upgraded connections, inspecting messages both ways.
pub(crate) async fn splice(
    state: Arc<State>,
    target: Target,
    id: String,
    client: Upgraded,
    upstream: Upgraded,
    mode: FailureMode,
) {
    let (cr, cw) = tokio::io::split(TokioIo::new(client));
    let (ur, uw) = tokio::io::split(TokioIo::new(upstream));
    let cw: Writer = Arc::new(Mutex::new(cw));
    let uw: Writer = Arc::new(Mutex::new(uw));
    let up = pump(
        state.clone(),
        target.clone(),
        id.clone(),
        Direction::Request,
        cr,
        uw.clone(),
        cw.clone(),
        mode,
    );
    let down = pump(
        state,
        target,
        id,
        Direction::Response,
        ur,
        cw.clone(),
        uw.clone(),
        mode,
    );
    // Either side ending ends the connection.
    tokio::select! {
        () = up => {},
        () = down => {},
    }
    let _ = cw.lock().await.shutdown().await;
    let _ = uw.lock().await.shutdown().await;
}

/// Moves one direction. `to` is where messages go; `back` is the sender, told when we close.
#[allow(clippy::too_many_arguments)]
async fn pump(
    state: Arc<State>,
    target: Target,
    id: String,
    direction: Direction,
    mut from: ReadHalf<Io>,
    to: Writer,
    back: Writer,
    mode: FailureMode,
) {
    // Frames towards the upstream are masked; towards the client they are not.
    let (mask_to, mask_back) = match direction {
        Direction::Request => (true, false),
        Direction::Response => (false, true),
    };
    let mut decoder = WsDecoder::new(MAX_MESSAGE_BYTES);
    let mut buf = vec![0u8; 16 * 1024];
    let mut raw_tunnel = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if raw_tunnel {
            if to.lock().await.write_all(&buf[..n]).await.is_err() {
                return;
            }
            continue;
        }
        let events = match decoder.push(&buf[..n]) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(request_id = %id, route = %target.route, error = %e, "websocket framing error");
                match mode {
                    FailureMode::FailClosed => {
                        let reason = "invalid framing; closed (fail_closed)";
                        let _ = to
                            .lock()
                            .await
                            .write_all(&close_frame(1002, reason, mask_to.then(mask_key)))
                            .await;
                        let _ = back
                            .lock()
                            .await
                            .write_all(&close_frame(1002, reason, mask_back.then(mask_key)))
                            .await;
                        return;
                    }
                    FailureMode::FailOpen => {
                        raw_tunnel = true;
                        if to.lock().await.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        for event in events {
            let (raw, text) = match event {
                WsEvent::Control { raw, .. } => (raw, None),
                WsEvent::Message {
                    opcode: Opcode::Text,
                    payload,
                    compressed: false,
                    raw,
                } => (raw, String::from_utf8(payload).ok()),
                WsEvent::Message { raw, .. } => (raw, None),
            };
            let Some(text) = text else {
                if to.lock().await.write_all(&raw).await.is_err() {
                    return;
                }
                continue;
            };
            if target.mode == Mode::Monitor {
                if to.lock().await.write_all(&raw).await.is_err() {
                    return;
                }
                if let Ok(v) = state
                    .inspector
                    .inspect_text(&target.policy, direction, &text)
                {
                    tracing::info!(target: "palisade::decision", request_id = %id, route = %target.route, mode = "monitor",
                        direction = ?direction, would = v.action.as_str(), reasons = ?v.reasons, "websocket message");
                }
                continue;
            }
            let verdict = match state
                .inspector
                .inspect_text(&target.policy, direction, &text)
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(request_id = %id, error = %e, "websocket inspection failed");
                    return;
                }
            };
            match verdict.action {
                Action::Allow => {
                    if to.lock().await.write_all(&raw).await.is_err() {
                        return;
                    }
                }
                Action::Redact => {
                    let redacted = verdict.redacted.unwrap_or_default();
                    let frame =
                        encode_frame(Opcode::Text, redacted.as_bytes(), mask_to.then(mask_key));
                    tracing::info!(target: "palisade::decision", request_id = %id, route = %target.route,
                        direction = ?direction, decision = "redact", reasons = ?verdict.reasons, "websocket message");
                    if to.lock().await.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                Action::Block => {
                    tracing::info!(target: "palisade::decision", request_id = %id, route = %target.route,
                        direction = ?direction, decision = "block", reasons = ?verdict.reasons, "websocket message");
                    let reason = "blocked by Palisade";
                    let _ = to
                        .lock()
                        .await
                        .write_all(&close_frame(1008, reason, mask_to.then(mask_key)))
                        .await;
                    let _ = back
                        .lock()
                        .await
                        .write_all(&close_frame(1008, reason, mask_back.then(mask_key)))
                        .await;
                    return;
                }
            }
        }
    }
}
