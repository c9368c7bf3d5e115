//! A streaming `text/event-stream` decoder (WHATWG HTML, "Server-sent events", §9.2.6).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body::Body;

use crate::error::{BoxError, Error, ErrorKind};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type; `message` when the stream named none.
    pub event: String,
    /// The data lines, joined by `\n`.
    pub data: String,
    /// The last event ID at dispatch (it carries over from earlier events, as the spec says),
    /// shared with the other events that carry it.
    pub id: Option<Arc<str>>,
    /// The reconnection time, when this event's block set one.
    pub retry: Option<Duration>,
}

/// A streaming `text/event-stream` decoder (WHATWG HTML, "Server-sent events", §9.2.6).
///
/// It follows every rule of the format: CR, LF and CRLF line ends (a CRLF split across chunks
/// included), multi-line `data`, `event`, `id` (ignored when it holds NUL or another control
/// character, which could not be sent back in `Last-Event-ID`, or is longer than
/// [`MAX_EVENT_ID_BYTES`]), `retry` (digits only), comments, unknown fields, and a leading BOM.
/// An event larger than the configured maximum is an error, and the last event ID is shared by
/// the events that carry it, not copied, so a hostile server cannot make the decoder hold more
/// than a small multiple of what it sent.
///
/// ```
/// use tower_mcp_oauth::transport::SseDecoder;
///
/// let mut decoder = SseDecoder::new(1024);
/// let mut events = Vec::new();
/// decoder.feed(b"id: 7\r\ndata: {\"jsonrpc\":", &mut events).unwrap();
/// decoder.feed(b"\"2.0\"}\r\n\r\n", &mut events).unwrap();
/// assert_eq!(events[0].data, r#"{"jsonrpc":"2.0"}"#);
/// assert_eq!(events[0].id.as_deref(), Some("7"));
/// ```
///
/// The decoder's state between chunks.
#[derive(Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    /// The id field's value, committed to `last_id` when the block is dispatched.
    id_buffer: Option<Arc<str>>,
    last_id: Option<Arc<str>>,
    retry: Option<Duration>,
    block_retry: Option<Duration>,
}

/// The longest event ID kept; a longer `id` field is ignored, as one holding NUL is. Event IDs
/// are cursors (a counter, a UUID), and each is sent back in `Last-Event-ID`.
pub const MAX_EVENT_ID_BYTES: usize = 1024;

fn too_large(max: usize) -> Error {
    Error::new(
        ErrorKind::BodyTooLarge,
        format!("a server-sent event is larger than {max} bytes"),
    )
}

impl SseDecoder {
    /// A decoder refusing events (and lines) larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            after_cr: false,
            started: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            id_buffer: None,
            last_id: None,
            retry: None,
            block_retry: None,
        }
    }

    /// The last event ID of a dispatched block, for `Last-Event-ID` when reconnecting (an id
    /// inside an event cut short by a dropped connection does not count).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Bytes held between chunks: the unfinished line, the block being built and the ids.
    #[cfg(test)]
    fn buffered_bytes(&self) -> usize {
        self.line.len()
            + self.data.len()
            + self.event.as_ref().map_or(0, String::len)
            + self.id_buffer.as_ref().map_or(0, |id| id.len())
            + self.last_id.as_ref().map_or(0, |id| id.len())
    }

    /// The reconnection time the server asked for, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Decodes `chunk`, appending every completed event to `out`.
    ///
    /// # Errors
    /// [`ErrorKind::BodyTooLarge`] when an event or a line passes the maximum.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), Error> {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) {
            if self.line.is_empty() {
                self.process_line(&chunk[..end], out)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&chunk[..end]);
                let result = self.process_line(&line, out);
                line.clear();
                self.line = line;
                result?;
            }
            if chunk[end] == b'\r' {
                match chunk.get(end + 1) {
                    Some(b'\n') => chunk = &chunk[end + 2..],
                    Some(_) => chunk = &chunk[end + 1..],
                    None => {
                        self.after_cr = true;
                        chunk = &[];
                    }
                }
            } else {
                chunk = &chunk[end + 1..];
            }
        }
        if self.line.len() + chunk.len() > self.max_event_bytes {
            return Err(too_large(self.max_event_bytes));
        }
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    fn process_line(&mut self, mut line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), Error> {
        if !self.started {
            self.started = true;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    return Err(too_large(self.max_event_bytes));
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // An id that cannot go back in a `Last-Event-ID` header (a control character) is
            // ignored like one holding NUL, so every reader resumes from the same id.
            b"id"
                if value.len() <= MAX_EVENT_ID_BYTES
                    && !value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) =>
            {
                self.id_buffer = Some(String::from_utf8_lossy(value).into());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(millis) = std::str::from_utf8(value).unwrap_or("").parse::<u64>() {
                    self.retry = Some(Duration::from_millis(millis));
                    self.block_retry = self.retry;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        // The id is committed at the blank line, data or not (WHATWG dispatch step 1).
        if self.id_buffer.is_some() {
            self.last_id = self.id_buffer.clone();
        }
        let event = self.event.take();
        let retry = self.block_retry.take();
        if !self.has_data {
            // No data: nothing is dispatched (a retry-only block still changed the delay).
            self.data.clear();
            return;
        }
        self.has_data = false;
        self.data.pop(); // the last "\n"
        let data = match String::from_utf8(std::mem::take(&mut self.data)) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        out.push(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".into()),
            data,
            id: self.last_id.clone(),
            retry,
        });
    }
}

/// A body decoded as a stream of [`SseEvent`]s.
pub struct SseStream<B> {
    body: B,
    decoder: SseDecoder,
    ready: VecDeque<SseEvent>,
    scratch: Vec<SseEvent>,
    done: bool,
}

impl<B> SseStream<B> {
    /// Decodes `body`, refusing events over `max_event_bytes`.
    pub fn new(body: B, max_event_bytes: usize) -> Self {
        Self {
            body,
            decoder: SseDecoder::new(max_event_bytes),
            ready: VecDeque::new(),
            scratch: Vec::new(),
            done: false,
        }
    }

    /// The decoder's state: last event ID and retry delay, for reconnecting.
    pub fn decoder(&self) -> &SseDecoder {
        &self.decoder
    }
}

impl<B> Stream for SseStream<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Item = Result<SseEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                // End of stream: a half-received event is dropped, as the spec says.
                Poll::Ready(None) => this.done = true,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Error::new(
                        ErrorKind::Http,
                        "the event stream failed",
                    )
                    .with_boxed_source(e.into()))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Err(e) = this.decoder.feed(&data, &mut this.scratch) {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    this.ready.extend(this.scratch.drain(..));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new(1 << 20);
        let mut events = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut events).unwrap();
        }
        events
    }

    fn datas(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn line_endings_cr_lf_crlf_and_split_crlf() {
        let events = decode_all(&[
            b"data: a\r\rdata: b\n\ndata: c\r\n\r\ndata: d\r",
            b"\n\r",
            b"\n",
        ]);
        assert_eq!(datas(&events), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn multi_line_data_event_id_retry_and_comments() {
        let events = decode_all(&[
            b": comment\nevent: update\ndata: one\ndata:two\ndata\nid: 42\nretry: 1500\n\n",
        ]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "update");
        assert_eq!(events[0].data, "one\ntwo\n");
        assert_eq!(events[0].id.as_deref(), Some("42"));
        assert_eq!(events[0].retry, Some(Duration::from_millis(1500)));
        // The id carries over; the event type does not.
        let events = decode_all(&[b"id: 1\ndata: x\n\ndata: y\n\n"]);
        assert_eq!(events[1].id.as_deref(), Some("1"));
        assert_eq!(events[1].event, "message");
    }

    #[test]
    fn odd_fields_are_ignored_as_the_spec_says() {
        let events = decode_all(&[b"retry: 12a\nid: a\0b\nunknown: x\ndata: v\n\n"]);
        assert_eq!(events[0].retry, None);
        assert_eq!(events[0].id, None);
        // A block without data dispatches nothing; a field with no colon has an empty value.
        let events = decode_all(&[b"event: x\n\ndata\n\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "");
        assert_eq!(events[0].event, "message");
    }

    #[test]
    fn a_leading_bom_is_skipped_even_when_split() {
        let events = decode_all(&[b"\xEF\xBB", b"\xBFdata: hi\n\n"]);
        assert_eq!(datas(&events), vec!["hi"]);
        let events = decode_all(&[b"data: \xEF\xBB\xBFkept\n\n"]);
        assert_eq!(events[0].data, "\u{feff}kept");
    }

    #[test]
    fn an_unfinished_event_at_the_end_is_dropped() {
        assert!(decode_all(&[b"data: never dispatched\n"]).is_empty());
        // Its id does not count for resuming either.
        let mut decoder = SseDecoder::new(1024);
        let mut events = Vec::new();
        decoder
            .feed(b"id: 1\ndata: a\n\nid: 2\ndata: cut", &mut events)
            .unwrap();
        assert_eq!(decoder.last_event_id(), Some("1"));
        // An id-only block still moves the last event id.
        decoder.feed(b"\n\nid: 3\n\n", &mut events).unwrap();
        assert_eq!(decoder.last_event_id(), Some("3"));
    }

    #[test]
    fn an_empty_chunk_after_cr_does_not_split_a_crlf() {
        let events = decode_all(&[b"data: a\r", b"", b"\ndata: b\n\n"]);
        assert_eq!(datas(&events), vec!["a\nb"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let input = b"\xEF\xBB\xBFevent: e\r\ndata: 1\rdata: 2\n\n: c\r\nid: 9\ndata: 3\r\n\r\n";
        let whole = decode_all(&[input]);
        for split in 0..input.len() {
            assert_eq!(
                decode_all(&[&input[..split], &input[split..]]),
                whole,
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_id_that_cannot_be_sent_back_in_a_header_is_ignored() {
        let events =
            decode_all(&[b"id: 1\ndata: a\n\nid: 2\x01\ndata: b\n\nid: 3\x7f\ndata: c\n\n"]);
        let ids: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, vec![Some("1"), Some("1"), Some("1")]);
        assert_eq!(
            decode_all(&[b"id: a\tb\ndata: x\n\n"])[0].id.as_deref(),
            Some("a\tb")
        );
    }

    #[test]
    fn an_id_is_capped_and_shared_not_copied_into_every_event() {
        let mut decoder = SseDecoder::new(16 << 20);
        let mut events = Vec::new();
        let huge = format!("id: {}\n\n", "i".repeat(1 << 20));
        decoder.feed(huge.as_bytes(), &mut events).unwrap();
        assert_eq!(decoder.last_event_id(), None, "an oversized id is ignored");

        let id = "i".repeat(MAX_EVENT_ID_BYTES);
        decoder
            .feed(format!("id: {id}\n\n").as_bytes(), &mut events)
            .unwrap();
        decoder
            .feed("data\n\n".repeat(1_000).as_bytes(), &mut events)
            .unwrap();
        assert_eq!(events.len(), 1_000);
        let first = events[0].id.clone().unwrap();
        assert_eq!(&*first, id);
        assert!(events
            .iter()
            .all(|e| Arc::ptr_eq(e.id.as_ref().unwrap(), &first)));
    }

    /// Text made mostly of the format's own pieces, so that the properties reach every rule.
    fn sse_text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data: ".to_vec()),
            Just(b"data".to_vec()),
            Just(b"id: ".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b"retry: ".to_vec()),
            Just(b": ".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just(b"\0".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
            "[a-z0-9 ]{0,12}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            input in sse_text(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        ) {
            let whole = decode_all(&[&input]);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points {
                chunks.push(&input[start..point]);
                start = point;
            }
            chunks.push(&input[start..]);
            prop_assert_eq!(decode_all(&chunks), whole);
        }

        #[test]
        fn memory_held_stays_within_the_limits(
            chunks in proptest::collection::vec(sse_text(), 0..16),
            max in 1usize..256,
        ) {
            let mut decoder = SseDecoder::new(max);
            let mut events = Vec::new();
            for chunk in &chunks {
                match decoder.feed(chunk, &mut events) {
                    Ok(()) => {}
                    Err(error) => {
                        prop_assert_eq!(error.kind(), ErrorKind::BodyTooLarge);
                        break;
                    }
                }
                prop_assert!(decoder.buffered_bytes() <= 3 * max + 2 * MAX_EVENT_ID_BYTES);
            }
            for event in &events {
                // Invalid UTF-8 becomes U+FFFD: three bytes for one at most.
                prop_assert!(event.data.len() <= 3 * max);
                prop_assert!(event.id.as_ref().map_or(0, |id| id.len()) <= MAX_EVENT_ID_BYTES);
            }
        }
    }

    #[test]
    fn oversized_events_and_lines_are_errors() {
        let mut decoder = SseDecoder::new(16);
        let mut events = Vec::new();
        assert_eq!(
            decoder
                .feed(b"data: 0123456789abcdef\n", &mut events)
                .unwrap_err()
                .kind(),
            ErrorKind::BodyTooLarge
        );
        let mut decoder = SseDecoder::new(16);
        assert!(
            decoder.feed(&[b'x'; 17], &mut events).is_err(),
            "a line without end"
        );
        let mut decoder = SseDecoder::new(16);
        decoder.feed(b"data: 01234567\n", &mut events).unwrap();
        assert!(
            decoder.feed(b"data: 01234567\n", &mut events).is_err(),
            "lines add up"
        );
    }
}
