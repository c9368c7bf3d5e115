//! A small HTTP proxy on 127.0.0.1 (forwarding and CONNECT) that sends every destination to one
//! upstream: destinations like `mcp.test` or `mcp.internal` then resolve only through it, as
//! behind a corporate proxy.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A request line the proxy got, and its `Proxy-Authorization`.
pub type Line = (String, Option<String>);

/// What the proxy saw.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<Line>>>);

impl Seen {
    pub fn all(&self) -> Vec<Line> {
        self.0.lock().unwrap().clone()
    }
}

/// A proxy on 127.0.0.1 that sends every destination to `upstream`: forwarded requests (the
/// absolute-form request line is kept, as a real proxy would pass it on after rewriting) and
/// CONNECT tunnels.
pub async fn proxy(upstream: std::net::SocketAddr) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Seen::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(client);
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_owned());
                }
                let auth = head
                    .iter()
                    .find_map(|h| h.strip_prefix("proxy-authorization: "))
                    .or_else(|| {
                        head.iter()
                            .find_map(|h| h.strip_prefix("Proxy-Authorization: "))
                    })
                    .map(str::to_owned);
                log.0.lock().unwrap().push((head[0].clone(), auth));
                let mut upstream = TcpStream::connect(upstream).await.unwrap();
                if head[0].starts_with("CONNECT ") {
                    reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap();
                } else {
                    // Forwarded: the origin server gets the request in origin form.
                    let mut parts = head[0].splitn(3, ' ');
                    let (method, target, version) = (
                        parts.next().unwrap(),
                        parts.next().unwrap(),
                        parts.next().unwrap(),
                    );
                    let path = url::Url::parse(target).unwrap().path().to_owned();
                    let mut request = format!("{method} {path} {version}\r\n");
                    for header in &head[1..] {
                        request.push_str(header);
                        request.push_str("\r\n");
                    }
                    request.push_str("\r\n");
                    upstream.write_all(request.as_bytes()).await.unwrap();
                }
                // What the reader took past the head (a POST's body) goes on too.
                let buffered = reader.buffer().to_vec();
                upstream.write_all(&buffered).await.unwrap();
                let mut client = reader.into_inner();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("http://{address}"), seen)
}
