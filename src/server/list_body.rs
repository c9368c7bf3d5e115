//! [`ListsBody`]: the body of an answer that [`FilterMcpLists`](super::FilterMcpLists) passes
//! on: as it came, rewritten whole (JSON), or rewritten event by event (SSE).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;

use crate::error::BoxError;
use crate::server::mcp::McpScopes;
use crate::server::mcp_lists::{may_hold_a_list, ListView};
use crate::server::verify::AuthInfo;

/// Whose lists to rewrite, and how.
#[derive(Debug, Clone)]
pub(crate) struct ListAnswers {
    pub(crate) policy: Arc<McpScopes>,
    /// The caller, as the bearer layer let it in (none: a caller with no scopes).
    pub(crate) caller: Option<AuthInfo>,
}

impl ListAnswers {
    /// Rewrites the list answers in `message`; whether there was any.
    pub(crate) fn rewrite(&self, message: &mut Value) -> bool {
        let view = ListView {
            policy: &self.policy,
            granted: self.caller.as_ref().map_or(&[], |info| &info.scopes),
        };
        view.rewrite(message)
    }
}

pin_project_lite::pin_project! {
    /// The body of an answer from [`FilterMcpLists`](super::FilterMcpLists): the service's own
    /// body when the request listed nothing, else the answer with its lists rewritten.
    pub struct ListsBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Whole { bytes: Option<Bytes> },
        Events { #[pin] body: B, events: Box<EventRewriter> },
    }
}

impl<B> std::fmt::Debug for ListsBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListsBody").finish_non_exhaustive()
    }
}

impl<B> ListsBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn whole(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Whole { bytes: Some(bytes) },
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Whole { bytes: None },
        }
    }

    /// `body` as an event stream, its list answers rewritten; an event over `max_event_bytes`,
    /// or one that may hold a list but cannot be read, ends the stream with an error.
    pub(crate) fn events(body: B, answers: ListAnswers, max_event_bytes: usize) -> Self {
        Self {
            kind: Kind::Events {
                body,
                events: Box::new(EventRewriter::new(answers, max_event_bytes)),
            },
        }
    }
}

impl<B: Default> Default for ListsBody<B> {
    fn default() -> Self {
        Self::inner(B::default())
    }
}

impl<B> Body for ListsBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Whole { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            KindProj::Events { mut body, events } => loop {
                if let Some(frame) = events.next_frame() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if events.finished {
                    return Poll::Ready(None);
                }
                match std::task::ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => events.feed(data)?,
                        Err(frame) => {
                            events.finish()?;
                            events.trailers = frame.into_trailers().ok();
                        }
                    },
                    Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                    None => events.finish()?,
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Whole { bytes } => bytes.is_none(),
            Kind::Events { events, .. } => {
                events.finished && events.out.is_empty() && events.trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Whole { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Events { .. } => SizeHint::default(),
        }
    }
}

/// Splits an event stream into its events (blocks ended by a blank line), rewrites those that
/// answer a list, and passes everything else through byte for byte. Every event is looked at:
/// a stream may carry, or replay, the answer to a list asked on another request.
#[derive(Debug)]
struct EventRewriter {
    answers: ListAnswers,
    max_event_bytes: usize,
    buffer: BytesMut,
    scanned: usize,
    line_start: usize,
    /// The last byte scanned was a CR ending a line: a LF next belongs to it.
    after_cr: bool,
    out: VecDeque<Bytes>,
    finished: bool,
    trailers: Option<HeaderMap>,
}

impl EventRewriter {
    fn new(answers: ListAnswers, max_event_bytes: usize) -> Self {
        Self {
            answers,
            max_event_bytes,
            buffer: BytesMut::new(),
            scanned: 0,
            line_start: 0,
            after_cr: false,
            out: VecDeque::new(),
            finished: false,
            trailers: None,
        }
    }

    fn next_frame(&mut self) -> Option<Frame<Bytes>> {
        if let Some(bytes) = self.out.pop_front() {
            return Some(Frame::data(bytes));
        }
        if self.finished {
            return self.trailers.take().map(Frame::trailers);
        }
        None
    }

    fn feed(&mut self, chunk: Bytes) -> Result<(), BoxError> {
        self.buffer.extend_from_slice(&chunk);
        while self.scanned < self.buffer.len() {
            let byte = self.buffer[self.scanned];
            self.scanned += 1;
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                self.line_start = self.scanned;
                continue;
            }
            if byte != b'\r' && byte != b'\n' {
                continue;
            }
            let blank = self.scanned - 1 == self.line_start;
            if blank && byte == b'\r' {
                // The event ends with this CR and, if one comes, the LF after it.
                match self.buffer.get(self.scanned) {
                    Some(b'\n') => self.scanned += 1,
                    Some(_) => {}
                    None => {
                        self.scanned -= 1;
                        break;
                    }
                }
            } else {
                self.after_cr = byte == b'\r';
            }
            self.line_start = self.scanned;
            if blank {
                let event = self.buffer.split_to(self.scanned).freeze();
                self.scanned = 0;
                self.line_start = 0;
                let rewritten = self.rewrite(&event)?;
                self.out.push_back(rewritten.unwrap_or(event));
            }
        }
        if self.buffer.len() > self.max_event_bytes {
            return Err("an event of an MCP answer is larger than the list filter reads".into());
        }
        Ok(())
    }

    /// The event rewritten, when its data is a JSON-RPC message answering a list; an error
    /// when it may hold one but cannot be read (a client might read it whole).
    fn rewrite(&self, event: &[u8]) -> Result<Option<Bytes>, BoxError> {
        if !may_hold_a_list(event) {
            return Ok(None);
        }
        let unreadable =
            || -> BoxError { "an MCP answer that may hold a list cannot be read".into() };
        let text = std::str::from_utf8(event).map_err(|_| unreadable())?;
        // A byte-order mark may open the stream.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut data: Option<String> = None;
        let mut others = Vec::new();
        for line in text.split(['\r', '\n']).filter(|line| !line.is_empty()) {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            if field == "data" {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                }
            } else {
                others.push(line);
            }
        }
        let Some(data) = data else {
            return Ok(None);
        };
        let mut message: Value = serde_json::from_str(&data).map_err(|_| unreadable())?;
        if !self.answers.rewrite(&mut message) {
            return Ok(None);
        }
        let mut rewritten = String::new();
        for line in others {
            rewritten.push_str(line);
            rewritten.push('\n');
        }
        rewritten.push_str("data: ");
        rewritten.push_str(&message.to_string());
        rewritten.push_str("\n\n");
        Ok(Some(Bytes::from(rewritten)))
    }

    /// The stream ended: what is left (an event ended by a lone CR at the very end is whole)
    /// goes out, rewritten if it answers a list.
    fn finish(&mut self) -> Result<(), BoxError> {
        self.finished = true;
        let rest = self.buffer.split().freeze();
        if !rest.is_empty() {
            let rewritten = self.rewrite(&rest)?;
            self.out.push_back(rewritten.unwrap_or(rest));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn answers() -> ListAnswers {
        ListAnswers {
            policy: Arc::new(
                McpScopes::new()
                    .tool("secret", ["admin"])
                    .filter_lists(true),
            ),
            caller: None,
        }
    }

    /// `chunks` through the rewriter, as one string.
    async fn rewrite(chunks: Vec<&'static str>, max: usize) -> Result<String, BoxError> {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c)))),
        );
        let body = ListsBody::events(StreamBody::new(stream), answers(), max);
        let bytes = body.collect().await?.to_bytes();
        Ok(String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_answer_is_rewritten_and_everything_else_passes_byte_for_byte() {
        let list =
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"},{"name":"echo"}]}}"#;
        let split: Vec<&'static str> = vec![
            ": keep-alive\r\n\r",
            "\nid: 0\r\nretry: 3000\r\ndata:\r\n\r\n",
            "event: message\r\nid: 1\r\ndata: ",
            Box::leak(list[..20].to_owned().into_boxed_str()),
            Box::leak(format!("{}\r\n\r\n", &list[20..]).into_boxed_str()),
            "data: {\"after\":true}\n\n",
        ];
        let text = rewrite(split, 1 << 16).await.unwrap();
        let expected = concat!(
            ": keep-alive\r\n\r\nid: 0\r\nretry: 3000\r\ndata:\r\n\r\n",
            "event: message\nid: 1\n",
            "data: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[{\"name\":\"echo\"}]}}\n\n",
            "data: {\"after\":true}\n\n",
        );
        assert_eq!(text, expected);
    }

    #[tokio::test]
    async fn multi_line_data_and_bare_cr_line_ends_are_read() {
        let text = rewrite(
            vec![
                "data: {\"jsonrpc\":\"2.0\",\"id\":1,\r",
                "data: \"result\":{\"tools\":[{\"name\":\"secret\"}]}}\r\r",
            ],
            1 << 16,
        )
        .await
        .unwrap();
        assert_eq!(
            text,
            "data: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[]}}\n\n"
        );
    }

    #[tokio::test]
    async fn an_event_that_may_hold_a_list_but_cannot_be_read_ends_the_stream() {
        let unreadable = "data: {\"result\":{\"tools\":[\n\n";
        assert!(rewrite(vec![unreadable], 1 << 16).await.is_err());
        // A byte-order mark before the first field is read past.
        let text = rewrite(
            vec!["\u{feff}data: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n"],
            1 << 16,
        )
        .await
        .unwrap();
        assert_eq!(text, "data: {\"id\":1,\"result\":{\"tools\":[]}}\n\n");
    }

    #[tokio::test]
    async fn an_oversized_event_ends_the_stream() {
        let error = rewrite(vec!["data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"], 16)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("larger"), "{error}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any bytes, cut anywhere: the rewriter never panics, and with nothing to answer
            /// they come out as they went in.
            #[test]
            fn any_stream_is_passed_or_rewritten_without_panicking(
                bytes in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b':'), any::<u8>()], 0..400),
                cut in 0..400usize,
            ) {
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let cut = cut.min(bytes.len());
                let (a, b) = bytes.split_at(cut);
                let chunks = vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)];
                let stream = futures_util::stream::iter(
                    chunks.into_iter().map(|c| Ok::<_, std::convert::Infallible>(Frame::data(c))),
                );
                let body = ListsBody::events(StreamBody::new(stream), answers(), 1 << 16);
                let out = runtime.block_on(body.collect()).unwrap().to_bytes();
                if !bytes.windows(4).any(|w| w == b"data") {
                    prop_assert_eq!(&out[..], &bytes[..]);
                }
            }
        }
    }
}
