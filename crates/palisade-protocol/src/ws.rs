//! Incremental WebSocket framing (RFC 6455): frames in, whole messages out, and frames written
//! back.
//!
//! [`WsDecoder`] takes bytes of one direction of a connection as they arrive and yields
//! [`WsEvent`]s: a whole data message (fragments joined, payload unmasked) with the raw bytes of
//! its frames, or a control frame (ping, pong, close) as soon as it arrives, even between the
//! fragments of a message, as the RFC allows. Forwarding the raw bytes of an unedited message keeps
//! the connection byte-identical; [`encode_frame`] writes an edited message as one frame, masked
//! when it travels from client to server.
//!
//! Memory is bounded by the message size limit; compressed frames (`RSV1`, permessage-deflate) are
//! reported as such, since their payload is not text.

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// A continuation of a fragmented message.
    Continuation,
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
    /// Close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

impl Opcode {
    fn from_u8(b: u8) -> Option<Opcode> {
        Some(match b {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        }
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A whole data message.
    Message {
        /// Text or binary.
        opcode: Opcode,
        /// The unmasked payload, fragments joined.
        payload: Vec<u8>,
        /// Whether any frame had RSV1 set (compressed).
        compressed: bool,
        /// The raw bytes of its frames, as received.
        raw: Vec<u8>,
    },
    /// A control frame.
    Control {
        /// Ping, pong or close.
        opcode: Opcode,
        /// The raw bytes of the frame.
        raw: Vec<u8>,
    },
}

/// Why the stream is not valid WebSocket framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// An unknown opcode or a malformed frame.
    #[error("invalid WebSocket frame: {0}")]
    Invalid(&'static str),
    /// A message larger than the limit.
    #[error("a WebSocket message is larger than {0} bytes")]
    TooLarge(usize),
}

/// Incremental decoder for one direction of a connection.
#[derive(Debug)]
pub struct WsDecoder {
    buf: Vec<u8>,
    max_message_bytes: usize,
    message: Option<(Opcode, Vec<u8>, bool, Vec<u8>)>,
}

impl WsDecoder {
    /// A decoder refusing messages larger than `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        WsDecoder {
            buf: Vec::new(),
            max_message_bytes,
            message: None,
        }
    }

    /// Feeds bytes; returns the events they complete, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<WsEvent>, WsError> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut at = 0;
        while let Some((frame_len, header)) = parse_header(&self.buf[at..])? {
            if header.payload_len > self.max_message_bytes as u64 {
                return Err(WsError::TooLarge(self.max_message_bytes));
            }
            let total = header.header_len + header.payload_len as usize;
            if self.buf.len() - at < total {
                break;
            }
            let _ = frame_len;
            let raw = self.buf[at..at + total].to_vec();
            let mut payload = self.buf[at + header.header_len..at + total].to_vec();
            if let Some(key) = header.mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
            }
            at += total;
            match header.opcode {
                Opcode::Close | Opcode::Ping | Opcode::Pong => {
                    if !header.fin || header.payload_len > 125 {
                        return Err(WsError::Invalid("a control frame must be whole and short"));
                    }
                    events.push(WsEvent::Control {
                        opcode: header.opcode,
                        raw,
                    });
                }
                Opcode::Text | Opcode::Binary => {
                    if self.message.is_some() {
                        return Err(WsError::Invalid(
                            "a new message began inside a fragmented one",
                        ));
                    }
                    self.message = Some((header.opcode, payload, header.rsv1, raw));
                }
                Opcode::Continuation => {
                    let Some(m) = self.message.as_mut() else {
                        return Err(WsError::Invalid("a continuation frame with no message"));
                    };
                    m.1.extend_from_slice(&payload);
                    m.3.extend_from_slice(&raw);
                    if m.1.len() > self.max_message_bytes {
                        return Err(WsError::TooLarge(self.max_message_bytes));
                    }
                }
            }
            if header.fin
                && matches!(
                    header.opcode,
                    Opcode::Text | Opcode::Binary | Opcode::Continuation
                )
            {
                if let Some((opcode, payload, compressed, raw)) = self.message.take() {
                    events.push(WsEvent::Message {
                        opcode,
                        payload,
                        compressed,
                        raw,
                    });
                }
            }
        }
        self.buf.drain(..at);
        Ok(events)
    }
}

struct Header {
    fin: bool,
    rsv1: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
    header_len: usize,
}

fn parse_header(b: &[u8]) -> Result<Option<(usize, Header)>, WsError> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    let rsv1 = b[0] & 0x40 != 0;
    let opcode = Opcode::from_u8(b[0] & 0x0f).ok_or(WsError::Invalid("unknown opcode"))?;
    let masked = b[1] & 0x80 != 0;
    let mut len = u64::from(b[1] & 0x7f);
    let mut at = 2;
    if len == 126 {
        if b.len() < 4 {
            return Ok(None);
        }
        len = u64::from(u16::from_be_bytes([b[2], b[3]]));
        at = 4;
    } else if len == 127 {
        if b.len() < 10 {
            return Ok(None);
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[2..10]);
        len = u64::from_be_bytes(n);
        at = 10;
    }
    let mask = if masked {
        if b.len() < at + 4 {
            return Ok(None);
        }
        let k = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        at += 4;
        Some(k)
    } else {
        None
    };
    Ok(Some((
        at,
        Header {
            fin,
            rsv1,
            opcode,
            mask,
            payload_len: len,
            header_len: at,
        },
    )))
}

/// One whole frame carrying `payload`, masked with `mask` when given (client to server).
pub fn encode_frame(opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode.as_u8());
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A close frame with a status code and reason.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let reason: String = reason.chars().take(100).collect();
    payload.extend_from_slice(reason.as_bytes());
    payload.truncate(125);
    encode_frame(Opcode::Close, &payload, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragmented_masked_message_with_a_ping_between() {
        let key = Some([1, 2, 3, 4]);
        let mut first = encode_frame(Opcode::Text, b"hel", key);
        first[0] &= 0x7f; // not final
        let ping = encode_frame(Opcode::Ping, b"p", key);
        let last = {
            let mut f = encode_frame(Opcode::Continuation, b"lo", key);
            f[0] |= 0x80;
            f
        };
        let all = [first.clone(), ping.clone(), last.clone()].concat();
        for chunk in [1, 2, 5, 100] {
            let mut d = WsDecoder::new(1 << 20);
            let mut events = Vec::new();
            for c in all.chunks(chunk) {
                events.extend(d.push(c).unwrap_or_else(|e| panic!("{e}")));
            }
            assert_eq!(events.len(), 2, "chunk {chunk}");
            assert_eq!(
                events[0],
                WsEvent::Control {
                    opcode: Opcode::Ping,
                    raw: ping.clone()
                }
            );
            match &events[1] {
                WsEvent::Message {
                    opcode,
                    payload,
                    raw,
                    ..
                } => {
                    assert_eq!((*opcode, payload.as_slice()), (Opcode::Text, &b"hello"[..]));
                    assert_eq!(raw, &[first.clone(), last.clone()].concat());
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn long_lengths_and_limits() {
        let big = vec![b'a'; 70_000];
        let f = encode_frame(Opcode::Binary, &big, None);
        let mut d = WsDecoder::new(1 << 20);
        let ev = d.push(&f).unwrap_or_default();
        assert!(matches!(&ev[0], WsEvent::Message { payload, .. } if payload.len() == 70_000));
        let mut small = WsDecoder::new(1000);
        assert_eq!(small.push(&f), Err(WsError::TooLarge(1000)));
        assert!(
            WsDecoder::new(10).push(&[0x83, 0x00]).is_err(),
            "opcode 3 is reserved"
        );
    }
}
