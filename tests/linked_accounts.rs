//! Third-party accounts through URL-mode elicitation, end to end on loopback: our rmcp client
//! calls a tool of an MCP server behind `RequireBearer`; the tool needs the user's account at a
//! second authorization server standing in for GitHub; the test's browser opens the link,
//! signs in at the MCP server's authorization server and at "GitHub", and the call goes on.

mod support;

#[path = "../examples/recipes.rs"]
#[allow(unreachable_pub)]
mod recipes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::ClientServiceExt;
use support::mcp::{call, text};
use support::upstream_idp::Browser;
use support::{bind, serve_on, Answer};
use tower_mcp_oauth::authorization_server::{
    ApprovalPolicy, AuthorizationDecision, AuthorizationServer, AuthorizationServerConfig,
    BoxFuture, ConsentRequest, MemoryAuthorizationStore, MemoryStoreLimits, SealingKey,
};
use tower_mcp_oauth::downstream::accounts::{
    AccountError, AccountVault, ConfirmUser, LinkedAccounts, MemoryAccountVault, ThirdParty,
};
use tower_mcp_oauth::elicitation::{UrlElicitation, UrlElicitationClient};
#[cfg(feature = "postgres")]
use tower_mcp_oauth::http::{HttpClient, RequestBody};
use tower_mcp_oauth::server::{AuthInfo, ProtectedResource, RequireBearerLayer};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

/// Approves as the user named by the cookie `cookie` (the browser's sign-in there), or, with
/// none, as the next user the test set (an MCP client signing in headlessly).
struct CookieUser {
    cookie: &'static str,
    next: Arc<Mutex<Option<String>>>,
}

impl ApprovalPolicy for CookieUser {
    fn decide<'a>(
        &'a self,
        _request: &'a ConsentRequest,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, AuthorizationDecision> {
        let from_cookie = headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value.to_owned());
        let subject = from_cookie.or_else(|| self.next.lock().unwrap().clone());
        Box::pin(async move {
            match subject {
                Some(subject) => AuthorizationDecision::Approve { subject },
                None => AuthorizationDecision::Deny,
            }
        })
    }
}

/// The MCP server's authorization server, "GitHub" with its API, and what the tests drive.
struct World {
    /// Listeners of the MCP server replicas to come: the authorization server knows their
    /// resources from the start.
    replica_listeners: Vec<(tokio::net::TcpListener, String)>,
    issuer: String,
    github: String,
    next_user: Arc<Mutex<Option<String>>>,
    confirm_client: (String, String),
    github_client: (String, String),
}

impl World {
    async fn start(replicas: usize, github_token_ttl: Duration) -> Self {
        let mut replica_listeners = Vec::new();
        for _ in 0..replicas {
            replica_listeners.push(bind().await);
        }
        let next_user = Arc::new(Mutex::new(None));
        let (as_listener, issuer) = bind().await;
        let (gh_listener, github) = bind().await;
        let store = Arc::new(MemoryAuthorizationStore::new());
        let mut config = AuthorizationServerConfig::new(&issuer).unwrap();
        for (_, base) in &replica_listeners {
            config = config.resource(format!("{base}/mcp"));
        }
        let config = config
            .scopes(["mcp:tools"])
            .approval_policy(CookieUser {
                cookie: "user",
                next: next_user.clone(),
            })
            .store(store);
        let server = AuthorizationServer::new(config).unwrap();
        serve_on(as_listener, server.router());

        // Every access token stays live (none retired by later refreshes), and a refresh token
        // presented twice revokes the grant at once (no grace): a lost single flight shows.
        let gh_store = Arc::new(
            MemoryAuthorizationStore::new()
                .limits(MemoryStoreLimits::default().access_per_family(10_000)),
        );
        let api = format!("{github}/api");
        let gh = AuthorizationServer::new(
            AuthorizationServerConfig::new(&github)
                .unwrap()
                .resource(&api)
                .scopes(["repo"])
                .access_token_ttl(github_token_ttl)
                .refresh_rotation_grace(Duration::ZERO)
                .approval_policy(CookieUser {
                    cookie: "gh",
                    next: Arc::new(Mutex::new(None)),
                })
                .store(gh_store),
        )
        .unwrap();
        let api_app = axum::Router::new()
            .route(
                "/api/user",
                axum::routing::get(|request: http::Request<axum::body::Body>| async move {
                    let info = request.extensions().get::<AuthInfo>().cloned().unwrap();
                    format!("login={}", info.subject.clone().unwrap())
                }),
            )
            .layer(RequireBearerLayer::new(gh.local_verifier(&api)).resource(&api));
        serve_on(gh_listener, gh.router().merge(api_app));
        // The replicas share one client at each server, as replicas behind one public URL
        // would; here each has its own origin, so each has its redirect URI.
        let redirects = |path: &str| -> Vec<String> {
            replica_listeners
                .iter()
                .map(|(_, base)| format!("{base}{path}"))
                .collect()
        };
        let confirm_client = register(&issuer, redirects("/accounts/confirmed")).await;
        let github_client = register(&github, redirects("/accounts/callback")).await;
        Self {
            replica_listeners,
            issuer,
            github,
            next_user,
            confirm_client,
            github_client,
        }
    }
}

/// Registers a confidential client at the authorization server at `issuer`.
async fn register(issuer: &str, redirect_uris: Vec<String>) -> (String, String) {
    let answer = support::send(support::json_request(
        &format!("{issuer}/register"),
        &serde_json::json!({
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }),
    ))
    .await;
    let json = answer.json();
    assert_eq!(answer.status, http::StatusCode::CREATED, "{json}");
    (
        json["client_id"].as_str().unwrap().to_owned(),
        json["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// One MCP server replica on a fresh port, its linked accounts in `vault` sealed with `key`.
struct Replica {
    base: String,
    resource: String,
    accounts: LinkedAccounts,
}

async fn replica(world: &mut World, vault: Arc<dyn AccountVault>, key: [u8; 32]) -> Replica {
    let (listener, base) = world.replica_listeners.remove(0);
    let resource = format!("{base}/mcp");
    let verifier = tower_mcp_oauth::server::JwtVerifier::builder(&world.issuer, &resource)
        .discover_lazily()
        .unwrap();
    let accounts = LinkedAccounts::builder(&base, vault, SealingKey::new(&key))
        .provider(
            ThirdParty::discover("github", &world.github, &world.github_client.0)
                .client_secret(world.github_client.1.as_str())
                .scopes(["repo"])
                .display_name("GitHub"),
        )
        .confirm_user(ConfirmUser::new(
            &world.issuer,
            &world.confirm_client.0,
            world.confirm_client.1.as_str(),
            &resource,
            verifier.clone(),
        ))
        .link_wait(Duration::from_secs(20))
        .build()
        .unwrap();
    // README recipe (g)'s tool, with "GitHub" here.
    let tools = recipes::GithubTools::new(accounts.clone(), &format!("{}/api", world.github));
    let mcp = rmcp::transport::StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(
            rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
        ),
        rmcp::transport::StreamableHttpServerConfig::default(),
    );
    let protected = ProtectedResource::new(&resource, verifier)
        .unwrap()
        .authorization_server(&world.issuer)
        .required_scopes(["mcp:tools"]);
    serve_on(listener, protected.router(mcp).merge(accounts.router()));
    Replica {
        base,
        resource,
        accounts,
    }
}

/// What the test's user does with a link: signs in at the MCP server's authorization server
/// as `user` and at GitHub as `github_login` (cookies), reads the page, continues. The last page.
async fn complete_link(
    link: &str,
    world_issuer: &str,
    github: &str,
    user: &str,
    github_login: &str,
) -> Answer {
    let mut browser = Browser::default();
    browser.set_cookie(world_issuer, "user", user);
    browser.set_cookie(github, "gh", github_login);
    support::links::complete_link(&mut browser, link, user).await
}

/// Our rmcp client, signed in as `user`, whose "browser" completes each link as `user` with
/// the GitHub account `github_login`; the URLs it was asked to open are recorded.
async fn client(
    world: &World,
    replica: &Replica,
    user: &str,
    github_login: &str,
    version: Option<ProtocolVersion>,
) -> (
    rmcp::service::RunningService<rmcp::RoleClient, UrlElicitationClient>,
    UrlElicitationClient,
    Arc<Mutex<Vec<String>>>,
) {
    *world.next_user.lock().unwrap() = Some(user.to_owned());
    let opened = Arc::new(Mutex::new(Vec::new()));
    let (issuer, github, user_owned, login) = (
        world.issuer.clone(),
        world.github.clone(),
        user.to_owned(),
        github_login.to_owned(),
    );
    let seen = opened.clone();
    let opener = move |request: UrlElicitation| -> BoxFuture<'static, bool> {
        let (link, issuer, github, user, login, seen) = (
            request.url.to_string(),
            issuer.clone(),
            github.clone(),
            user_owned.clone(),
            login.clone(),
            seen.clone(),
        );
        Box::pin(async move {
            seen.lock().unwrap().push(link.clone());
            let done = complete_link(&link, &issuer, &github, &user, &login).await;
            done.status == http::StatusCode::OK && done.text().contains("account is linked")
        })
    };
    let handler = UrlElicitationClient::with_info(ClientConfig::default(), opener)
        .completion_wait(Duration::from_secs(20));
    let stack = support::client::oauth_stack(&replica.resource).await;
    let transport =
        StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&replica.resource));
    let running = handler
        .clone()
        .serve_with_lifecycle(transport, support::mcp::lifecycle_at(version))
        .await
        .unwrap();
    (running, handler, opened)
}

async fn login(
    handler: &UrlElicitationClient,
    running: &rmcp::service::RunningService<rmcp::RoleClient, UrlElicitationClient>,
) -> String {
    let result = handler
        .call_tool(running, call("github_login", serde_json::json!({})))
        .await
        .unwrap();
    text(&result.content)
}

#[tokio::test]
async fn a_tool_call_links_the_account_then_uses_the_vault() {
    for version in [None, Some(ProtocolVersion::V_2026_07_28)] {
        let mut world = World::start(1, Duration::from_secs(3600)).await;
        let vault: Arc<dyn AccountVault> = Arc::new(MemoryAccountVault::new());
        let replica = replica(&mut world, vault, [5; 32]).await;
        let (running, handler, opened) =
            client(&world, &replica, "alice", "octo-alice", version.clone()).await;
        let started = std::time::Instant::now();
        assert_eq!(
            login(&handler, &running).await,
            "login=octo-alice",
            "{version:?}"
        );
        // At 2025-11-25 the retry waits for the completion notice, up to 20 s: well before
        // that, the notice came. (At 2026-07-28 the server waits for the link instead.)
        assert!(started.elapsed() < Duration::from_secs(15), "{version:?}");
        assert_eq!(opened.lock().unwrap().len(), 1, "one link, {version:?}");
        let link = opened.lock().unwrap()[0].clone();
        assert!(
            link.starts_with(&format!("{}/accounts/link?ticket=", replica.base)),
            "{link}"
        );

        // The next call uses the vault: no browser.
        assert_eq!(login(&handler, &running).await, "login=octo-alice");
        assert_eq!(opened.lock().unwrap().len(), 1);

        // Bob never sees Alice's account: he is asked to link his own.
        let (bob, bob_handler, bob_opened) =
            client(&world, &replica, "bob", "octo-bob", version.clone()).await;
        assert_eq!(login(&bob_handler, &bob).await, "login=octo-bob");
        assert_eq!(bob_opened.lock().unwrap().len(), 1);
        assert_eq!(login(&handler, &running).await, "login=octo-alice");

        // The link was single use.
        let mut browser = Browser::default();
        browser.set_cookie(&world.issuer, "user", "alice");
        let again = browser.get(&link).await;
        assert_eq!(again.status, http::StatusCode::GONE, "{}", again.text());
        assert!(again.text().contains("Nothing was linked"));

        // Disconnected: the next call asks again.
        let alice = AuthInfo::from(tower_mcp_oauth::server::AuthData {
            subject: Some("alice".into()),
            issuer: Some(world.issuer.clone()),
            ..Default::default()
        });
        assert!(replica.accounts.disconnect(&alice, "github").await.unwrap());
        assert_eq!(login(&handler, &running).await, "login=octo-alice");
        assert_eq!(opened.lock().unwrap().len(), 2);
        running.cancel().await.unwrap();
        bob.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn a_link_opened_by_another_signed_in_user_links_nothing() {
    let mut world = World::start(1, Duration::from_secs(3600)).await;
    let vault: Arc<dyn AccountVault> = Arc::new(MemoryAccountVault::new());
    let replica = replica(&mut world, vault.clone(), [6; 32]).await;
    let alice = AuthInfo::from(tower_mcp_oauth::server::AuthData {
        subject: Some("alice".into()),
        issuer: Some(world.issuer.clone()),
        ..Default::default()
    });
    let Err(AccountError::LinkRequired(link)) =
        replica.accounts.access_token(&alice, "github").await
    else {
        panic!("alice has no account yet");
    };
    // Alice forwards her link to Mallory, who is signed in as herself.
    let page = complete_link(
        link.url(),
        &world.issuer,
        &world.github,
        "mallory",
        "octo-mallory",
    )
    .await;
    assert_eq!(page.status, http::StatusCode::FORBIDDEN, "{}", page.text());
    assert!(
        page.text().contains("signed in as someone else"),
        "{}",
        page.text()
    );
    assert!(
        page.text().contains("Nothing was linked"),
        "{}",
        page.text()
    );
    assert!(matches!(
        replica.accounts.access_token(&alice, "github").await,
        Err(AccountError::LinkRequired(_))
    ));
    // And the link is spent: Alice cannot use it either now.
    let page = complete_link(
        link.url(),
        &world.issuer,
        &world.github,
        "alice",
        "octo-alice",
    )
    .await;
    assert_eq!(page.status, http::StatusCode::GONE);
}

#[cfg(feature = "postgres")]
/// Alice's account, linked in the browser through `replica`'s link (no MCP client needed).
async fn link_directly(world: &World, replica: &Replica, alice: &AuthInfo, login: &str) {
    let Err(AccountError::LinkRequired(link)) =
        replica.accounts.access_token(alice, "github").await
    else {
        panic!("not linked yet");
    };
    let done = complete_link(link.url(), &world.issuer, &world.github, "alice", login).await;
    assert_eq!(done.status, http::StatusCode::OK, "{}", done.text());
}

#[cfg(feature = "postgres")]
/// What "GitHub" says about `token`.
async fn github_login_of(world: &World, token: &tower_mcp_oauth::Secret) -> String {
    let call = http::Request::get(format!("{}/api/user", world.github))
        .header("authorization", format!("Bearer {}", token.expose()))
        .body(RequestBody::default())
        .unwrap();
    let answer = HttpClient::new().send(call).await.unwrap();
    format!(
        "{} {}",
        answer.status().as_u16(),
        String::from_utf8_lossy(answer.body())
    )
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn on_postgres_the_vault_survives_restarts_and_serves_replicas() {
    use tower_mcp_oauth::downstream::accounts::PostgresAccountVault;
    use tower_mcp_oauth::postgres::PostgresPool;
    let Some(url) = support::postgres::database_url() else {
        return;
    };
    let url = support::postgres::fresh_schema(&url).await;
    let vault = || async {
        let pool = PostgresPool::connect(&url).await.unwrap();
        Arc::new(PostgresAccountVault::new(pool).await.unwrap()) as Arc<dyn AccountVault>
    };
    // GitHub's access tokens live 30 s: always due (refreshed when under 60 s remain), so
    // every call below refreshes, and GitHub revokes the grant if two refreshes ever race
    // with one refresh token (no grace period).
    let mut world = World::start(3, Duration::from_secs(30)).await;
    let key = [7; 32];
    let a = replica(&mut world, vault().await, key).await;
    let b = replica(&mut world, vault().await, key).await;
    let alice = AuthInfo::from(tower_mcp_oauth::server::AuthData {
        subject: Some("alice".into()),
        issuer: Some(world.issuer.clone()),
        ..Default::default()
    });
    link_directly(&world, &a, &alice, "octo-alice").await;

    // 40 calls at once, half on each replica: one refresh at a time across both, every call
    // gets a token GitHub accepts.
    let calls = (0..40).map(|i| {
        let accounts = if i % 2 == 0 {
            a.accounts.clone()
        } else {
            b.accounts.clone()
        };
        let alice = alice.clone();
        tokio::spawn(async move { accounts.access_token(&alice, "github").await })
    });
    let tokens = futures_util::future::join_all(calls).await;
    for token in tokens {
        let token = token.unwrap().unwrap();
        assert_eq!(
            github_login_of(&world, &token).await,
            "200 login=octo-alice"
        );
    }

    // A restart (a new vault on the same database) keeps the account.
    let c = replica(&mut world, vault().await, key).await;
    let token = c.accounts.access_token(&alice, "github").await.unwrap();
    assert_eq!(
        github_login_of(&world, &token).await,
        "200 login=octo-alice"
    );
    drop((a, b, c));
}
