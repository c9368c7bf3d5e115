//! `mcp-oauth`: the stdio bridge desktop MCP clients run for OAuth-protected servers, and the
//! commands around it (`login`, `logout`, `status`, `call`). The flags are parsed here; the
//! rest is thin glue over the library.

mod cli_error;
mod compat;
mod ignore;
mod links;
mod network;
mod os_store;
mod paste;
mod relay;
mod setup;
mod stop;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// MCP over stdio for servers that need OAuth: signs in once, keeps the tokens, refreshes them,
/// and relays every message both ways.
#[derive(Parser)]
#[command(
    name = "mcp-oauth",
    version,
    args_override_self = true,
    after_help = "Environment:\n  RUST_LOG        the log filter (default: info)\n  MCP_OAUTH_DIR   where credentials are kept (default: the platform's config directory)\n  MCP_OAUTH_CLIENT_SECRET\n                  the secret of --client-id, kept off the command line\n  BROWSER         the browser to open for sign-in (default: the system's)\n  HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY\n                  an http:// proxy for https (CONNECT) and http destinations, and the hosts\n                  that go directly (loopback always does)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Write the log to this file (appended) instead of standard error, for MCP clients that
    /// drop the bridge's standard error; prompts and fatal errors still go there.
    #[arg(long, global = true, value_name = "PATH")]
    log_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// MCP on standard input and output, relayed to the server at URL (what an MCP client
    /// runs). Nothing but JSON-RPC goes to standard output; logs go to standard error.
    Proxy {
        /// The MCP server's URL.
        url: String,
        #[command(flatten)]
        options: Options,
        /// The transport to the server.
        #[arg(long, value_enum, default_value_t = Transport::Auto)]
        transport: Transport,
        /// How the client's protocol revision meets the server's.
        #[arg(long, value_enum, default_value_t = Protocol::Legacy)]
        protocol: Protocol,
    },
    /// Signs in to the server at URL now, so a later proxy needs no browser.
    Login {
        /// The MCP server's URL.
        url: String,
        #[command(flatten)]
        options: Options,
    },
    /// Forgets the credentials kept for the server at URL.
    Logout {
        /// The MCP server's URL.
        url: String,
        #[command(flatten)]
        store: StoreOptions,
    },
    /// Lists the servers credentials are kept for: issuer, scopes, expiry (never the tokens).
    Status {
        #[command(flatten)]
        store: StoreOptions,
    },
    /// Calls one tool and prints its result as JSON (for scripts, and to check a setup). A page
    /// the server asks you to open (an account to link) is shown, and opened only if you answer y.
    Call {
        /// The MCP server's URL.
        url: String,
        /// The tool's name.
        tool: String,
        /// An argument, repeatable; VALUE is read as JSON, else taken as a string.
        #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = setup::tool_argument)]
        arguments: Vec<(String, serde_json::Value)>,
        #[command(flatten)]
        options: Options,
        /// The transport to the server.
        #[arg(long, value_enum, default_value_t = Transport::Auto)]
        transport: Transport,
    },
}

/// How to reach the server and sign in.
#[derive(Args, Clone)]
struct Options {
    /// A header for every request to the MCP server ("Name: value"), repeatable; ${VAR} in the
    /// value is replaced by the environment variable VAR. An Authorization header goes only
    /// until the bridge has signed in; the headers the transport sets are refused.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A client registered with the authorization server ahead of time.
    // Generated ids and secrets are random base64url, so one in 64 begins with '-'.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    client_id: Option<String>,
    /// The secret of --client-id (needs --issuer, so it never goes to another server); or
    /// MCP_OAUTH_CLIENT_SECRET, read only with --client-id.
    #[arg(long, value_name = "SECRET", requires_all = ["client_id", "issuer"], allow_hyphen_values = true)]
    client_secret: Option<String>,
    /// The authorization server --client-id belongs to.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// How to get tokens: a person signing in (default), the client's own credentials
    /// (--client-id, --client-secret, --issuer), or a workload identity token
    /// (--assertion-file).
    #[arg(long, value_enum, default_value_t = GrantChoice::AuthorizationCode)]
    grant: GrantChoice,
    /// The workload identity token (a Kubernetes projected token, a SPIFFE JWT-SVID), read
    /// again at each acquisition as it rotates; implies --grant jwt-bearer.
    #[arg(long, value_name = "PATH")]
    assertion_file: Option<std::path::PathBuf>,
    /// The client's Client ID Metadata Document URL (used where the server supports them).
    #[arg(long, value_name = "URL")]
    client_metadata_url: Option<String>,
    /// A scope to ask for instead of the discovered ones, repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// An extra authorization request parameter (an IdP's audience, prompt), repeatable.
    #[arg(long = "authorize-param", value_name = "KEY=VALUE", value_parser = setup::key_value)]
    authorize_params: Vec<(String, String)>,
    /// Leave out the RFC 8707 resource parameter (for IdPs that refuse it).
    #[arg(long)]
    no_resource: bool,
    /// Send the OpenID Connect ID token instead of the access token, for servers that check
    /// who the caller is (AWS Cognito before Bedrock AgentCore); needs `openid` among the
    /// scopes (--scope openid).
    #[arg(long)]
    use_id_token: bool,
    /// The RFC 8707 resource to ask tokens for instead of the one the server names (a tenant
    /// of a multi-tenant server); its credentials are kept apart.
    #[arg(long, value_name = "URI")]
    resource: Option<String>,
    /// Hide tools whose name matches this pattern (`*` matches anything; case ignored):
    /// left out of tools/list, and calls to them refused. Repeatable.
    #[arg(long = "ignore-tool", value_name = "PATTERN")]
    ignore_tools: Vec<String>,
    /// The loopback port of the sign-in callback, listened on only while a sign-in waits (a
    /// busy one is waited for) [default: any free port].
    #[arg(long, value_name = "PORT")]
    callback_port: Option<u16>,
    /// The host the redirect URI names (localhost or 127.0.0.1; the callback server listens on
    /// 127.0.0.1) [default: 127.0.0.1].
    #[arg(long, value_name = "HOST", requires = "callback_port")]
    callback_host: Option<String>,
    /// The path of the redirect URI [default: /callback].
    #[arg(long, value_name = "PATH", requires = "callback_port")]
    callback_path: Option<String>,
    /// Where the credentials are kept in the store, when not under the server URL (set from
    /// mcp-remote's arguments, so two of its configurations for one server stay apart).
    #[arg(skip)]
    credentials_key: Option<String>,
    /// The headers' variables are expanded already (mcp-remote's way: an unknown one stays).
    #[arg(skip)]
    headers_expanded: bool,
    /// The callback port may move to one of the next seven when busy (mcp-remote's derived
    /// port, not one a registration names).
    #[arg(skip)]
    callback_port_flexible: bool,
    /// Do not open a browser (also the default without a display): sign in with the device
    /// grant where the server offers it (a code to enter on any device), else print the
    /// sign-in URL and read the address the browser ends on, pasted on the terminal.
    #[arg(long)]
    no_browser: bool,
    /// Also trust the certificates in this PEM file (a private CA).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    network: network::Network,
    #[command(flatten)]
    store: StoreOptions,
}

/// Where credentials are kept.
#[derive(Args, Clone)]
struct StoreOptions {
    /// Where credentials are kept: a file sealed with a key from the OS credential store
    /// (Secret Service, Keychain, Credential Manager), or a plain 0600 file; auto uses the OS
    /// store where there is one.
    #[arg(long = "store", value_enum, default_value_t = StoreChoice::Auto)]
    store: StoreChoice,
    /// The credentials file [default: credentials.json in MCP_OAUTH_DIR or the platform's
    /// config directory].
    #[arg(long, value_name = "PATH")]
    store_file: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreChoice {
    /// The OS credential store where one answers, else the file.
    Auto,
    /// The file, sealed with a key kept in the OS credential store (fails without one).
    Keyring,
    /// The file alone, readable by this user only.
    File,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GrantChoice {
    /// A person signs in through the browser (or a pasted redirect).
    AuthorizationCode,
    /// Client credentials: no person involved.
    ClientCredentials,
    /// A workload identity token (RFC 7523 JWT bearer).
    JwtBearer,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Messages go through as the client sends them.
    Legacy,
    /// One `server/discover` first: a server speaking only MCP 2026-07-28 is reached by
    /// translating for a client of an earlier revision (the handshake answered here, each
    /// request carried in the new revision, `input_required` rounds put to the client as the
    /// server requests it knows, list changes listened for).
    Auto,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// Streamable HTTP, falling back to HTTP+SSE when the server refuses it.
    Auto,
    /// Streamable HTTP only.
    Streamable,
    /// Legacy HTTP+SSE only.
    Sse,
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    // `mcp-oauth URL [PORT] [flags]`: a command line copied from mcp-remote.
    let (cli, default_filter, warnings) = if compat::is_mcp_remote_style(&raw) {
        let read = |path: &str| std::fs::read_to_string(path);
        match compat::parse(&raw, |name| std::env::var(name).ok(), read) {
            Ok(compat) => (
                Cli {
                    command: Command::Proxy {
                        url: compat.url,
                        options: compat.options,
                        transport: compat.transport,
                        protocol: compat.protocol,
                    },
                    log_file: compat.log_file,
                },
                compat.log_filter.unwrap_or("info"),
                compat.warnings,
            ),
            Err(error) => {
                eprintln!("mcp-oauth: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        (Cli::parse(), "info", Vec::new())
    };
    let log = tracing_subscriber::fmt().with_ansi(false).with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| default_filter.into()),
    );
    match &cli.log_file {
        Some(path) => match open_log(path) {
            Ok(file) => log.with_writer(std::sync::Mutex::new(file)).init(),
            Err(error) => {
                eprintln!(
                    "mcp-oauth: cannot open the log file {}: {error}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        },
        None => log.with_writer(std::io::stderr).init(),
    }
    for warning in warnings {
        tracing::warn!("mcp-remote's {warning}");
    }
    // One thread: the bridge waits on sockets and pipes, and a message handed between
    // worker threads costs more than the work done on it.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mcp-oauth: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    // For the bridge, as early as the runtime allows: a signal before this ends the process
    // at once (nothing of the bridge's is in flight yet); from here on it stops the bridge in
    // order. The other commands keep the default (tokio's handlers, once installed, stay).
    let signals = matches!(cli.command, Command::Proxy { .. }).then(|| {
        let _entered = runtime.enter();
        stop::StopSignals::install()
    });
    let result = runtime.block_on(run(cli.command, signals));
    // Whatever is still running (a stream reader, a sign-in) ends with the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-oauth: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The log file, appended to, readable by this user alone (it names servers and issuers).
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

async fn run(
    command: Command,
    signals: Option<stop::StopSignals>,
) -> Result<(), cli_error::CliError> {
    match command {
        Command::Proxy {
            url,
            options,
            transport,
            protocol,
        } => {
            let ignore_tools = options.ignore_tools.clone();
            let ping_every = options.network.ping_every()?;
            let started = async {
                // One client, one connection pool, for the OAuth calls and MCP alike.
                let http = setup::http_client(&options)?;
                let state = setup::oauth_state(&url, &options, http.clone(), false).await?;
                setup::mcp_stack(state, &options, http)
            };
            let mut signals = signals.unwrap_or_else(stop::StopSignals::install);
            match stop::unless_stopped(&mut signals, started).await {
                Some(stack) => {
                    let settings = relay::Settings {
                        transport,
                        bridge_eras: protocol == Protocol::Auto,
                        ignore_tools: &ignore_tools,
                        ping_every,
                    };
                    relay::run(&url, stack?, settings, signals).await
                }
                None => Ok(()),
            }
        }
        Command::Login { url, options } => {
            let http = setup::http_client(&options)?;
            let state = setup::oauth_state(&url, &options, http, true).await?;
            let tokens = match state.credentials() {
                Some(tokens) if !setup::needs_sign_in(&tokens) => tokens,
                _ => state.authorize().await?,
            };
            eprintln!("signed in to {}", setup::shown(&url));
            setup::describe_tokens(&tokens);
            Ok(())
        }
        Command::Logout { url, store } => setup::logout(&url, &store).await,
        Command::Status { store } => setup::status(&store).await,
        Command::Call {
            url,
            tool,
            arguments,
            options,
            transport,
        } => {
            let http = setup::http_client(&options)?;
            let state = setup::oauth_state(&url, &options, http.clone(), true).await?;
            let stack = setup::mcp_stack(state, &options, http)?;
            relay::call(&url, stack, transport, &tool, arguments).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_may_begin_with_a_dash() {
        let cli = Cli::try_parse_from([
            "mcp-oauth",
            "call",
            "https://mcp.example/mcp",
            "whoami",
            "--client-id",
            "-6Xq",
            "--client-secret",
            "-s3cret",
            "--issuer",
            "https://as.example",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
        let Command::Call { options, .. } = cli.command else {
            panic!("not a call");
        };
        assert_eq!(options.client_id.as_deref(), Some("-6Xq"));
        assert_eq!(options.client_secret.as_deref(), Some("-s3cret"));
    }
}
