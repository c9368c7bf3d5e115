//! The loopback callback server under pressure: accept errors (no file descriptor left), a
//! connection that never sends its request, and the port released after the flow. Its own test
//! binary, since it uses up the process's file descriptors for a moment.

use std::io::{Read, Write};
use std::time::Duration;

use tower_mcp_oauth::client::{AuthorizationHandler, LoopbackHandler};
use url::Url;

fn authorization_url() -> Url {
    Url::parse("https://auth.example.com/authorize?state=st4te&client_id=c").unwrap()
}

fn callback(handler: &LoopbackHandler) -> std::net::TcpStream {
    std::net::TcpStream::connect(handler.redirect_uri().socket_addrs(|| None).unwrap()[0]).unwrap()
}

fn callback_request(handler: &LoopbackHandler) -> String {
    format!(
        "GET {}?code=c0de&state=st4te HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        handler.redirect_uri().path()
    )
}

/// Sends the redirect as a browser would, reading the page it gets back.
async fn send_callback(handler: &LoopbackHandler) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = handler.redirect_uri().socket_addrs(|| None).unwrap()[0];
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(callback_request(handler).as_bytes())
        .await
        .unwrap();
    let mut page = Vec::new();
    let _ = stream.read_to_end(&mut page).await;
}

/// The soft limit on open files, when it is low enough to reach in a test.
fn reachable_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft: usize = line.split_whitespace().nth(3)?.parse().ok()?;
    (soft <= 200_000).then_some(soft)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_server_keeps_accepting_through_errors_times_out_idle_connections_and_releases_its_port(
) {
    let handler = std::sync::Arc::new(
        LoopbackHandler::bind()
            .await
            .unwrap()
            .open_browser(false)
            .timeout(Duration::from_secs(20))
            .connection_timeout(Duration::from_secs(1)),
    );
    let address = handler.redirect_uri().socket_addrs(|| None).unwrap()[0];
    let waiting = {
        let handler = handler.clone();
        tokio::spawn(async move { handler.authorize(&authorization_url()).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A connection that never sends its request is closed after the connection timeout.
    let mut idle = callback(&handler);
    idle.write_all(b"GET /callback HTTP/1.1\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = idle.read_to_end(&mut rest);
    let timed_out = matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    assert!(!timed_out, "the server kept the idle connection open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !waiting.is_finished(),
        "an idle connection does not end the wait"
    );

    match reachable_file_limit() {
        Some(limit) => {
            // The client's socket exists first; then every descriptor is used up, so the
            // connection it makes cannot be accepted (EMFILE) until they are freed.
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            let mut files = Vec::with_capacity(limit);
            while let Ok(file) = std::fs::File::open("/dev/null") {
                files.push(file);
            }
            let mut stream = socket.connect(address).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut stream, callback_request(&handler).as_bytes())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let still_waiting = !waiting.is_finished();
            drop(files);
            assert!(still_waiting, "an accept error does not end the sign-in");
            // Kept open until the server has answered.
            tokio::spawn(async move {
                let mut answer = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer).await;
            });
        }
        None => {
            eprintln!("skipped the accept-error part: the open-files limit is too high to reach");
            send_callback(&handler).await;
        }
    }
    let redirect = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the sign-in ends")
        .unwrap()
        .unwrap();
    assert!(redirect.query().unwrap().contains("code=c0de"));

    // The port is free once the flow ended, and the next sign-in takes it again.
    drop(std::net::TcpListener::bind(address).expect("the port was released"));
    let again = {
        let handler = handler.clone();
        tokio::spawn(async move { handler.authorize(&authorization_url()).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    send_callback(&handler).await;
    let redirect = tokio::time::timeout(Duration::from_secs(10), again)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(redirect.query().unwrap().contains("state=st4te"));
}
