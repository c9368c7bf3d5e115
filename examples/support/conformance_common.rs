//! What both conformance clients share: how the suite's context becomes an `OAuthConfig`, and
//! the values they fill in for tools and elicitations.

use anyhow::Context;
use clap::Args;
use serde_json::{json, Map, Value};
use tower_mcp_oauth::client::{
    ClientKey, ClientRegistration, EnterpriseGrant, Grant, HeadlessHandler, OAuthConfig,
    TokenEndpointAuthMethod, TokenSource,
};
use url::Url;

/// The Client ID Metadata Document URL the suite expects clients to present.
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";
/// Never listened on: the headless handler reads the code from the redirect's `Location`.
const REDIRECT_URI: &str = "http://127.0.0.1:3000/callback";

/// What the suite tells a client: the server URL as the last argument, the rest in the
/// environment.
#[derive(Args)]
pub(crate) struct SuiteArgs {
    /// The MCP server's URL (the suite passes it as the last argument).
    #[arg(value_name = "SERVER_URL")]
    pub(crate) server_url: String,
    /// The scenario's name: what to do once connected.
    #[arg(long, env = "MCP_CONFORMANCE_SCENARIO", value_name = "NAME")]
    pub(crate) scenario: Option<String>,
    /// The scenario's context (JSON): a pre-registered client (its client_id, and
    /// client_secret if any), tool calls to make.
    // Its value holds a client secret: --help must not print it.
    #[arg(
        long,
        env = "MCP_CONFORMANCE_CONTEXT",
        value_name = "JSON",
        hide_env_values = true
    )]
    pub(crate) context: Option<String>,
    /// The protocol revision the scenario runs at.
    #[arg(long, env = "MCP_CONFORMANCE_PROTOCOL_VERSION", value_name = "VERSION")]
    pub(crate) protocol_version: Option<String>,
}

/// The tool calls `http-custom-headers` asks for in its context: each tool's name and
/// arguments.
pub(crate) fn context_tool_calls(context: Option<&Value>) -> Vec<(String, Value)> {
    let calls = context
        .and_then(|c| c.get("toolCalls"))
        .and_then(Value::as_array);
    calls
        .into_iter()
        .flatten()
        .map(|call| {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
            let arguments = call.get("arguments").cloned().unwrap_or(json!({}));
            (name.to_owned(), arguments)
        })
        .collect()
}

/// Logs to stderr (the suite reads stdout), filtered by `RUST_LOG` or else `default_filter`.
pub(crate) fn log_to_stderr(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
}

/// The exit status the suite reads: 0 when the scenario was acted out.
pub(crate) fn exit_code(outcome: anyhow::Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conformance client failed: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The scenario's context (`MCP_CONFORMANCE_CONTEXT`), parsed.
pub(crate) fn parse_context(context: Option<&str>) -> anyhow::Result<Option<Value>> {
    context
        .map(serde_json::from_str)
        .transpose()
        .context("MCP_CONFORMANCE_CONTEXT is not JSON")
}

/// A headless client presenting the suite's metadata document, or the pre-registered client
/// the context names (its `client_id`, and `client_secret` if any).
pub(crate) fn config_from_context(context: Option<&Value>) -> anyhow::Result<OAuthConfig> {
    let config = OAuthConfig::new()
        .client_name("tower-mcp-oauth conformance client")
        .client_metadata_url(Url::parse(CLIENT_METADATA_URL)?)
        .handler(HeadlessHandler::new(Url::parse(REDIRECT_URI)?));
    let text = |key: &str| context.and_then(|c| c.get(key)).and_then(Value::as_str);
    let Some(client_id) = text("client_id") else {
        return Ok(config);
    };
    let scenario = text("name").unwrap_or_default();
    // The grants without a user, as the extension scenarios hand them out.
    if let Some(pem) = text("private_key_pem") {
        let key = ClientKey::from_pem(pem).context("the scenario's private_key_pem")?;
        return Ok(config
            .client(ClientRegistration::private_key_jwt(client_id, key))
            .grant(Grant::ClientCredentials));
    }
    if let Some(workload_token) = text("valid_jwt") {
        return Ok(config
            .client(ClientRegistration::public(client_id))
            .grant(Grant::JwtBearer {
                assertion: TokenSource::fixed(workload_token),
            }));
    }
    let client = match text("client_secret") {
        Some(secret) => ClientRegistration::confidential(
            client_id,
            secret,
            TokenEndpointAuthMethod::ClientSecretBasic,
        ),
        None => ClientRegistration::public(client_id),
    };
    let config = config.client(client);
    if let (Some(issuer), Some(token_endpoint), Some(idp_client), Some(id_token)) = (
        text("idp_issuer"),
        text("idp_token_endpoint"),
        text("idp_client_id"),
        text("idp_id_token"),
    ) {
        let enterprise = EnterpriseGrant::with_token_endpoint(
            issuer,
            Url::parse(token_endpoint)?,
            ClientRegistration::public(idp_client),
            TokenSource::fixed(id_token),
        );
        return Ok(config.grant(Grant::EnterpriseManaged(enterprise)));
    }
    if scenario.starts_with("auth/client-credentials") {
        return Ok(config.grant(Grant::ClientCredentials));
    }
    Ok(config)
}

/// A value for each property of an object schema: its default, else one of its type.
pub(crate) fn sample_object(schema: Option<&Value>) -> Value {
    let mut object = Map::new();
    let properties = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    for (name, property) in properties.into_iter().flatten() {
        let value = property.get("default").cloned().unwrap_or_else(|| {
            match property.get("type").and_then(Value::as_str) {
                Some("boolean") => json!(true),
                Some("integer" | "number") => json!(2),
                Some("object") => sample_object(Some(property)),
                Some("array") => json!([]),
                _ => json!("test"),
            }
        });
        object.insert(name.clone(), value);
    }
    Value::Object(object)
}

/// The arguments a tool is called with: a value for each property its input schema lists.
pub(crate) fn sample_arguments(tool: &Value) -> Value {
    sample_object(tool.get("inputSchema"))
}
