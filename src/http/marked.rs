//! [`Marked`]: a connection that tells the pool something more of itself, for the connectors of
//! [`HyperClient`](super::HyperClient) and of its proxies.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// What a wrapper adds to the metadata its connection gives the pool.
pub(crate) trait Mark {
    fn mark(&self, connected: Connected) -> Connected;
}

/// A connection that says something more of itself (`M`); reads and writes pass through.
pub(crate) struct Marked<T, M> {
    pub(super) io: T,
    pub(super) mark: M,
}

impl<T: Connection, M: Mark> Connection for Marked<T, M> {
    fn connected(&self) -> Connected {
        self.mark.mark(self.io.connected())
    }
}

impl<T: Read + Unpin, M: Unpin> Read for Marked<T, M> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin, M: Unpin> Write for Marked<T, M> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
