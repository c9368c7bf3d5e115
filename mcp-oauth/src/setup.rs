//! From flags to the library's pieces: the OAuth state, the MCP request stack, the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request};
use tower::util::Either;
use tower::ServiceBuilder;
use tower_mcp_oauth::client::{
    ClientRegistration, CredentialKey, CredentialStore, DeviceAuthorization, FileStore, Grant,
    LoopbackHandler, OAuth, OAuthConfig, OAuthLayer, OAuthState, TokenEndpointAuthMethod, TokenSet,
    TokenSource,
};
use tower_mcp_oauth::http::{
    redact_url, CookieJar, CookieJarLayer, HttpClient, HyperClient, ResponseTimeouts,
};
use url::Url;

use super::cli_error::CliError;
use super::paste::PasteHandler;
use super::{os_store, GrantChoice, Options, StoreChoice, StoreOptions};

/// A human signing in takes minutes; processes waiting for that sign-in wait as long.
const SIGN_IN_LEASE: Duration = Duration::from_secs(600);

/// The credentials file: `--store-file`, else `credentials.json` in `MCP_OAUTH_DIR`, else in the
/// platform's config directory.
pub(crate) fn store_path(options: &StoreOptions) -> Result<PathBuf, CliError> {
    store_path_with(options, |name| std::env::var_os(name))
}

/// [`store_path`] with `env` for the environment. An empty variable counts as unset (a
/// launcher's `MCP_OAUTH_DIR=` would otherwise put secrets in the current directory).
fn store_path_with(
    options: &StoreOptions,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf, CliError> {
    if let Some(path) = &options.store_file {
        if path.as_os_str().is_empty() {
            return Err(CliError::new("--store-file is empty"));
        }
        return Ok(path.clone());
    }
    let env = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = match env("MCP_OAUTH_DIR") {
        Some(dir) => dir,
        None => config_dir(env)
            .ok_or_else(|| {
                CliError::new("cannot tell where to keep credentials: set MCP_OAUTH_DIR")
            })?
            .join("mcp-oauth"),
    };
    Ok(dir.join("credentials.json"))
}

/// The platform's per-user configuration directory.
fn config_dir(env: impl Fn(&str) -> Option<PathBuf>) -> Option<PathBuf> {
    if cfg!(windows) {
        env("APPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|home| home.join("Library/Application Support"))
    } else {
        env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|home| home.join(".config")))
    }
}

/// What a command does with the store: only reading and removing credentials never makes
/// a key in the OS store.
#[derive(Clone, Copy)]
enum StoreUse {
    SignIn,
    ReadOrRemove,
}

async fn store(options: &StoreOptions, purpose: StoreUse) -> Result<FileStore, CliError> {
    let path = store_path(options)?;
    let file = FileStore::new(&path).lease_timeout(SIGN_IN_LEASE);
    if options.store == StoreChoice::File {
        return Ok(file);
    }
    let key = match purpose {
        StoreUse::SignIn => os_store::sealing_key(&path).await.map(Some),
        StoreUse::ReadOrRemove => os_store::existing_sealing_key(&path).await,
    };
    match (key, options.store) {
        (Ok(Some(key)), _) => Ok(file.sealed(key)),
        // No key yet, so nothing sealed: the file, if any, is plain.
        (Ok(None), _) => Ok(file),
        (Err(why), StoreChoice::Keyring) => Err(CliError::new(format!(
            "--store keyring: the OS credential store cannot be used: {why}"
        ))),
        // A sealed file needs its key: the plain file would only fail to open it, hiding why.
        (Err(why), _) if file.is_sealed() => Err(CliError::new(format!(
            "{} is sealed, and the OS credential store cannot be used: {why}",
            path.display()
        ))),
        (Err(why), _) => {
            tracing::info!(%why, "no OS credential store; credentials are kept in a plain 0600 file");
            Ok(file)
        }
    }
}

/// The OAuth state for the server at `url`, restored from the store.
/// `stdin_is_free`: standard input does not carry MCP (`login`), so a pasted address may
/// come from it.
pub(crate) async fn oauth_state(
    url: &str,
    options: &Options,
    http: HyperClient,
    stdin_is_free: bool,
) -> Result<OAuthState, CliError> {
    let mut config = OAuthConfig::new()
        .client_name("mcp-oauth")
        .store(store(&options.store, StoreUse::SignIn).await?);
    config = if options.no_browser || !browser_available() {
        // Headless: the device grant where the server offers it, else a pasted redirect.
        config
            .device_authorization(show_device_code)
            .handler(PasteHandler::new(
                options.callback_port,
                options.callback_host.as_deref(),
                options.callback_path.as_deref(),
                stdin_is_free,
            )?)
    } else {
        config.handler(loopback(options).await?)
    };
    let client_secret = client_secret(options)?;
    if let Some(id) = &options.client_id {
        let client = match &client_secret {
            Some(secret) => ClientRegistration::confidential(
                id.clone(),
                secret.clone(),
                TokenEndpointAuthMethod::ClientSecretBasic,
            ),
            None => ClientRegistration::public(id.clone()),
        };
        config = config.client(match &options.issuer {
            Some(issuer) => client.for_issuer(issuer.clone()),
            None => client,
        });
    }
    config = match (options.grant, &options.assertion_file) {
        (_, Some(path)) => config.grant(Grant::JwtBearer {
            assertion: TokenSource::file(path.clone()),
        }),
        (GrantChoice::JwtBearer, None) => {
            return Err(CliError::new("--grant jwt-bearer needs --assertion-file"))
        }
        (GrantChoice::ClientCredentials, None) => {
            if client_secret.is_none() {
                return Err(CliError::new(
                    "--grant client-credentials needs --client-id, --client-secret and --issuer",
                ));
            }
            config.grant(Grant::ClientCredentials)
        }
        (GrantChoice::AuthorizationCode, None) => config,
    };
    if let Some(url) = &options.client_metadata_url {
        let url =
            Url::parse(url).map_err(|_| CliError::new("--client-metadata-url is not a URL"))?;
        config = config.client_metadata_url(url);
    }
    if !options.scopes.is_empty() {
        config = config.scopes(options.scopes.clone());
    }
    for (name, value) in &options.authorize_params {
        config = config.authorization_param(name.clone(), value.clone());
    }
    if options.no_resource {
        config = config.resource_indicator(false);
    }
    if options.use_id_token {
        config = config.present_id_token(true);
    }
    if let Some(resource) = &options.resource {
        config = config.resource(resource.clone());
    }
    if let Some(key) = &options.credentials_key {
        config = config.credentials_key(key.clone());
    } else if let Some(resource) = &options.resource {
        // Another resource of the same server: other tokens.
        config = config.credentials_key(format!("{url}#resource={resource}"));
    }
    options.network.warn_plain_http(url);
    let plain_http = options.network.plain_http(url, options.issuer.as_deref());
    config = config.http(HttpClient::from_service(http).plain_http(plain_http));
    Ok(OAuthState::new(url, Some(config)).await?)
}

/// Whether a browser can be opened here: on Linux and the BSDs, only with a display or a
/// `BROWSER` (an SSH session has neither).
pub(crate) fn browser_available() -> bool {
    if cfg!(any(windows, target_os = "macos")) {
        return true;
    }
    ["BROWSER", "DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// The device grant's instructions, on standard error (standard output carries MCP).
fn show_device_code(device: &DeviceAuthorization) {
    let minutes = device.expires_in.as_secs().div_ceil(60);
    eprintln!(
        "mcp-oauth: to sign in at {}, open {} on any device and enter the code {} (within {minutes} min)",
        device.issuer, device.verification_uri, device.user_code
    );
    if let Some(complete) = &device.verification_uri_complete {
        eprintln!("mcp-oauth: or open {complete}");
    }
}

/// The browser sign-in's callback server. A `--callback-port` is bound only while a sign-in
/// waits, and waited for while another bridge's sign-in holds it: moving to another port
/// would break a redirect URI registered ahead of time.
async fn loopback(options: &Options) -> Result<LoopbackHandler, CliError> {
    let port = match options.callback_port {
        // mcp-remote's derived port: taken by something else, the next of eight that is free.
        // Free on [::1] too: a browser sent to localhost may try it first.
        Some(first) if options.callback_port_flexible => (first..first.saturating_add(8))
            .find(|port| {
                std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
                    && std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, *port))
                        .map_or_else(|e| e.kind() != std::io::ErrorKind::AddrInUse, |_| true)
            })
            .or(Some(first)),
        port => port,
    };
    match port.and_then(std::num::NonZeroU16::new) {
        Some(port) => {
            let handler = LoopbackHandler::on_port(port);
            match (&options.callback_host, &options.callback_path) {
                (None, None) => Ok(handler),
                (host, path) => Ok(handler.redirect_as(
                    host.as_deref().unwrap_or("127.0.0.1"),
                    path.as_deref().unwrap_or("/callback"),
                )?),
            }
        }
        // 0 asks for any free port, as no flag does.
        None => Ok(LoopbackHandler::bind().await?),
    }
}

/// The hyper client for both the OAuth calls and MCP: `--ca-file`'s roots besides the
/// webpki ones, and the proxies the environment names (`HTTPS_PROXY`, `NO_PROXY`, …).
pub(crate) fn http_client(options: &Options) -> Result<HyperClient, CliError> {
    let mut builder = options
        .network
        .connecting(HyperClient::builder().proxies_from_env());
    if let Some(path) = &options.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| CliError::new(format!("cannot read --ca-file {}: {e}", path.display())))?;
        builder = builder.root_certificates(&pem)?;
    }
    Ok(builder.build())
}

/// The secret of `--client-id`: `--client-secret`, else `MCP_OAUTH_CLIENT_SECRET` (read only
/// with `--client-id`, so the variable set for one server's bridge disturbs no other).
fn client_secret(options: &Options) -> Result<Option<String>, CliError> {
    if options.client_id.is_none() {
        return Ok(None);
    }
    let secret = options.client_secret.clone().or_else(|| {
        std::env::var("MCP_OAUTH_CLIENT_SECRET")
            .ok()
            .filter(|secret| !secret.is_empty())
    });
    if secret.is_some() && options.issuer.is_none() {
        return Err(CliError::new(
            "a client secret (--client-secret or MCP_OAUTH_CLIENT_SECRET) needs --issuer, so that it never goes to another server",
        ));
    }
    Ok(secret)
}

/// The request stack to the MCP server: `OAuthLayer`, the user's headers (a `Cookie` given
/// there wins over the jar's), the cookie jar unless `--disable-cookies`, the response
/// timeouts.
pub(crate) type McpStack = OAuth<
    AddHeaders<Either<CookieJar<ResponseTimeouts<HyperClient>>, ResponseTimeouts<HyperClient>>>,
>;

pub(crate) fn mcp_stack(
    state: OAuthState,
    options: &Options,
    http: HyperClient,
) -> Result<McpStack, CliError> {
    let headers = options
        .headers
        .iter()
        .map(|header| match options.headers_expanded {
            true => parse_literal_header(header),
            false => parse_header(header, |name| std::env::var(name).ok()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cookies = (!options.network.disable_cookies).then(CookieJarLayer::new);
    let inner = AddHeaders {
        inner: ServiceBuilder::new()
            .option_layer(cookies)
            .layer(options.network.response_timeouts())
            .service(http),
        headers: Arc::new(headers),
    };
    Ok(tower::Layer::layer(&OAuthLayer::new(state), inner))
}

/// `Name: value`, with `${VAR}` in the value replaced by `env(VAR)`.
pub(crate) fn parse_header(
    header: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(HeaderName, HeaderValue), CliError> {
    let (name, value) = header_parts(header)?;
    let value = expand(value.trim(), &env)?;
    header_value(name, &value)
}

/// `Name: value` taken as written (its variables were expanded already).
pub(crate) fn parse_literal_header(header: &str) -> Result<(HeaderName, HeaderValue), CliError> {
    let (name, value) = header_parts(header)?;
    header_value(name, value.trim())
}

/// Whether the bridge sets header `name` itself, so a user's may not.
pub(crate) fn is_bridge_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    TRANSPORT_HEADERS.contains(&name.as_str())
        || name.starts_with(tower_mcp_oauth::mcp_headers::MCP_PARAM_PREFIX)
}

fn header_parts(header: &str) -> Result<(HeaderName, &str), CliError> {
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| CliError::new("--header takes \"Name: value\""))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| CliError::new("--header has an invalid header name"))?;
    if is_bridge_header(name.as_str()) {
        return Err(CliError::new(format!(
            "--header {name}: the bridge sets that header itself"
        )));
    }
    Ok((name, value))
}

fn header_value(name: HeaderName, value: &str) -> Result<(HeaderName, HeaderValue), CliError> {
    // The value may hold a secret: the error does not quote it, and it is never logged.
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| CliError::new(format!("--header {name} has an invalid value")))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Headers the transport and the OAuth layer own (and every `Mcp-Param-*` one): a user's
/// value would break the session, the content negotiation, the token's proof, or the
/// 2026-07-28 headers the server checks against the body.
const TRANSPORT_HEADERS: &[&str] = &[
    "accept",
    "connection",
    "content-length",
    "content-type",
    "dpop",
    "host",
    "last-event-id",
    tower_mcp_oauth::mcp_headers::MCP_METHOD,
    tower_mcp_oauth::mcp_headers::MCP_NAME,
    "mcp-protocol-version",
    "mcp-session-id",
    "transfer-encoding",
];

fn expand(value: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, CliError> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| CliError::new("--header has an unclosed ${"))?;
        let name = &after[..end];
        let value = env(name).ok_or_else(|| {
            CliError::new(format!("--header names ${{{name}}}, which is not set"))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Adds the user's headers to every request to the MCP server: a name given twice is sent
/// twice, and `Authorization` only while the OAuth layer has no token to send (a static
/// token for a server that takes one; once signed in, the OAuth token wins, or every answer
/// would be another 401 and another sign-in).
#[derive(Clone)]
pub(crate) struct AddHeaders<S> {
    inner: S,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl<S, B> tower::Service<Request<B>> for AddHeaders<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let headers = request.headers_mut();
        let has_token = headers.contains_key(http::header::AUTHORIZATION);
        let added = self
            .headers
            .iter()
            .filter(|(name, _)| !(has_token && name == http::header::AUTHORIZATION));
        for (name, _) in added.clone() {
            headers.remove(name);
        }
        for (name, value) in added {
            headers.append(name.clone(), value.clone());
        }
        self.inner.call(request)
    }
}

pub(crate) fn tool_argument(pair: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = pair.split_once('=').ok_or("expected KEY=VALUE")?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::from(value));
    Ok((key.to_owned(), value))
}

pub(crate) fn key_value(pair: &str) -> Result<(String, String), String> {
    let (key, value) = pair.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Whether `tokens` are of no use without signing in: expired, with no refresh token.
pub(crate) fn needs_sign_in(tokens: &TokenSet) -> bool {
    tokens.expires_within(0) && tokens.refresh_token.is_none()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn expiry(tokens: &TokenSet) -> String {
    match tokens.expires_at {
        None => "no stated expiry".into(),
        Some(at) if at <= now_secs() => match tokens.refresh_token {
            Some(_) => "expired (will refresh)".into(),
            None => "expired".into(),
        },
        Some(at) => format!("expires in {} s", at - now_secs()),
    }
}

/// What a sign-in got, on standard error: scopes and expiry, never a token.
pub(crate) fn describe_tokens(tokens: &TokenSet) {
    eprintln!(
        "  scopes: {}\n  access token: {}",
        if tokens.scopes.is_empty() {
            "(none stated)".to_owned()
        } else {
            tokens.scopes.join(" ")
        },
        expiry(tokens)
    );
}

pub(crate) async fn status(options: &StoreOptions) -> Result<(), CliError> {
    let store = store(options, StoreUse::ReadOrRemove).await?;
    let entries = store.entries().await?;
    if entries.is_empty() {
        println!("no credentials in {}", store.path().display());
        return Ok(());
    }
    println!("credentials in {}:", store.path().display());
    for (key, record) in entries {
        println!("{}", key.resource);
        println!("  issuer: {}", key.issuer);
        match &record.tokens {
            Some(tokens) => {
                let scopes = if tokens.scopes.is_empty() {
                    "(none stated)".to_owned()
                } else {
                    tokens.scopes.join(" ")
                };
                println!("  scopes: {scopes}");
                println!("  access token: {}", expiry(tokens));
                println!(
                    "  refresh token: {}",
                    if tokens.refresh_token.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                );
            }
            None => println!("  signed out (client registration kept)"),
        }
    }
    Ok(())
}

pub(crate) async fn logout(url: &str, options: &StoreOptions) -> Result<(), CliError> {
    let store = store(options, StoreUse::ReadOrRemove).await?;
    let keys: Vec<CredentialKey> = store
        .entries()
        .await?
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| same_server(&key.resource, url))
        .collect();
    if keys.is_empty() {
        eprintln!("no credentials for {}", shown(url));
        return Ok(());
    }
    for key in &keys {
        store.remove(key).await?;
    }
    eprintln!("signed out of {}", shown(url));
    Ok(())
}

/// Whether two spellings name one server (`https://Example.com` and `https://example.com/`).
fn same_server(stored: &str, asked: &str) -> bool {
    // A stored key may carry a fragment naming one configuration of the server (another
    // resource, mcp-remote's headers): logging out of the server forgets them all.
    let canonical = |url: &str| match Url::parse(url) {
        Ok(mut url) => {
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => url.trim_end_matches('/').to_owned(),
    };
    canonical(stored) == canonical(asked)
}

/// `url` as messages and logs show it: without a query, fragment or password, which may
/// carry a key.
pub(crate) fn shown(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut url) => {
            // `https://TOKEN@host` is a common way to give an API key.
            let _ = url.set_username("");
            redact_url(&url)
        }
        Err(_) => "the server".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn headers_expand_environment_variables_and_never_quote_values() {
        let (name, value) = parse_header("Authorization: Bearer ${TOKEN}", env).unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer s3cret");
        assert!(parse_header("X-Key: ${MISSING}", env).is_err());
        assert!(parse_header("X-Key: ${TOKEN", env).is_err());
        assert!(parse_header("no colon", env).is_err());
        let error = parse_header("X-Key: bad\u{1}${TOKEN}", env).unwrap_err();
        assert!(!error.to_string().contains("s3cret"));
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn an_empty_directory_variable_counts_as_unset() {
        let options = StoreOptions {
            store: StoreChoice::Auto,
            store_file: None,
        };
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let path = |pairs| store_path_with(&options, vars(pairs)).map_err(|e| e.to_string());
        assert_eq!(
            path(&[("MCP_OAUTH_DIR", ""), ("HOME", "/home/u")]),
            Ok(PathBuf::from("/home/u/.config/mcp-oauth/credentials.json"))
        );
        assert_eq!(
            path(&[("MCP_OAUTH_DIR", "/srv/m"), ("HOME", "/home/u")]),
            Ok(PathBuf::from("/srv/m/credentials.json"))
        );
        assert_eq!(
            path(&[("XDG_CONFIG_HOME", ""), ("HOME", "/home/u")]),
            Ok(PathBuf::from("/home/u/.config/mcp-oauth/credentials.json"))
        );
        assert!(path(&[("MCP_OAUTH_DIR", ""), ("HOME", "")]).is_err());
    }

    #[test]
    fn one_server_in_several_spellings() {
        assert!(same_server("https://example.com/", "https://Example.com"));
        // Each configuration of the server (mcp-remote's, another resource) is the server.
        assert!(same_server(
            "https://example.com/mcp#mcp-remote-0123abcd",
            "https://example.com/mcp"
        ));
        assert!(same_server(
            "https://example.com:443/mcp",
            "https://example.com/mcp/"
        ));
        assert!(!same_server(
            "https://example.com/mcp",
            "https://example.com/other"
        ));
        assert_eq!(
            shown("https://user:pw@example.com/mcp?key=s3cret#x"),
            "https://example.com/mcp"
        );
        assert_eq!(shown("not a url ?key=s3cret"), "the server");
    }

    #[test]
    fn headers_the_bridge_owns_are_refused() {
        for header in [
            "Mcp-Session-Id: x",
            "MCP-Protocol-Version: 2025-06-18",
            "content-type: text/plain",
            "Accept: */*",
            "Host: elsewhere.example",
            "DPoP: x",
            "Mcp-Method: tools/call",
            "Mcp-Param-Region: eu",
        ] {
            let error = parse_header(header, env).unwrap_err();
            assert!(
                error.to_string().contains("sets that header itself"),
                "{header}"
            );
        }
    }

    #[tokio::test]
    async fn user_headers_repeat_and_a_static_token_gives_way_to_the_oauth_one() {
        use tower::{Service, ServiceExt};
        let flags = ["Authorization: Bearer ${TOKEN}", "X-Team: a", "X-Team: b"];
        let headers = flags.map(|flag| parse_header(flag, env).unwrap());
        assert!(headers[0].1.is_sensitive());
        let service = AddHeaders {
            inner: tower::service_fn(|request: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(request.headers().clone())
            }),
            headers: Arc::new(headers.to_vec()),
        };
        let sent = |request: Request<()>| {
            let mut service = service.clone();
            async move { service.ready().await.unwrap().call(request).await.unwrap() }
        };
        let before_sign_in = sent(Request::new(())).await;
        assert_eq!(before_sign_in["authorization"], "Bearer s3cret");
        let teams: Vec<_> = before_sign_in.get_all("x-team").iter().collect();
        assert_eq!(teams, ["a", "b"]);
        let signed_in = sent(
            Request::builder()
                .header("authorization", "Bearer oauth")
                .header("x-team", "replaced")
                .body(())
                .unwrap(),
        )
        .await;
        assert_eq!(signed_in["authorization"], "Bearer oauth");
        assert_eq!(signed_in.get_all("authorization").iter().count(), 1);
        assert_eq!(signed_in.get_all("x-team").iter().count(), 2);
    }

    proptest! {
        #[test]
        fn any_header_flag_parses_or_fails_without_panicking(flag in any::<String>()) {
            if let Err(error) = parse_header(&flag, env) {
                prop_assert!(!error.to_string().contains("s3cret"));
            }
        }
    }
}
