//! Upstream sign-in over real HTTP on 127.0.0.1: the embedded authorization server sends the
//! browser to an identity provider double (OpenID Connect, then GitHub-shaped), checks what
//! comes back, and issues its own tokens; a hostile provider gets nothing issued.
#![cfg(all(feature = "authorization-server", feature = "jwt", feature = "client"))]

mod support;

use http::StatusCode;
use serde_json::Value;
use support::auth_server::{pkce, Server, REDIRECT};
use support::upstream_idp::{
    Browser, Idp, Twist, CLIENT_ID, CLIENT_SECRET, UPSTREAM_ACCESS_TOKEN, UPSTREAM_REFRESH_TOKEN,
};
use support::{bind, query, serve_on, Answer};
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, OAuth2Profile, UpstreamSignIn,
};
use tower_mcp_oauth::client::SealingKey;

/// The authorization server signing users in at `sign_in`'s provider.
async fn server(sign_in: UpstreamSignIn) -> Server {
    let (listener, base) = bind().await;
    let resource = format!("{base}/mcp");
    let config = AuthorizationServerConfig::new(&base)
        .unwrap()
        .resource(&resource)
        .scopes(["mcp:tools", "mcp:admin"])
        .upstream_sign_in(sign_in);
    let server = AuthorizationServer::new(config).unwrap();
    serve_on(listener, server.router());
    Server {
        base,
        resource,
        server,
    }
}

fn openid(idp: &Idp) -> UpstreamSignIn {
    UpstreamSignIn::openid(idp.issuer(), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .keep_tokens(SealingKey::new(&[5; 32]))
}

/// One authorization request in `browser`: the answer, the URL asked, the PKCE verifier.
async fn authorize(
    s: &Server,
    browser: &mut Browser,
    client: &str,
    scope: &str,
) -> (Answer, String, String) {
    let (verifier, challenge) = pkce();
    let url = s.authorize_url(client, &challenge, &[("scope", scope)]);
    (browser.get(&url).await, url, verifier)
}

/// A first sign-in: consent page, approve, provider, callback. Returns the callback's answer
/// (the redirect to the MCP client, or an error page) and the MCP client's PKCE verifier.
async fn first_sign_in(s: &Server, browser: &mut Browser, client: &str) -> (Answer, String) {
    let (page, url, verifier) = authorize(s, browser, client, "mcp:tools").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let approved = browser.answer_consent(&url, &page, "approve").await;
    assert_eq!(
        approved.status,
        StatusCode::SEE_OTHER,
        "{}",
        approved.text()
    );
    let (answer, _) = browser.follow(approved, REDIRECT).await;
    (answer, verifier)
}

fn code_of(answer: &Answer) -> String {
    let location = answer
        .location()
        .unwrap_or_else(|| panic!("{} {}", answer.status, answer.text()));
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    query(&location, "code").unwrap_or_else(|| panic!("a code: {location}"))
}

/// The MCP client's token response for `code`, and the subject of its access token.
async fn redeem(s: &Server, client: &str, code: &str, verifier: &str) -> (String, String) {
    use base64::Engine;
    let answer = s.exchange(client, code, verifier).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    (answer.text(), claims["sub"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_user_signs_in_upstream_once_and_each_client_needs_its_own_consent() {
    let idp = Idp::start().await;
    let s = server(openid(&idp)).await;
    let mut browser = Browser::default();
    let client = s.public_client().await;

    // Our consent page comes first, before anything is sent upstream.
    let (page, url, verifier) = authorize(&s, &mut browser, &client, "mcp:tools").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(idp.authorize_requests().is_empty());
    let html = page.text();
    assert!(html.contains("You will sign in with"), "{html}");
    assert!(html.contains(REDIRECT), "the full redirect URI is shown");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(idp.issuer()),
        "the form may go upstream: {csp}"
    );

    let approved = browser.answer_consent(&url, &page, "approve").await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER);
    assert!(approved
        .location()
        .unwrap()
        .as_str()
        .starts_with(idp.issuer()));
    assert!(
        browser.has_cookie("mcp_upstream_"),
        "state bound to the browser"
    );
    let (answer, _) = browser.follow(approved, REDIRECT).await;
    let sent = &idp.authorize_requests()[0];
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(sent["code_challenge_method"], "S256");
    assert_eq!(
        sent["redirect_uri"],
        s.server.upstream_redirect_uri().unwrap()
    );
    assert!(sent.contains_key("nonce") && sent.contains_key("state"));
    assert!(
        !browser.has_cookie("mcp_upstream_"),
        "the state cookie is spent"
    );
    assert!(browser.has_cookie("mcp_session"), "a session started");
    let upstream_token_request = &idp.token_requests()[0];
    assert!(upstream_token_request.contains_key("code_verifier"));

    // The MCP client gets our tokens, for the upstream user, and nothing of the provider's.
    let location = answer.location().unwrap();
    assert_eq!(query(&location, "state").as_deref(), Some("st4te"));
    assert_eq!(query(&location, "iss").as_deref(), Some(s.base.as_str()));
    let (body, subject) = redeem(&s, &client, &code_of(&answer), &verifier).await;
    assert_eq!(subject, format!("{}#alice", idp.issuer()));
    for upstream in [UPSTREAM_ACCESS_TOKEN, UPSTREAM_REFRESH_TOKEN] {
        assert!(!body.contains(upstream) && !location.as_str().contains(upstream));
    }
    // The server's own tools can have the user's upstream token.
    let kept = s.server.upstream_access_token(&subject).await.unwrap();
    assert_eq!(kept.unwrap().expose(), UPSTREAM_ACCESS_TOKEN);

    // The same client again, in the same browser: remembered, no page, nothing upstream.
    let (again, _, verifier) = authorize(&s, &mut browser, &client, "mcp:tools").await;
    assert_eq!(again.status, StatusCode::FOUND, "{}", again.text());
    let (_, same) = redeem(&s, &client, &code_of(&again), &verifier).await;
    assert_eq!(same, subject);
    assert_eq!(idp.authorize_requests().len(), 1);

    // More scopes than consented to: the page again, naming the signed-in user.
    let (more, _, _) = authorize(&s, &mut browser, &client, "mcp:tools mcp:admin").await;
    assert_eq!(more.status, StatusCode::OK);
    assert!(more.text().contains("Alice Example"), "{}", more.text());

    // Another client for the same user: our consent page again, with who is signed in.
    let second = s.public_client().await;
    let (page, url, verifier) = authorize(&s, &mut browser, &second, "mcp:tools").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("Alice Example"));
    assert!(!page.text().contains("You will sign in with"));
    let approved = browser.answer_consent(&url, &page, "approve").await;
    let (_, second_subject) = redeem(&s, &second, &code_of(&approved), &verifier).await;
    assert_eq!(second_subject, subject);
    assert_eq!(idp.authorize_requests().len(), 1, "signed in upstream once");

    // A consent forgotten is asked again.
    s.server
        .forget_consent(&subject, Some(&client))
        .await
        .unwrap();
    let (asked, _, _) = authorize(&s, &mut browser, &client, "mcp:tools").await;
    assert_eq!(asked.status, StatusCode::OK);
}

#[tokio::test]
async fn a_hostile_provider_gets_a_clear_page_and_nothing_issued() {
    let idp = Idp::start().await;
    let s = server(openid(&idp)).await;
    let client = s.public_client().await;
    for (twist, said) in [
        (Twist::WrongNonce, "(nonce)"),
        (Twist::WrongIssuer, "another provider (iss)"),
        (Twist::WrongAudience, "(aud)"),
        (Twist::Expired, "expired"),
        (Twist::Unsigned, "not a well-formed JWT"),
        (Twist::UnknownKey, "kid"),
        (Twist::CallbackIssuer, "another identity provider (iss)"),
    ] {
        idp.twist(twist);
        let mut browser = Browser::default();
        let (answer, _) = first_sign_in(&s, &mut browser, &client).await;
        assert!(
            answer.status.is_client_error(),
            "{twist:?}: {}",
            answer.status
        );
        assert!(answer.location().is_none(), "{twist:?}: nothing issued");
        let page = answer.text();
        assert!(page.contains(said), "{twist:?}: {page}");
        assert!(page.contains("Nothing was issued"), "{twist:?}: {page}");
        assert!(!page.contains(UPSTREAM_ACCESS_TOKEN));
        assert!(!browser.has_cookie("mcp_session"), "{twist:?}: no session");
    }

    // The user refuses upstream: the MCP client hears access_denied.
    idp.twist(Twist::UserRefuses);
    let (answer, _) = first_sign_in(&s, &mut Browser::default(), &client).await;
    let location = answer.location().unwrap();
    assert_eq!(query(&location, "error").as_deref(), Some("access_denied"));
    assert!(query(&location, "code").is_none());
}

#[tokio::test]
async fn a_sign_in_finishes_only_once_and_only_in_the_browser_that_began_it() {
    let idp = Idp::start().await;
    let s = server(openid(&idp)).await;
    let client = s.public_client().await;
    let mut alice = Browser::default();
    let mut mallory = Browser::default();
    let (page, url, _) = authorize(&s, &mut alice, &client, "mcp:tools").await;
    let alices = alice.answer_consent(&url, &page, "approve").await;
    let (page, url, _) = authorize(&s, &mut mallory, &client, "mcp:tools").await;
    let _mallorys = mallory.answer_consent(&url, &page, "approve").await;

    // Alice's provider answer lands in Mallory's browser (a mix-up or a planted link).
    let at_provider = mallory.get(alices.location().unwrap().as_str()).await;
    let callback = at_provider.location().unwrap().to_string();
    let crossed = mallory.get(&callback).await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN, "{}", crossed.text());
    assert!(crossed.text().contains("another browser"));
    assert!(crossed.location().is_none());

    // The state was spent: Alice's own browser cannot replay it either.
    let replayed = alice.get(&callback).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    assert!(replayed.text().contains("already finished"));

    // A made-up state finds nothing.
    let made_up = alice
        .get(&format!(
            "{}?state=made-up&code=x",
            s.server.upstream_redirect_uri().unwrap()
        ))
        .await;
    assert_eq!(made_up.status, StatusCode::BAD_REQUEST);
    assert!(made_up.location().is_none());
}

#[tokio::test]
async fn sign_in_rules_and_scope_mapping_decide_who_gets_what() {
    let idp = Idp::start().await;
    let s = server(
        openid(&idp)
            .allow_email_domains(["example.com"])
            .map_scopes(|identity, _requested| {
                if identity.subject == "alice" {
                    vec!["mcp:tools".into()]
                } else {
                    vec!["mcp:tools".into(), "mcp:admin".into()]
                }
            }),
    )
    .await;
    let client = s.public_client().await;

    idp.next_user("mallory", "mallory@evil.test");
    let (refused, _) = first_sign_in(&s, &mut Browser::default(), &client).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.text().contains("may not sign in"),
        "{}",
        refused.text()
    );
    assert!(refused.location().is_none());

    // Alice asks for both scopes and gets the one her mapping allows.
    idp.next_user("alice", "alice@example.com");
    let mut browser = Browser::default();
    let (page, url, verifier) = authorize(&s, &mut browser, &client, "mcp:tools mcp:admin").await;
    let approved = browser.answer_consent(&url, &page, "approve").await;
    let (answer, _) = browser.follow(approved, REDIRECT).await;
    let tokens = s.exchange(&client, &code_of(&answer), &verifier).await;
    assert_eq!(tokens.json()["scope"], "mcp:tools", "{}", tokens.text());
}

#[tokio::test]
async fn kept_upstream_tokens_are_refreshed_when_due() {
    let idp = Idp::start().await;
    let s = server(openid(&idp)).await;
    let client = s.public_client().await;
    idp.twist(Twist::ShortLived);
    let (answer, verifier) = first_sign_in(&s, &mut Browser::default(), &client).await;
    let (_, subject) = redeem(&s, &client, &code_of(&answer), &verifier).await;
    let fresh = s.server.upstream_access_token(&subject).await.unwrap();
    assert_eq!(
        fresh.unwrap().expose(),
        format!("{UPSTREAM_ACCESS_TOKEN}-refreshed")
    );
    assert_eq!(idp.refreshes(), 1);
    let again = s.server.upstream_access_token(&subject).await.unwrap();
    assert_eq!(
        again.unwrap().expose(),
        format!("{UPSTREAM_ACCESS_TOKEN}-refreshed")
    );
    assert_eq!(idp.refreshes(), 1, "the refreshed token is kept");
    assert!(s
        .server
        .upstream_access_token("https://elsewhere#bob")
        .await
        .unwrap()
        .is_none());
}

/// GitHub's shape (no metadata, a user API) at the provider double.
fn github_at(idp: &Idp) -> OAuth2Profile {
    let base = idp.issuer();
    OAuth2Profile::new(
        "GitHub",
        "https://github.com",
        &format!("{base}/login/oauth/authorize"),
        &format!("{base}/login/oauth/access_token"),
        &format!("{base}/user"),
    )
    .unwrap()
    .scopes(["read:user"])
}

#[tokio::test]
async fn a_github_shaped_provider_signs_users_in_through_its_user_api() {
    let idp = Idp::start().await;
    let github = github_at(&idp);
    let s =
        server(UpstreamSignIn::oauth2(github.clone(), CLIENT_ID).client_secret_post(CLIENT_SECRET))
            .await;
    let client = s.public_client().await;
    idp.next_user("octocat", "");
    let mut browser = Browser::default();
    let (page, url, verifier) = authorize(&s, &mut browser, &client, "mcp:tools").await;
    assert!(page.text().contains("GitHub"), "{}", page.text());
    let approved = browser.answer_consent(&url, &page, "approve").await;
    let (answer, _) = browser.follow(approved, REDIRECT).await;
    let sent = &idp.authorize_requests()[0];
    assert_eq!(sent["scope"], "read:user");
    assert!(
        !sent.contains_key("nonce"),
        "no OpenID parameters for plain OAuth"
    );
    assert_eq!(idp.token_requests()[0]["client_secret"], CLIENT_SECRET);
    let (_, subject) = redeem(&s, &client, &code_of(&answer), &verifier).await;
    let id: u64 = "octocat".bytes().map(u64::from).sum();
    assert_eq!(subject, format!("https://github.com#{id}"));

    // GitHub's errors come with status 200: read as the refusal they are.
    let wrong = server(UpstreamSignIn::oauth2(github, CLIENT_ID).client_secret_post("wrong")).await;
    let client = wrong.public_client().await;
    let (refused, _) = first_sign_in(&wrong, &mut Browser::default(), &client).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text().contains("incorrect_client_credentials"));
    assert!(refused.location().is_none());
}

#[tokio::test]
async fn upstream_sign_in_refuses_settings_it_cannot_honour() {
    let idp = Idp::start().await;
    let config = |c: AuthorizationServerConfig| {
        c.resource("http://127.0.0.1:1/mcp")
            .upstream_sign_in(openid(&idp))
    };
    let with_policy = config(AuthorizationServerConfig::new("http://127.0.0.1:1").unwrap())
        .approval_policy(tower_mcp_oauth::authorization_server::AutoApprove::new("x"));
    assert!(AuthorizationServer::new(with_policy)
        .unwrap_err()
        .to_string()
        .contains("approval policy"));
    let with_device =
        config(AuthorizationServerConfig::new("http://127.0.0.1:1").unwrap()).device_grant(true);
    assert!(AuthorizationServer::new(with_device)
        .unwrap_err()
        .to_string()
        .contains("device grant"));
    let insecure = AuthorizationServerConfig::new("http://127.0.0.1:1")
        .unwrap()
        .resource("http://127.0.0.1:1/mcp")
        .upstream_sign_in(UpstreamSignIn::openid("http://idp.example", CLIENT_ID));
    assert!(AuthorizationServer::new(insecure).is_err());
}

/// Two replicas on one PostgreSQL database behind a balancer that the test points: the sign-in
/// begins at A (consent page and approval), finishes at B (the provider's callback), and A
/// then honours B's session, remembered consent and kept upstream tokens.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_sign_in_begun_at_one_replica_finishes_at_another() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use support::postgres::{database_url, fresh_schema};
    use tower_mcp_oauth::authorization_server::{PostgresAuthorizationStore, SigningKey};
    use tower_mcp_oauth::postgres::PostgresPool;

    let Some(url) = database_url() else {
        return;
    };
    let url = fresh_schema(&url).await;
    let idp = Idp::start().await;
    let (balancer, base) = bind().await;
    let resource = format!("{base}/mcp");
    let key = SigningKey::generate().unwrap();
    let mut replicas = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..2 {
        let pool = PostgresPool::connect(&url).await.unwrap();
        let store = PostgresAuthorizationStore::new(pool).await.unwrap();
        let config = AuthorizationServerConfig::new(&base)
            .unwrap()
            .resource(&resource)
            .scopes(["mcp:tools"])
            .signing_key(key.clone())
            .store(store)
            .upstream_sign_in(openid(&idp));
        let server = AuthorizationServer::new(config).unwrap();
        let (listener, address) = bind().await;
        serve_on(listener, server.router());
        replicas.push(server);
        addresses.push(address);
    }
    let target = Arc::new(AtomicUsize::new(0));
    let to = {
        let target = target.clone();
        let addresses = addresses.clone();
        move |request: axum::extract::Request| {
            let backend = addresses[target.load(Ordering::SeqCst)].clone();
            async move {
                let (mut parts, body) = request.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                parts.uri = format!("{backend}{path}").parse().unwrap();
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<axum::body::Body>();
                let response = client
                    .request(http::Request::from_parts(parts, body))
                    .await
                    .unwrap();
                response.map(axum::body::Body::new)
            }
        }
    };
    serve_on(balancer, axum::Router::new().fallback(to));
    let s = Server {
        base: base.clone(),
        resource,
        server: replicas[0].clone(),
    };
    let client = s.public_client().await;
    let mut browser = Browser::default();

    target.store(0, Ordering::SeqCst);
    let (page, url, verifier) = authorize(&s, &mut browser, &client, "mcp:tools").await;
    let approved = browser.answer_consent(&url, &page, "approve").await;
    assert_eq!(
        approved.status,
        StatusCode::SEE_OTHER,
        "{}",
        approved.text()
    );
    target.store(1, Ordering::SeqCst);
    let (answer, _) = browser.follow(approved, REDIRECT).await;
    let code = code_of(&answer);
    target.store(0, Ordering::SeqCst);
    let (_, subject) = redeem(&s, &client, &code, &verifier).await;
    assert_eq!(subject, format!("{}#alice", idp.issuer()));

    // A knows B's session and the consent B remembered: no page, nothing upstream.
    let (again, _, _) = authorize(&s, &mut browser, &client, "mcp:tools").await;
    assert_eq!(again.status, StatusCode::FOUND, "{}", again.text());
    assert_eq!(idp.authorize_requests().len(), 1);
    // And opens the upstream tokens B kept (the replicas share the sealing key).
    let kept = replicas[0].upstream_access_token(&subject).await.unwrap();
    assert_eq!(kept.unwrap().expose(), UPSTREAM_ACCESS_TOKEN);
}

/// On https every cookie of the sign-in is `__Host-` (`Secure`, `Path=/`, no `Domain`): a
/// sibling host cannot plant a state or a session.
#[tokio::test]
async fn on_https_the_sign_in_cookies_are_host_only() {
    use tower::ServiceExt;
    let idp = Idp::start().await;
    let base = "https://mcp.example";
    let server = AuthorizationServer::new(
        AuthorizationServerConfig::new(base)
            .unwrap()
            .resource(format!("{base}/mcp"))
            .scopes(["mcp:tools"])
            .upstream_sign_in(openid(&idp)),
    )
    .unwrap();
    let client = server
        .register_client(tower_mcp_oauth::metadata::ClientMetadata {
            redirect_uris: vec![REDIRECT.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, challenge) = pkce();
    let s = Server {
        base: base.into(),
        resource: format!("{base}/mcp"),
        server: server.clone(),
    };
    let url = s.authorize_url(&client, &challenge, &[("scope", "mcp:tools")]);
    let page = server
        .router()
        .oneshot(
            http::Request::get(&url)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let consent_cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    let html = String::from_utf8(
        http_body_util::BodyExt::collect(page.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let field = |name: &str| support::auth_server::hidden_field_in(&html, name);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("request", &field("request"))
        .append_pair("csrf", &field("csrf"))
        .append_pair("decision", "approve")
        .finish();
    let approved = server
        .router()
        .oneshot(
            http::Request::post(format!("{base}/authorize"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", base)
                .header("cookie", consent_cookie.split(';').next().unwrap())
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let state_cookie = approved
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.contains("mcp_upstream_"))
        .expect("a state cookie");
    assert!(
        state_cookie.starts_with("__Host-mcp_upstream_"),
        "{state_cookie}"
    );
    for attribute in ["Path=/;", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(state_cookie.contains(attribute), "{state_cookie}");
    }
    assert!(!state_cookie.contains("Domain"));
}

/// A server whose users sign in with GitHub calls GitHub's API as them with the sign-in's own
/// tokens: no link, no second authorization. Anyone else (another user, a caller from another
/// issuer with the same subject) is asked to link, and the sign-in token never reaches them.
#[cfg(feature = "downstream")]
#[tokio::test]
async fn users_who_signed_in_with_github_need_no_link_for_github() {
    use tower_mcp_oauth::downstream::accounts::{
        AccountError, LinkedAccounts, MemoryAccountVault, ThirdParty,
    };
    use tower_mcp_oauth::server::{AuthData, AuthInfo};

    let idp = Idp::start().await;
    let sign_in = UpstreamSignIn::oauth2(github_at(&idp), CLIENT_ID)
        .client_secret_post(CLIENT_SECRET)
        .keep_tokens(SealingKey::new(&[5; 32]));
    let s = server(sign_in).await;
    let client = s.public_client().await;
    idp.next_user("octocat", "");
    let mut browser = Browser::default();
    let (page, url, verifier) = authorize(&s, &mut browser, &client, "mcp:tools").await;
    let approved = browser.answer_consent(&url, &page, "approve").await;
    let (answer, _) = browser.follow(approved, REDIRECT).await;
    let (_, subject) = redeem(&s, &client, &code_of(&answer), &verifier).await;

    let accounts = |sign_in_tokens: bool| {
        let builder = LinkedAccounts::builder(
            s.base.clone(),
            MemoryAccountVault::new(),
            SealingKey::new(&[6; 32]),
        )
        .provider(
            ThirdParty::endpoints("github", github_at(&idp), CLIENT_ID)
                .client_secret_post(CLIENT_SECRET),
        )
        .allow_unconfirmed_links();
        match sign_in_tokens {
            true => builder.sign_in_tokens("github", &s.server),
            false => builder,
        }
        .build()
        .unwrap()
    };
    let caller = |issuer: &str, subject: &str| {
        AuthInfo::from(AuthData {
            issuer: Some(issuer.to_owned()),
            subject: Some(subject.to_owned()),
            ..Default::default()
        })
    };
    let linked = accounts(true);
    let token = linked
        .access_token(&caller(&s.base, &subject), "github")
        .await
        .unwrap();
    assert_eq!(token.expose(), UPSTREAM_ACCESS_TOKEN);

    for stranger in [
        caller(&s.base, "https://github.com#1"),
        caller("https://elsewhere.example", &subject),
    ] {
        let answer = linked.access_token(&stranger, "github").await;
        assert!(
            matches!(answer, Err(AccountError::LinkRequired(_))),
            "{answer:?}"
        );
    }
    // Without sign_in_tokens, even the signed-in user is asked to link.
    let answer = accounts(false)
        .access_token(&caller(&s.base, &subject), "github")
        .await;
    assert!(matches!(answer, Err(AccountError::LinkRequired(_))));
    // A provider at another third party than the one users sign in at is refused: their
    // GitHub tokens must never go to it.
    let elsewhere = OAuth2Profile::new(
        "Other",
        "https://other.example",
        "https://other.example/authorize",
        "https://other.example/token",
        "https://other.example/user",
    )
    .unwrap();
    let mismatched = LinkedAccounts::builder(
        s.base.clone(),
        MemoryAccountVault::new(),
        SealingKey::new(&[6; 32]),
    )
    .provider(ThirdParty::endpoints("github", elsewhere, CLIENT_ID))
    .allow_unconfirmed_links()
    .sign_in_tokens("github", &s.server)
    .build();
    assert!(mismatched.is_err());
    // So is a server whose upstream sign-in keeps no tokens.
    let keeps_nothing = server(UpstreamSignIn::oauth2(github_at(&idp), CLIENT_ID)).await;
    let nothing_kept = LinkedAccounts::builder(
        s.base.clone(),
        MemoryAccountVault::new(),
        SealingKey::new(&[6; 32]),
    )
    .provider(ThirdParty::endpoints("github", github_at(&idp), CLIENT_ID))
    .allow_unconfirmed_links()
    .sign_in_tokens("github", &keeps_nothing.server)
    .build();
    assert!(nothing_kept.is_err());
    // A name that is no provider is a configuration error.
    let unknown = LinkedAccounts::builder(
        s.base.clone(),
        MemoryAccountVault::new(),
        SealingKey::new(&[6; 32]),
    )
    .allow_unconfirmed_links()
    .sign_in_tokens("github", &s.server)
    .build();
    assert!(unknown.is_err());
}
