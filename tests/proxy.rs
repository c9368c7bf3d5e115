//! Outbound proxies: the crate's hyper client through a real HTTP proxy on 127.0.0.1 (a small
//! one here, forwarding and CONNECT). The destination `mcp.test` resolves nowhere: only the proxy knows where it is, as behind a corporate proxy.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::forward_proxy::proxy;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tower_mcp_oauth::http::{HyperClient, RequestBody};

/// An origin server answering `hello` on http.
async fn origin() -> std::net::SocketAddr {
    let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let (listener, base) = support::bind().await;
    support::serve_on(listener, app);
    url::Url::parse(&base)
        .unwrap()
        .socket_addrs(|| None)
        .unwrap()[0]
}

async fn get(client: &HyperClient, url: &str) -> Result<(StatusCode, Bytes), String> {
    let request = Request::get(url).body(RequestBody::default()).unwrap();
    let response = client.request(request).await.map_err(|e| {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        message
    })?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, body))
}

#[tokio::test]
async fn http_destinations_are_forwarded_through_the_proxy() {
    let origin = origin().await;
    let (proxy_url, seen) = proxy(origin).await;
    let client = HyperClient::builder()
        .proxy(&proxy_url, "")
        .unwrap()
        .build();
    let (status, body) = get(&client, "http://mcp.test/hello").await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    assert_eq!(
        seen.all()[0],
        ("GET http://mcp.test/hello HTTP/1.1".to_owned(), None)
    );
    // A proxy that wants credentials gets them with the forwarded request.
    let with_credentials = HyperClient::builder()
        .proxy(&proxy_url.replace("http://", "http://carol:s3cret@"), "")
        .unwrap()
        .build();
    let (status, _) = get(&with_credentials, "http://mcp.test/hello")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen.all()[1],
        (
            "GET http://mcp.test/hello HTTP/1.1".to_owned(),
            // carol:s3cret
            Some("Basic Y2Fyb2w6czNjcmV0".to_owned())
        )
    );
}

#[tokio::test]
async fn https_destinations_are_tunneled_with_the_proxy_credentials_and_tls_end_to_end() {
    // Behind the proxy, a TLS server whose certificate names localhost, not mcp.test: the
    // client checks the certificate of the origin itself, through the tunnel, and refuses it.
    let tls_origin = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let hellos = Arc::new(Mutex::new(Vec::new()));
        let record = hellos.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut first = [0u8; 1];
                if stream.read_exact(&mut first).await.is_ok() {
                    record.lock().unwrap().push(first[0]);
                }
            }
        });
        (address, hellos)
    };
    let (proxy_url, seen) = proxy(tls_origin.0).await;
    let with_credentials = proxy_url.replace("http://", "http://alice:pa%24%24word@");
    let client = HyperClient::builder()
        .proxy(&with_credentials, "")
        .unwrap()
        .build();
    let error = tokio::time::timeout(Duration::from_secs(10), get(&client, "https://mcp.test/x"))
        .await
        .expect("no hang")
        .unwrap_err();
    let (line, auth) = seen.all()[0].clone();
    assert_eq!(line, "CONNECT mcp.test:443 HTTP/1.1");
    // alice:pa$$word
    assert_eq!(auth.as_deref(), Some("Basic YWxpY2U6cGEkJHdvcmQ="));
    // What came through the tunnel was a TLS handshake (a record of type 22), not HTTP.
    assert_eq!(tls_origin.1.lock().unwrap().as_slice(), &[0x16]);
    assert!(
        !error.contains("pa$$word") && !error.contains("pa%24%24word"),
        "{error}"
    );
}

#[tokio::test]
async fn no_proxy_and_loopback_destinations_go_directly() {
    let origin = origin().await;
    let (proxy_url, seen) = proxy(origin).await;
    let client = HyperClient::builder()
        .proxy(&proxy_url, "direct.test, .internal")
        .unwrap()
        .build();
    // Loopback: directly, whatever the proxy settings.
    let (status, _) = get(&client, &format!("http://{origin}/hello"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    // Named in no_proxy: the client resolves it itself (and cannot, here).
    for host in ["direct.test", "api.internal"] {
        assert!(get(&client, &format!("http://{host}/hello")).await.is_err());
    }
    assert!(seen.all().is_empty(), "{:?}", seen.all());
    for bad in [
        "https://proxy.example:8443",
        "socks5://127.0.0.1:1080",
        "not a url",
    ] {
        let error = HyperClient::builder().proxy(bad, "").unwrap_err();
        assert_eq!(error.kind(), tower_mcp_oauth::ErrorKind::Config);
    }
    let error = HyperClient::builder()
        .proxy("https://user:hunter2@proxy.example", "")
        .unwrap_err();
    assert!(!error.to_string().contains("hunter2"));
}
