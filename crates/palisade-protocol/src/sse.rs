//! Incremental decoding of Server-Sent Events and newline-delimited JSON.
//!
//! [`SseDecoder`] takes bytes as they arrive, in chunks of any size, and yields whole events as
//! soon as their blank line arrives. It follows the WHATWG event-stream rules: lines end with
//! CRLF, LF or CR; a line starting with `:` is a comment; `data:` lines of one event are joined
//! with `\n`; one space after the colon is dropped; `event`, `id` and `retry` are kept. Each event
//! keeps its raw bytes, so an event nobody edited is re-sent exactly as it came, and an edited one
//! is re-encoded by [`SseEvent::encode`] with the same fields.
//!
//! Memory is bounded: an event larger than the limit given to [`SseDecoder::new`] is an error, not
//! an unbounded buffer. [`NdjsonDecoder`] does the same for one JSON document a line.

/// One event of an event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `retry:` field, if any and numeric.
    pub retry: Option<u64>,
    /// Comment lines (without the leading `:`), in order.
    pub comments: Vec<String>,
    /// The event's bytes exactly as received, blank line included.
    pub raw: Vec<u8>,
    /// Whether the event had at least one `data:` line (a dispatchable event); events with only
    /// comments or `retry` are kept so they can be passed through.
    pub has_data: bool,
}

impl SseEvent {
    /// An event with only data, as a server would send it.
    pub fn data(data: impl Into<String>) -> Self {
        SseEvent {
            data: data.into(),
            has_data: true,
            ..SseEvent::default()
        }
    }

    /// Encodes the event's fields (not its raw bytes), one `data:` line per line of data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for c in &self.comments {
            out.push(':');
            out.push_str(c);
            out.push('\n');
        }
        if let Some(e) = &self.event {
            out.push_str("event: ");
            out.push_str(e);
            out.push('\n');
        }
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if let Some(r) = self.retry {
            out.push_str(&format!("retry: {r}\n"));
        }
        if self.has_data {
            for line in self.data.split('\n') {
                out.push_str("data: ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// One event or line is larger than the limit.
    #[error("a stream event is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not UTF-8.
    #[error("the stream is not UTF-8")]
    NotUtf8,
}

/// Incremental SSE decoder. See the module documentation.
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already split into lines of the current event.
    scanned: usize,
    current: SseEvent,
    max_event_bytes: usize,
    /// The previous chunk ended with CR: a LF at the start of the next one belongs to it.
    pending_cr: bool,
    /// A BOM is dropped once, at the very start.
    started: bool,
}

impl SseDecoder {
    /// A decoder refusing events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            buf: Vec::new(),
            scanned: 0,
            current: SseEvent::default(),
            max_event_bytes,
            pending_cr: false,
            started: false,
        }
    }

    /// Feeds bytes; returns the events they complete, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, StreamError> {
        if !self.started && !chunk.is_empty() {
            self.started = true;
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
        }
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                self.current.raw.push(b'\n');
                chunk = rest;
            }
        }
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            let rest = &self.buf[self.scanned..];
            let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) else {
                break;
            };
            let line_end = self.scanned + pos;
            let mut next = line_end + 1;
            if self.buf[line_end] == b'\r' {
                match self.buf.get(line_end + 1) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    // A CR at the end of the buffer: the LF may come in the next chunk.
                    None => self.pending_cr = true,
                }
            }
            let line = std::str::from_utf8(&self.buf[self.scanned..line_end])
                .map_err(|_| StreamError::NotUtf8)?
                .to_owned();
            self.current
                .raw
                .extend_from_slice(&self.buf[self.scanned..next]);
            self.scanned = next;
            if line.is_empty() {
                let ev = std::mem::take(&mut self.current);
                if ev.has_data
                    || !ev.comments.is_empty()
                    || ev.retry.is_some()
                    || ev.event.is_some()
                    || ev.id.is_some()
                {
                    events.push(ev);
                }
            } else {
                self.field(&line);
            }
        }
        self.buf.drain(..self.scanned);
        self.scanned = 0;
        if self.buf.len() + self.current.raw.len() > self.max_event_bytes {
            return Err(StreamError::TooLarge {
                limit: self.max_event_bytes,
            });
        }
        Ok(events)
    }

    /// Ends the stream: an event without its final blank line is still returned, as browsers do
    /// not; servers that close mid-event lose nothing here.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, StreamError> {
        if !self.buf.is_empty() {
            let line = std::str::from_utf8(&self.buf)
                .map_err(|_| StreamError::NotUtf8)?
                .to_owned();
            self.current.raw.extend_from_slice(&self.buf);
            self.buf.clear();
            self.field(&line);
        }
        let ev = std::mem::take(&mut self.current);
        Ok((ev.has_data || !ev.comments.is_empty()).then_some(ev))
    }

    fn field(&mut self, line: &str) {
        if let Some(comment) = line.strip_prefix(':') {
            self.current.comments.push(comment.to_owned());
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "data" => {
                if self.current.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.current.has_data = true;
            }
            "event" => self.current.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.current.id = Some(value.to_owned()),
            "retry" => {
                if let Ok(r) = value.parse() {
                    self.current.retry = Some(r);
                }
            }
            _ => {}
        }
    }
}

/// Incremental decoder of newline-delimited JSON (or any line protocol).
#[derive(Debug)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
    max_line_bytes: usize,
}

impl NdjsonDecoder {
    /// A decoder refusing lines longer than `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> Self {
        NdjsonDecoder {
            buf: Vec::new(),
            max_line_bytes,
        }
    }

    /// Feeds bytes; returns the complete lines (each with its `\n`), in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, StreamError> {
        self.buf.extend_from_slice(chunk);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &self.buf[start..]) {
            lines.push(self.buf[start..start + pos + 1].to_vec());
            start += pos + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > self.max_line_bytes {
            return Err(StreamError::TooLarge {
                limit: self.max_line_bytes,
            });
        }
        Ok(lines)
    }

    /// Ends the stream, returning a last line without its newline, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], chunk: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::new(1 << 20);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            out.extend(d.push(c).unwrap_or_else(|e| panic!("{e}")));
        }
        out.extend(d.finish().unwrap_or_else(|e| panic!("{e}")));
        out
    }

    #[test]
    fn fields_comments_and_multiline_data() {
        let input = b": keep-alive\n\nevent: delta\nid: 7\nretry: 3000\ndata: {\"a\":\ndata:1}\n\ndata:no space\r\n\r\ndata: last\rdata: cr\r\r";
        for chunk in [1, 2, 3, 7, 1000] {
            let ev = all(input, chunk);
            assert_eq!(ev.len(), 4, "chunk {chunk}: {ev:?}");
            assert_eq!(ev[0].comments, vec![" keep-alive".to_owned()]);
            assert!(!ev[0].has_data);
            assert_eq!(ev[1].event.as_deref(), Some("delta"));
            assert_eq!(ev[1].id.as_deref(), Some("7"));
            assert_eq!(ev[1].retry, Some(3000));
            assert_eq!(ev[1].data, "{\"a\":\n1}");
            assert_eq!(ev[2].data, "no space");
            assert_eq!(ev[3].data, "last\ncr");
            let raw: Vec<u8> = ev.iter().flat_map(|e| e.raw.clone()).collect();
            assert_eq!(
                raw,
                input.to_vec(),
                "chunk {chunk}: raw bytes are kept exactly"
            );
        }
    }

    #[test]
    fn encode_round_trips() {
        let ev = SseEvent {
            event: Some("message".into()),
            data: "line1\nline2".into(),
            id: Some("1".into()),
            retry: None,
            comments: vec![],
            raw: vec![],
            has_data: true,
        };
        let again = all(&ev.encode(), 5);
        assert_eq!(again[0].data, ev.data);
        assert_eq!(again[0].event, ev.event);
    }

    #[test]
    fn oversized_event_is_an_error_and_unterminated_is_returned() {
        let mut d = SseDecoder::new(16);
        assert!(d.push(b"data: 0123456789abcdef").is_err());
        let ev = all(b"data: tail", 3);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "tail");
    }

    #[test]
    fn ndjson_lines_across_chunks() {
        let mut d = NdjsonDecoder::new(100);
        let mut lines = Vec::new();
        for c in b"{\"a\":1}\n{\"b\"".chunks(3) {
            lines.extend(d.push(c).unwrap_or_default());
        }
        lines.extend(d.push(b":2}\n").unwrap_or_default());
        assert_eq!(
            lines,
            vec![b"{\"a\":1}\n".to_vec(), b"{\"b\":2}\n".to_vec()]
        );
        assert!(d.finish().is_none());
    }
}
