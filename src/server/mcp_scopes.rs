//! [`RequireMcpScopesLayer`]: scopes per MCP method and tool, decided from the JSON-RPC body.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Method, Request, Response};
use http_body::Body;
use tower::{Layer, Service};

use crate::error::BoxError;
use crate::http::{read_limited, ReadError};
use crate::mcp_headers;
use crate::server::challenges::{Challenges, Rejection};
use crate::server::mcp::{calls_in, McpCall, McpScopes};
use crate::server::mcp_lists::{lists_anything, ListsInBody};
use crate::server::verify::AuthInfo;

/// [`RequireMcpScopesLayer`]: scopes per MCP method and tool, decided from the JSON-RPC body.
///
/// It sits inside [`RequireBearerLayer`](crate::server::RequireBearerLayer), which has already
/// checked the token and put its [`AuthInfo`] in the request extensions. For a POST it reads the
/// body (within [`McpScopes::max_body_bytes`]), finds the calls (and the one the 2026-07-28
/// routing headers name, when it differs), and answers 403 `insufficient_scope` naming every
/// scope the request needs; the body is handed on intact. Without `AuthInfo` (no bearer layer in front) every
/// request is refused: the layer never fails open.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_mcp_oauth::server::{McpScopes, RequireBearerLayer, RequireMcpScopesLayer, StaticVerifier};
///
/// let service = ServiceBuilder::new()
///     .layer(RequireBearerLayer::new(StaticVerifier::new()).required_scopes(["mcp"]))
///     .layer(RequireMcpScopesLayer::new(McpScopes::new().tool("delete_file", ["files:write"])))
///     .service_fn(|_request: http::Request<http_body_util::Full<bytes::Bytes>>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
///     });
/// # let _ = service;
/// ```
///
/// Layer that applies [`RequireMcpScopes`].
#[derive(Debug, Clone)]
pub struct RequireMcpScopesLayer {
    scopes: Arc<McpScopes>,
}

impl RequireMcpScopesLayer {
    /// Requires `scopes` per method and tool.
    pub fn new(scopes: McpScopes) -> Self {
        Self {
            scopes: Arc::new(scopes),
        }
    }
}

impl<S> Layer<S> for RequireMcpScopesLayer {
    type Service = RequireMcpScopes<S>;

    fn layer(&self, inner: S) -> RequireMcpScopes<S> {
        RequireMcpScopes {
            inner,
            scopes: self.scopes.clone(),
        }
    }
}

/// Middleware that checks scopes per MCP method and tool: see [`RequireMcpScopesLayer`].
#[derive(Debug, Clone)]
pub struct RequireMcpScopes<S> {
    inner: S,
    scopes: Arc<McpScopes>,
}

impl<S> RequireMcpScopes<S> {
    /// Checks `scopes` before `inner`.
    pub fn new(inner: S, scopes: McpScopes) -> Self {
        RequireMcpScopesLayer::new(scopes).layer(inner)
    }

    /// A layer for `scopes`: the same as [`RequireMcpScopesLayer::new`].
    pub fn layer(scopes: McpScopes) -> RequireMcpScopesLayer {
        RequireMcpScopesLayer::new(scopes)
    }

    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireMcpScopes<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let scopes = self.scopes.clone();
        Box::pin(async move {
            let challenges = request
                .extensions()
                .get::<Arc<Challenges>>()
                .cloned()
                .unwrap_or_default();
            match check(&scopes, &challenges, request).await {
                Ok(request) => inner.call(request).await,
                Err(rejection) => Ok(challenges.reject(rejection)),
            }
        })
    }
}

/// The request back, with its body, when the token has every scope its calls need.
async fn check<B>(
    policy: &McpScopes,
    challenges: &Challenges,
    request: Request<B>,
) -> Result<Request<B>, Rejection>
where
    B: Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    let Some(info) = request.extensions().get::<AuthInfo>().cloned() else {
        return Err(Rejection::MissingCredentials);
    };
    if request.method() != Method::POST {
        return Ok(request);
    }
    let (parts, bytes, mut calls) = read_calls(request, policy.max_body_bytes).await?;
    let lists = lists_anything(&calls);
    // A header that disagrees with the body is the service's to refuse (2026-07-28: -32020,
    // with a body this layer cannot write); the token must hold what either one names.
    if let Some(claimed) = header_call(&parts.headers, &calls)? {
        calls.push(claimed);
    }
    let mut needed = BTreeSet::new();
    policy.required_for(&calls, &mut needed);
    if needed.iter().any(|scope| !info.has_scope(scope)) {
        // The challenge names everything the request needs, the route's scopes included.
        needed.extend(challenges.required_scopes.iter().cloned());
        return Err(Rejection::InsufficientScope(needed.into_iter().collect()));
    }
    let mut request = Request::from_parts(parts, B::from(bytes));
    // For FilterMcpLists further in: which calls list, without reading the body again.
    request.extensions_mut().insert(ListsInBody(lists));
    Ok(request)
}

/// Whether a message's body is compressed, so it cannot be read here.
pub(crate) fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// A POST's parts, its body (read within `max_bytes`) and the JSON-RPC calls in it. What
/// cannot be read is refused, never passed on to be judged by a more lenient parser.
pub(crate) async fn read_calls<B>(
    request: Request<B>,
    max_bytes: usize,
) -> Result<(http::request::Parts, Bytes, Vec<McpCall>), Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // A compressed body would be judged on bytes the service never sees decoded.
    if is_encoded(request.headers()) {
        return Err(Rejection::UnsupportedEncoding);
    }
    let (parts, body) = request.into_parts();
    let bytes = read_limited(body, max_bytes).await.map_err(|e| match e {
        ReadError::TooLarge => Rejection::BodyTooLarge,
        ReadError::Body(_) => Rejection::InvalidRequest("the request body could not be read"),
    })?;
    let calls = calls_in(&bytes).map_err(Rejection::InvalidRequest)?;
    Ok((parts, bytes, calls))
}

/// One header's value: absent, or exactly one visible-ASCII value.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidRequest("a routing header is repeated"));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| Rejection::InvalidRequest("a routing header is not visible ASCII"))
}

/// `Mcp-Name` carries names that are not plain ASCII as `=?base64?…?=`.
fn decode_name(value: &str) -> Result<String, Rejection> {
    mcp_headers::decode_value(value)
        .map_err(|_| Rejection::InvalidRequest("Mcp-Name is not valid base64 UTF-8"))
}

/// The call the 2026-07-28 routing headers name, when it is not what the body says.
fn header_call(headers: &HeaderMap, calls: &[McpCall]) -> Result<Option<McpCall>, Rejection> {
    let Some(method) = single_header(headers, mcp_headers::MCP_METHOD)? else {
        return Ok(None);
    };
    let name = single_header(headers, mcp_headers::MCP_NAME)?
        .map(decode_name)
        .transpose()?;
    let agrees = calls
        .iter()
        .all(|c| c.method == method && (name.is_none() || c.name.is_none() || c.name == name));
    if agrees {
        return Ok(None);
    }
    Ok(Some(McpCall {
        id: None,
        method: method.to_owned(),
        name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::AuthData;
    use http::StatusCode;
    use http_body_util::Full;
    use tower::ServiceExt;

    fn app() -> RequireMcpScopes<
        impl Service<
                Request<Full<Bytes>>,
                Response = Response<Full<Bytes>>,
                Error = std::convert::Infallible,
                Future = impl Send,
            > + Clone
            + Send
            + 'static,
    > {
        let inner = tower::service_fn(|request: Request<Full<Bytes>>| async move {
            let length = request.body().size_hint().exact().unwrap_or(0);
            Ok(Response::new(Full::new(Bytes::from(length.to_string()))))
        });
        RequireMcpScopes::new(inner, McpScopes::new().tool("delete_file", ["files:write"]))
    }

    fn call(tool: &str, scopes: Option<&[&str]>) -> Request<Full<Bytes>> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        );
        let mut request = Request::post("/mcp")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        if let Some(scopes) = scopes {
            request.extensions_mut().insert(AuthInfo::from(AuthData {
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            }));
        }
        request
    }

    #[tokio::test]
    async fn a_tool_call_needs_the_tools_scopes_and_keeps_its_body() {
        let allowed = app()
            .oneshot(call("delete_file", Some(&["files:write"])))
            .await
            .unwrap();
        assert_eq!(allowed.status(), StatusCode::OK);
        let denied = app()
            .oneshot(call("delete_file", Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            denied.extensions().get::<Rejection>(),
            Some(&Rejection::InsufficientScope(vec!["files:write".into()]))
        );
        let other = app().oneshot(call("read_file", Some(&[]))).await.unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_header_naming_another_tool_needs_that_tools_scopes_too() {
        let mut request = call("read_file", Some(&["mcp"]));
        request
            .headers_mut()
            .insert(mcp_headers::MCP_METHOD, "tools/call".parse().unwrap());
        request
            .headers_mut()
            .insert(mcp_headers::MCP_NAME, "delete_file".parse().unwrap());
        let denied = app().oneshot(request).await.unwrap();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        // With the scopes of both, the service gets to refuse the mismatch itself.
        let mut request = call("read_file", Some(&["files:write"]));
        request
            .headers_mut()
            .insert(mcp_headers::MCP_METHOD, "TOOLS/CALL".parse().unwrap());
        let passed = app().oneshot(request).await.unwrap();
        assert_eq!(passed.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn without_a_bearer_layer_in_front_nothing_passes() {
        let response = app().oneshot(call("read_file", None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
