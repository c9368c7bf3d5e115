//! The embedded authorization server's device authorization grant (RFC 8628) over real HTTP on
//! 127.0.0.1: the device endpoint, the verification page a person answers, and the token
//! endpoint's polls (pending, slow down, approved once, denied, expired).
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use support::auth_server::{answer_device_page, Server, DEVICE_GRANT};
use support::{get, send};
use tower_mcp_oauth::authorization_server::ConsentPage;
use tower_mcp_oauth::server::{JwtVerifier, TokenVerifier};

/// A server whose verification page asks `alice`, polled at least every 2 s (the server
/// counts whole seconds: two polls in a row are always too soon for 2 s, not for 1 s).
async fn asking_server() -> Server {
    Server::start(|c| {
        c.approval_policy(ConsentPage::new("alice"))
            .device_poll_interval(Duration::from_secs(2))
    })
    .await
}

#[tokio::test]
async fn a_device_is_approved_on_the_page_and_collects_its_tokens_once() {
    let s = asking_server().await;
    let metadata = get(&format!(
        "{}/.well-known/oauth-authorization-server",
        s.base
    ))
    .await
    .json();
    assert_eq!(
        metadata["device_authorization_endpoint"],
        format!("{}/device_authorization", s.base)
    );
    assert!(metadata["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(DEVICE_GRANT)));

    let client = s.device_client().await;
    let started = s.start_device(&client, "mcp:tools").await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    assert_eq!(started.headers["cache-control"], "no-store");
    let started = started.json();
    let user_code = started["user_code"].as_str().unwrap();
    let device_code = started["device_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX: {user_code}");
    assert_eq!(started["verification_uri"], format!("{}/device", s.base));
    assert!(started["verification_uri_complete"]
        .as_str()
        .unwrap()
        .ends_with(&format!("user_code={user_code}")));
    assert_eq!(started["interval"], 2);
    assert_eq!(started["expires_in"], 600);

    let pending = s.poll_device(&client, device_code).await;
    assert_eq!(pending.error(), "authorization_pending");
    // Polled again at once: too soon.
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "slow_down"
    );

    // The person types the code in lower case, as people do.
    let (question, answer) =
        answer_device_page(&s.base, &user_code.to_lowercase(), "approve").await;
    let html = question.text();
    assert!(html.contains("a device") && html.contains(user_code) && html.contains("mcp:tools"));
    assert!(
        html.contains("id=\"unverified\""),
        "a self-registered name is marked"
    );
    assert!(question.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(answer.text().contains("Approved"));

    // Approved: collected at the next poll, however soon.
    let tokens = s.poll_device(&client, device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let tokens = tokens.json();
    assert_eq!(tokens["scope"], "mcp:tools");
    assert!(tokens["refresh_token"].is_string());
    let verifier = JwtVerifier::builder(&s.base, &s.resource)
        .jwks_url(format!("{}/jwks", s.base))
        .build()
        .unwrap();
    let info = verifier
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(info.subject.as_deref(), Some("alice"));
    assert_eq!(info.client_id.as_deref(), Some(client.as_str()));

    // Handed out once; the code is spent, and the page knows it.
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "invalid_grant"
    );
    let again = get(&format!("{}/device?user_code={user_code}", s.base)).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    // The refresh token works as any other.
    let refreshed = s
        .refresh(&client, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
}

#[tokio::test]
async fn a_denied_device_gets_access_denied() {
    let s = asking_server().await;
    let client = s.device_client().await;
    let started = s.start_device(&client, "mcp:tools").await.json();
    let (_, answer) =
        answer_device_page(&s.base, started["user_code"].as_str().unwrap(), "deny").await;
    assert!(answer.text().contains("Denied"));
    let device_code = started["device_code"].as_str().unwrap();
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "access_denied"
    );
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn an_answer_posted_without_the_pages_cookie_changes_nothing() {
    let s = asking_server().await;
    let client = s.device_client().await;
    let started = s.start_device(&client, "mcp:tools").await.json();
    let user_code = started["user_code"].as_str().unwrap();
    let forged = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("user_code", user_code)
        .append_pair("csrf", "guessed")
        .append_pair("decision", "approve")
        .finish();
    let refused = send(
        Request::post(format!("{}/device", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "cookie",
                format!("mcp_device_{}=other", user_code.replace('-', "")),
            )
            .body(Full::from(forged.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // From another site: refused before anything else.
    let cross_site = send(
        Request::post(format!("{}/device", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://evil.example")
            .body(Full::from(forged))
            .unwrap(),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    let device_code = started["device_code"].as_str().unwrap();
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "authorization_pending"
    );
}

#[tokio::test]
async fn codes_that_are_not_issued_get_the_entry_page_again() {
    let s = asking_server().await;
    for typed in ["BCDF", "AAAA-AAAA", "BCDF-GHJK", &"B".repeat(10_000)] {
        let answer = get(&format!(
            "{}/device?user_code={}",
            s.base,
            url::form_urlencoded::byte_serialize(typed.as_bytes()).collect::<String>()
        ))
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{typed}");
        assert!(answer.text().contains("id=\"error\""));
    }
    let entry = get(&format!("{}/device", s.base)).await;
    assert_eq!(entry.status, StatusCode::OK);
    assert!(entry.text().contains("name=\"user_code\""));
}

#[tokio::test]
async fn a_device_code_is_only_good_for_its_client_and_its_lifetime() {
    let s = Server::start(|c| {
        c.device_code_ttl(Duration::from_secs(2))
            .device_poll_interval(Duration::from_secs(1))
    })
    .await;
    let client = s.device_client().await;
    let other = s.device_client().await;
    let started = s.start_device(&client, "mcp:tools").await.json();
    let device_code = started["device_code"].as_str().unwrap();
    // Another client presenting the code learns nothing and spends nothing.
    assert_eq!(
        s.poll_device(&other, device_code).await.error(),
        "invalid_grant"
    );
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "authorization_pending"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "expired_token"
    );
    // An unapproved code on the page once it expired.
    let late = get(&format!(
        "{}/device?user_code={}",
        s.base,
        started["user_code"].as_str().unwrap()
    ))
    .await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn clients_without_the_grant_and_servers_without_it_refuse_it() {
    let s = asking_server().await;
    let code_client = s.public_client().await;
    assert_eq!(
        s.start_device(&code_client, "mcp:tools").await.error(),
        "unauthorized_client"
    );
    let client = s.device_client().await;
    assert_eq!(
        s.start_device(&client, "mcp:unknown").await.error(),
        "invalid_scope"
    );

    let off = Server::start(|c| c.device_grant(false)).await;
    let metadata = get(&format!(
        "{}/.well-known/oauth-authorization-server",
        off.base
    ))
    .await
    .json();
    assert!(metadata.get("device_authorization_endpoint").is_none());
    assert!(!metadata["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(DEVICE_GRANT)));
    let refused = off
        .register(json!({
            "token_endpoint_auth_method": "none",
            "grant_types": [DEVICE_GRANT],
        }))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error(), "invalid_client_metadata");
    assert_eq!(
        off.post_form("/device_authorization", &[("client_id", "x")], None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        off.poll_device("x", "y").await.error(),
        "invalid_client",
        "an unknown client is refused first"
    );
}

#[tokio::test]
async fn opening_the_link_approves_nothing_even_where_the_policy_would() {
    // AutoApprove would approve an authorization request at once; a device still asks.
    let s = Server::start(|c| c.device_poll_interval(Duration::from_secs(1))).await;
    let client = s.device_client().await;
    let started = s.start_device(&client, "mcp:tools").await.json();
    let link = started["verification_uri_complete"].as_str().unwrap();
    let page = get(link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("id=\"approve\""), "{}", page.text());
    let device_code = started["device_code"].as_str().unwrap();
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "authorization_pending"
    );
    let (_, answer) =
        answer_device_page(&s.base, started["user_code"].as_str().unwrap(), "approve").await;
    assert!(answer.text().contains("Approved"));
}

#[tokio::test]
async fn a_policy_that_refuses_the_viewer_changes_nothing() {
    use tower_mcp_oauth::authorization_server::{
        ApprovalPolicy, AuthorizationDecision, BoxFuture, ConsentRequest,
    };
    /// Refuses whoever is not signed in (no `x-user` header), as a real policy would.
    struct SignedIn;
    impl ApprovalPolicy for SignedIn {
        fn decide<'a>(
            &'a self,
            _: &'a ConsentRequest,
            headers: &'a http::HeaderMap,
        ) -> BoxFuture<'a, AuthorizationDecision> {
            let decision = match headers.get("x-user").and_then(|v| v.to_str().ok()) {
                Some(user) => AuthorizationDecision::AskUser {
                    subject: user.to_owned(),
                },
                None => AuthorizationDecision::Deny,
            };
            Box::pin(std::future::ready(decision))
        }
    }
    let s = Server::start(|c| c.approval_policy(SignedIn)).await;
    let client = s.device_client().await;
    let started = s.start_device(&client, "mcp:tools").await.json();
    // A preview bot (or a user not signed in yet) opens the link: refused, nothing recorded.
    let link = started["verification_uri_complete"].as_str().unwrap();
    assert_eq!(get(link).await.status, StatusCode::FORBIDDEN);
    let device_code = started["device_code"].as_str().unwrap();
    assert_eq!(
        s.poll_device(&client, device_code).await.error(),
        "authorization_pending"
    );
    // Signed in, the user sees the question.
    let signed_in = send(
        Request::get(link)
            .header("x-user", "bob")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(signed_in.status, StatusCode::OK);
    assert!(signed_in.text().contains("bob"));
}

#[tokio::test]
async fn past_the_wrong_codes_a_minute_the_page_looks_nothing_up() {
    let s = Server::start(|c| c.device_wrong_codes_per_minute(3)).await;
    let client = s.device_client().await;
    let started = s.start_device(&client, "mcp:tools").await.json();
    let right = started["user_code"].as_str().unwrap();
    // The window is a clock minute: start well inside one.
    let into_minute = support::now_secs() % 60;
    if into_minute > 50 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
    let mut statuses = Vec::new();
    for wrong in ["XXXX-XXXX", "not+a+code", "ZZZZ-ZZZZ", "XXXX-ZZZZ"] {
        statuses.push(
            get(&format!("{}/device?user_code={wrong}", s.base))
                .await
                .status,
        );
    }
    assert!(
        statuses[..3].iter().all(|s| *s == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
    // Even the right code waits for the minute to end.
    let page = get(&format!("{}/device?user_code={right}", s.base)).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(page.headers["retry-after"], "60");
}

#[tokio::test]
async fn a_guesser_holds_off_only_its_own_address() {
    let s = Server::start(|c| {
        c.device_wrong_codes_per_minute(3)
            .client_address_header("x-forwarded-for")
            .unwrap()
    })
    .await;
    let client = s.device_client().await;
    let started = s.start_device(&client, "mcp:tools").await.json();
    let right = started["user_code"].as_str().unwrap().to_owned();
    let into_minute = support::now_secs() % 60;
    if into_minute > 50 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
    let from = |address: &str, code: &str| {
        let request = Request::get(format!("{}/device?user_code={code}", s.base))
            .header("x-forwarded-for", format!("198.51.100.9, {address}"))
            .body(Full::default())
            .unwrap();
        async move { support::send(request).await.status }
    };
    for _ in 0..4 {
        from("203.0.113.7", "XXXX-XXXX").await;
    }
    assert_eq!(
        from("203.0.113.7", &right).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the guesser waits out the minute"
    );
    // So does its whole /24; the proxy's own entry is what counts, not one the client wrote.
    assert_eq!(
        from("203.0.113.8", &right).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(from("198.51.100.8", &right).await, StatusCode::OK);
    // An IPv6 guesser is one /48, however many addresses it uses in it.
    for n in 0..4 {
        from(&format!("2001:db8:1:{n}::1"), "XXXX-XXXX").await;
    }
    assert_eq!(
        from("2001:db8:1:ff::ff", &right).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Ten addresses' worth in all stops every lookup.
    for n in 0..30 {
        from(&format!("10.{}.{}.1", n / 3, n % 3), "XXXX-XXXX").await;
    }
    assert_eq!(
        from("203.0.113.99", &right).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
