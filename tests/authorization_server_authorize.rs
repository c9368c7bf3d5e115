//! The embedded authorization server's authorization endpoint over real HTTP on 127.0.0.1:
//! redirect URI matching, errors shown as pages or sent back with `state` and `iss`, the consent
//! form's CSRF protection, and approval policies of the application's own.
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use support::auth_server::{consent_form, pkce, Server, REDIRECT};
use support::{get, query, send};
use tower_mcp_oauth::authorization_server::ConsentPage;

#[tokio::test]
async fn loopback_redirect_uris_match_on_any_port() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let url = s
        .authorize_url(&client, &challenge, &[])
        .replace("127.0.0.1%3A9%2F", "127.0.0.1%3A4321%2F");
    assert!(url.contains("4321"));
    let answer = get(&url).await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(answer.location().unwrap().port(), Some(4321));
}

#[tokio::test]
async fn authorization_errors_before_the_redirect_is_trusted_are_pages() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let unknown = get(&s.authorize_url("nobody", &challenge, &[])).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.location().is_none());
    assert!(unknown.text().contains("unknown"));
    let mismatch = get(&s
        .authorize_url(&client, &challenge, &[])
        .replace("callback", "elsewhere"))
    .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert!(
        mismatch.location().is_none(),
        "never redirected to an unregistered URI"
    );
}

#[tokio::test]
async fn authorization_errors_go_back_with_state_and_iss() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let cases: Vec<(String, &str)> = vec![
        (
            s.authorize_url(&client, &challenge, &[])
                .replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            s.authorize_url(&client, &challenge, &[])
                .replace(&format!("code_challenge={challenge}&"), ""),
            "invalid_request",
        ),
        (
            s.authorize_url(&client, &challenge, &[("scope", "mcp:tools root")]),
            "invalid_scope",
        ),
        (
            s.authorize_url(&client, &challenge, &[])
                .replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            s.authorize_url(&client, &challenge, &[])
                .replace("%2Fmcp", "%2Fother"),
            "invalid_target",
        ),
    ];
    for (url, expected) in cases {
        let answer = get(&url).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{url}");
        let location = answer.location().unwrap();
        assert!(location.as_str().starts_with(REDIRECT));
        assert_eq!(
            query(&location, "error").as_deref(),
            Some(expected),
            "{url}"
        );
        assert_eq!(query(&location, "state").as_deref(), Some("st4te"));
        assert_eq!(query(&location, "iss").as_deref(), Some(s.base.as_str()));
        assert!(query(&location, "code").is_none());
    }
    // A repeated parameter is not guessed at.
    let repeated = get(&format!(
        "{}&state=again",
        s.authorize_url(&client, &challenge, &[])
    ))
    .await;
    assert_eq!(repeated.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_consent_form_needs_its_cookie_and_token() {
    let s = Server::start(|c| c.approval_policy(ConsentPage::new("bob"))).await;
    let client = s.public_client().await;
    let (verifier, challenge) = pkce();
    let page = get(&s.authorize_url(&client, &challenge, &[("scope", "mcp:tools")])).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains("test client") && html.contains("mcp:tools") && html.contains("127.0.0.1")
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let (cookie, request, csrf) = consent_form(&page);
    let post = |cookie: Option<String>, csrf: String, origin: Option<&str>| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request", &request)
            .append_pair("csrf", &csrf)
            .append_pair("decision", "approve")
            .finish();
        let mut builder = Request::post(format!("{}/authorize", s.base))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", cookie);
        }
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        builder.body(Full::from(body)).unwrap()
    };
    // Another site's form: refused before the request is spent.
    let cross = send(post(
        Some(cookie.clone()),
        csrf.clone(),
        Some("http://evil.example"),
    ))
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    // Without the cookie: refused, and the pending request is spent.
    let without = send(post(None, csrf.clone(), None)).await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    let replay = send(post(Some(cookie.clone()), csrf.clone(), None)).await;
    assert_eq!(
        replay.status,
        StatusCode::BAD_REQUEST,
        "a consent request is answered once"
    );

    // A fresh page, answered properly.
    let page = get(&s.authorize_url(&client, &challenge, &[("scope", "mcp:tools")])).await;
    let approved = s.approve(consent_form(&page)).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER);
    let location = approved.location().unwrap();
    let code = query(&location, "code").unwrap();
    let tokens = s.exchange(&client, &code, &verifier).await;
    assert_eq!(tokens.status, StatusCode::OK);
}

/// A policy of the application's own: the user comes from a header set by its login layer.
struct HeaderUser;

impl tower_mcp_oauth::authorization_server::ApprovalPolicy for HeaderUser {
    fn decide<'a>(
        &'a self,
        request: &'a tower_mcp_oauth::authorization_server::ConsentRequest,
        headers: &'a HeaderMap,
    ) -> tower_mcp_oauth::authorization_server::BoxFuture<
        'a,
        tower_mcp_oauth::authorization_server::AuthorizationDecision,
    > {
        use tower_mcp_oauth::authorization_server::AuthorizationDecision;
        let user = headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let admin_asked = request.scopes.iter().any(|s| s == "mcp:admin");
        Box::pin(async move {
            match user {
                Some(user) if !admin_asked => AuthorizationDecision::Approve { subject: user },
                _ => AuthorizationDecision::Deny,
            }
        })
    }
}

#[tokio::test]
async fn an_application_policy_decides_from_the_request() {
    let s = Server::start(|c| c.approval_policy(HeaderUser)).await;
    let client = s.public_client().await;
    let (verifier, challenge) = pkce();
    let url = s.authorize_url(&client, &challenge, &[("scope", "mcp:tools")]);
    let anonymous = get(&url).await;
    assert_eq!(
        query(&anonymous.location().unwrap(), "error").as_deref(),
        Some("access_denied")
    );
    let admin = send(
        Request::get(s.authorize_url(&client, &challenge, &[("scope", "mcp:admin")]))
            .header("x-user", "dave")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        query(&admin.location().unwrap(), "error").as_deref(),
        Some("access_denied")
    );
    let dave = send(
        Request::get(&url)
            .header("x-user", "dave")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let code = query(&dave.location().unwrap(), "code").unwrap();
    let tokens = s.exchange(&client, &code, &verifier).await.json();
    let (id, secret) = s.operator_client().await;
    let introspection = s
        .post_form(
            "/introspect",
            &[("token", tokens["access_token"].as_str().unwrap())],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(introspection.json()["sub"], "dave");
}

#[tokio::test]
async fn without_configured_scopes_no_scope_is_granted() {
    let s = Server::start(|c| c.scopes(Vec::<String>::new())).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let answer = get(&s.authorize_url(&client, &challenge, &[("scope", "admin:everything")])).await;
    let location = answer.location().expect("an error redirect");
    assert_eq!(query(&location, "error").as_deref(), Some("invalid_scope"));
    // Asking for no scope still works.
    let answer = get(&s.authorize_url(&client, &challenge, &[])).await;
    assert!(query(&answer.location().unwrap(), "code").is_some());
}
