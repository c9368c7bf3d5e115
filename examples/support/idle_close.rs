//! Serving a router the way Node.js and uvicorn do: a kept-alive connection idle for `idle` is
//! closed by the server, whatever the client is about to send.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};

/// Serves `router` on `listener`, closing connections idle for `idle`.
pub async fn serve_closing_idle(listener: TcpListener, router: axum::Router, idle: Duration) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let io = IdleClosing {
                io: TokioIo::new(stream),
                idle,
                deadline: Box::pin(tokio::time::sleep(idle)),
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// A connection that reads as closed once nothing went through it for `idle`.
struct IdleClosing {
    io: TokioIo<tokio::net::TcpStream>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleClosing {
    fn active(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }
}

impl Read for IdleClosing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                self.active();
                Poll::Ready(result)
            }
            // Idle too long: report the end of the stream, and the server closes the socket.
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Write for IdleClosing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.active();
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
