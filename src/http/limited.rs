//! The one bounded body reader: every body the crate reads whole (OAuth responses, MCP
//! responses, request bodies checked for tool scopes, legacy SSE messages) goes through
//! [`read_limited`], which stops as soon as the body passes its limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Body;
use http_body_util::{LengthLimitError, Limited};

use crate::error::BoxError;

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Longer than the limit (or announced so by its size hint).
    TooLarge,
    /// The body itself failed.
    Body(BoxError),
}

pin_project_lite::pin_project! {
    /// The future of [`read_limited`]: a named type rather than an `async fn`, so that
    /// callers in spawned tasks and axum handlers need no higher-ranked `Send` proofs about
    /// the body's boxed error.
    pub(crate) struct ReadLimited<B> {
        #[pin]
        body: Limited<B>,
        collected: BytesMut,
        announced_too_large: bool,
    }
}

/// Reads `body` whole, refusing more than `limit` bytes.
pub(crate) fn read_limited<B>(body: B, limit: usize) -> ReadLimited<B>
where
    B: Body,
{
    let announced_too_large = body.size_hint().lower() > limit as u64;
    ReadLimited {
        body: Limited::new(body, limit),
        collected: BytesMut::new(),
        announced_too_large,
    }
}

impl<B> Future for ReadLimited<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, ReadError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if *this.announced_too_large {
            return Poll::Ready(Err(ReadError::TooLarge));
        }
        loop {
            match ready!(this.body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Ok(std::mem::take(this.collected).freeze())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.collected.put(data);
                    }
                }
                Some(Err(error)) if error.is::<LengthLimitError>() => {
                    return Poll::Ready(Err(ReadError::TooLarge))
                }
                Some(Err(error)) => return Poll::Ready(Err(ReadError::Body(error))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};
    use proptest::prelude::*;

    fn chunked(chunks: Vec<Vec<u8>>) -> impl Body<Data = Bytes, Error = std::io::Error> {
        let frames = chunks
            .into_iter()
            .map(|c| Ok(http_body::Frame::data(Bytes::from(c))));
        StreamBody::new(futures_util::stream::iter(frames))
    }

    proptest! {
        /// Whatever the chunking, a body is read whole exactly when it fits the limit.
        #[test]
        fn a_body_is_read_whole_exactly_when_it_fits(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            limit in 0usize..300,
        ) {
            let whole: Vec<u8> = chunks.concat();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let read = runtime.block_on(read_limited(chunked(chunks), limit));
            match read {
                Ok(bytes) => prop_assert!(whole.len() <= limit && bytes == whole),
                Err(ReadError::TooLarge) => prop_assert!(whole.len() > limit),
                Err(ReadError::Body(error)) => prop_assert!(false, "{error}"),
            }
        }
    }

    #[tokio::test]
    async fn an_announced_length_over_the_limit_is_refused_before_reading() {
        let read = read_limited(Full::new(Bytes::from_static(b"0123456789")), 9).await;
        assert!(matches!(read, Err(ReadError::TooLarge)));
    }

    #[tokio::test]
    async fn a_failing_body_reports_its_error() {
        let failing = StreamBody::new(futures_util::stream::iter([Err::<
            http_body::Frame<Bytes>,
            _,
        >(
            std::io::Error::other("reset"),
        )]));
        match read_limited(failing, 100).await {
            Err(ReadError::Body(error)) => assert_eq!(error.to_string(), "reset"),
            other => panic!("{other:?}"),
        }
    }
}
