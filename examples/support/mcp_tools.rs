//! The MCP server the examples and tests protect: tools `echo`, `add`, `whoami` (answering with
//! the caller's `AuthInfo` as `RequireBearer` put it in the request) and `server_stats`, which
//! declares that it needs the `mcp:admin` scope. With
//! [`Tools::with_conformance_diagnostics`], also the diagnostic tools the conformance suite's
//! server scenarios call.
#![allow(dead_code, unreachable_pub)]

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{Extension, InputResponses};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, Implementation,
    ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::json;
#[cfg(feature = "rmcp-server")]
use tower_mcp_oauth::server::scopes_meta;
use tower_mcp_oauth::server::AuthInfo;

/// The library's `scopes_meta`, for the test builds that include this file without the
/// library's `rmcp-server` feature: the same `_meta`.
#[cfg(not(feature = "rmcp-server"))]
fn scopes_meta<const N: usize>(scopes: [&str; N]) -> rmcp::model::MetaObject {
    let mut meta = rmcp::model::MetaObject::new();
    meta.0.insert(
        tower_mcp_oauth::metadata::SCOPES_META_KEY.to_owned(),
        serde_json::json!(scopes.as_slice()),
    );
    meta
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// The first addend.
    pub a: f64,
    /// The second addend.
    pub b: f64,
}

#[derive(Clone)]
pub struct Tools {
    tool_router: ToolRouter<Self>,
    /// How `crm_contacts` reaches the demo CRM: exchanges at the server's own token endpoint,
    /// and the CRM's URL.
    #[cfg(all(feature = "downstream", feature = "rmcp-server"))]
    downstream: Option<(
        tower_mcp_oauth::downstream::TokenExchange,
        String,
        tower_mcp_oauth::http::HttpClient,
    )>,
    /// How `demo_github_login` reaches the demo third party: the users' linked accounts, its
    /// API's URL and the HTTP client.
    #[cfg(all(
        feature = "downstream",
        feature = "rmcp-server",
        feature = "authorization-server"
    ))]
    linked: Option<(
        tower_mcp_oauth::downstream::accounts::LinkedAccounts,
        String,
        tower_mcp_oauth::http::HttpClient,
    )>,
}

impl Default for Tools {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl Tools {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            #[cfg(all(feature = "downstream", feature = "rmcp-server"))]
            downstream: None,
            #[cfg(all(
                feature = "downstream",
                feature = "rmcp-server",
                feature = "authorization-server"
            ))]
            linked: None,
        }
    }

    /// The demo tools and the conformance suite's diagnostic tools.
    pub fn with_conformance_diagnostics() -> Self {
        Self {
            tool_router: Self::tool_router() + Self::diagnostic_router(),
            #[cfg(all(feature = "downstream", feature = "rmcp-server"))]
            downstream: None,
            #[cfg(all(
                feature = "downstream",
                feature = "rmcp-server",
                feature = "authorization-server"
            ))]
            linked: None,
        }
    }

    #[tool(description = "Send the text back")]
    async fn echo(
        &self,
        Parameters(EchoArgs { text }): Parameters<EchoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(description = "Add two numbers")]
    async fn add(
        &self,
        Parameters(AddArgs { a, b }): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(
            (a + b).to_string(),
        )]))
    }

    #[tool(
        description = "How many tools this server has (needs the mcp:admin scope)",
        meta = scopes_meta(["mcp:admin"])
    )]
    async fn server_stats(&self) -> Result<CallToolResult, ErrorData> {
        let answer = json!({ "tools": self.tool_router.list_all().len() });
        Ok(CallToolResult::success(vec![ContentBlock::text(
            answer.to_string(),
        )]))
    }

    #[tool(description = "Who the access token speaks for")]
    async fn whoami(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(info) = parts.extensions.get::<AuthInfo>() else {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "no AuthInfo: the route is not protected",
            )]));
        };
        let answer = json!({
            "subject": info.subject,
            "client_id": info.client_id,
            "scopes": info.scopes,
            "audience": info.audience,
            "issuer": info.issuer,
            "expires_at": info.expires_at,
            "dpop_jkt": info.dpop_jkt(),
        });
        Ok(CallToolResult::success(vec![ContentBlock::text(
            answer.to_string(),
        )]))
    }
}

/// The tools the conformance suite's `server-stateless` scenario calls to see how the server
/// treats what a 2026-07-28 request declares in its `_meta`.
#[tool_router(router = diagnostic_router)]
impl Tools {
    #[tool(description = "Needs the client's sampling capability (a conformance diagnostic)")]
    async fn test_missing_capability(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = context.client_capabilities();
        if declared.is_some_and(|capabilities| capabilities.sampling.is_some()) {
            return Ok(CallToolResult::success(vec![ContentBlock::text(
                "the client can sample",
            )]));
        }
        let required: ClientCapabilities = serde_json::from_value(json!({"sampling": {}}))
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Err(ErrorData::missing_required_client_capability(required))
    }

    #[tool(
        description = "Asks the user to confirm, as an input_required result (a conformance diagnostic)"
    )]
    async fn test_streaming_elicitation(
        &self,
        context: RequestContext<RoleServer>,
        InputResponses(responses): InputResponses,
    ) -> Result<CallToolResponse, ErrorData> {
        let modern = context
            .protocol_version()
            .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28);
        if !modern {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "this diagnostic asks for input the 2026-07-28 way",
            )])
            .into());
        }
        if let Some(responses) = responses {
            let answer = serde_json::to_value(responses)
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            return Ok(
                CallToolResult::success(vec![ContentBlock::text(answer.to_string())]).into(),
            );
        }
        let input_required = json!({
            "resultType": "input_required",
            "inputRequests": {"confirm": {"method": "elicitation/create", "params": {
                "mode": "form",
                "message": "Confirm the diagnostic",
                "requestedSchema": {"type": "object", "properties": {
                    "confirmed": {"type": "boolean", "default": true}}},
            }}},
        });
        serde_json::from_value(input_required)
            .map(CallToolResponse::InputRequired)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    /// Logs only for a request whose `_meta` asked for a log level.
    #[tool(
        description = "Logs at the level the request asks for, and only then (a conformance diagnostic)"
    )]
    #[allow(deprecated)]
    async fn test_logging_tool(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(level) = context.meta.log_level() {
            let message = rmcp::model::LoggingMessageNotificationParam::new(
                level,
                json!("the diagnostic ran"),
            );
            context
                .peer
                .notify_logging_message(message)
                .await
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(
            "logged as asked",
        )]))
    }
}

/// `crm_contacts`: the demo CRM called as the caller, by token exchange.
#[cfg(all(feature = "downstream", feature = "rmcp-server"))]
#[tool_router(router = downstream_router)]
impl Tools {
    /// Adds `crm_contacts`, calling the CRM at `crm` with `http`, its token from `exchange`.
    pub fn with_downstream(
        mut self,
        exchange: tower_mcp_oauth::downstream::TokenExchange,
        crm: String,
        http: tower_mcp_oauth::http::HttpClient,
    ) -> Self {
        self.tool_router += Self::downstream_router();
        self.downstream = Some((exchange, crm, http));
        self
    }

    #[tool(
        description = "The caller's contacts at the demo CRM, fetched as the caller (token exchange)"
    )]
    async fn crm_contacts(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        use tower::ServiceExt as _;
        use tower_mcp_oauth::downstream::{tool_error, Caller, Downstream};
        let Some((exchange, crm, http)) = &self.downstream else {
            return Err(ErrorData::internal_error("no CRM configured", None));
        };
        let caller = Caller::from_extensions(&parts.extensions)?;
        let target = Downstream::resource(crm.as_str()).scopes(["crm:read"]);
        let client = exchange.on_behalf_of(caller, target, http.clone());
        let request = http::Request::get(format!("{crm}/contacts"))
            .body(Default::default())
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let answer = client.oneshot(request).await.map_err(tool_error)?;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            String::from_utf8_lossy(answer.body()).into_owned(),
        )]))
    }
}

/// `demo_github_login`: the demo third party's API called with the caller's linked account
/// there (URL-mode elicitation the first time).
#[cfg(all(
    feature = "downstream",
    feature = "rmcp-server",
    feature = "authorization-server"
))]
#[tool_router(router = linked_router)]
impl Tools {
    /// Adds `demo_github_login`, calling the third party's API at `api` with the caller's
    /// token from `accounts`.
    pub fn with_linked_accounts(
        mut self,
        accounts: tower_mcp_oauth::downstream::accounts::LinkedAccounts,
        api: String,
        http: tower_mcp_oauth::http::HttpClient,
    ) -> Self {
        self.tool_router += Self::linked_router();
        self.linked = Some((accounts, api, http));
        self
    }

    #[tool(
        description = "Your login at the demo third party (standing in for GitHub), with your account there: the first call asks you to link it in your browser"
    )]
    async fn demo_github_login(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        rmcp::handler::server::tool::RequestState(state): rmcp::handler::server::tool::RequestState,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        use tower_mcp_oauth::downstream::accounts::AccountError;
        let Some((accounts, api, http)) = &self.linked else {
            return Err(ErrorData::internal_error("no third party configured", None));
        };
        let caller = parts
            .extensions
            .get::<AuthInfo>()
            .ok_or_else(|| ErrorData::invalid_request("the request names no user", None))?;
        let token = match accounts
            .access_token_after(caller, "demo-github", state.as_deref())
            .await
        {
            Ok(token) => token,
            Err(AccountError::LinkRequired(link)) => return link.into_tool_response(&context),
            Err(other) => return Err(other.into()),
        };
        let mut bearer = http::HeaderValue::try_from(format!("Bearer {}", token.expose()))
            .map_err(|_| ErrorData::internal_error("the third party's token is malformed", None))?;
        bearer.set_sensitive(true);
        let request = http::Request::get(api.as_str())
            .header(http::header::AUTHORIZATION, bearer)
            .body(Default::default())
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let answer = http
            .send(request)
            .await
            .map_err(|_| ErrorData::internal_error("the third party is unavailable", None))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            String::from_utf8_lossy(answer.body()).into_owned(),
        )])
        .into())
    }
}

impl Tools {
    /// Every tool this server lists, with its declared `_meta` (scopes included).
    pub fn listed(&self) -> Vec<rmcp::model::Tool> {
        self.tool_router.list_all()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("tower-mcp-oauth-example", env!("CARGO_PKG_VERSION")),
        )
    }
}
