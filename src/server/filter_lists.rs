//! [`FilterMcpListsLayer`]: scope-filtered discovery. Each caller's `tools/list`,
//! `prompts/list` and `resources/list` answers show what its token can use, each item with its
//! scopes as a hint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower::{Layer, Service};

use crate::error::BoxError;
use crate::http::{has_media_type_in, read_limited};
use crate::server::challenges::{Challenges, Rejection};
use crate::server::list_body::{ListAnswers, ListsBody};
use crate::server::mcp::McpScopes;
use crate::server::mcp_lists::{lists_anything, ListsInBody};
use crate::server::mcp_scopes::{is_encoded, read_calls};
use crate::server::verify::AuthInfo;

/// [`FilterMcpListsLayer`]: scope-filtered discovery (as the SEP-1881 draft describes it) from the same [`McpScopes`]
/// that [`RequireMcpScopesLayer`](crate::server::RequireMcpScopesLayer) enforces.
///
/// For a request that lists tools, prompts or resources, the answer (JSON, or the SSE stream
/// of Streamable HTTP, at any protocol revision) is rewritten for the caller whose
/// [`AuthInfo`] the bearer layer put in the request:
/// - with [`McpScopes::filter_lists`] on, items the token cannot use are left out. The cursor,
///   the page and every other field stay as the server made them, so a page may come back
///   shorter, and clients follow `nextCursor` as always;
/// - every item that needs scopes carries them in `_meta` under [`SCOPES_META_KEY`]
///   (`["files:write"]`), so a client can ask for them before calling.
///
/// Answers are known by their shape (a result holding `tools`, `prompts` or `resources`), not
/// by their ids, and every event stream is watched, whatever asked for it: a GET that resumes
/// a stream may replay a list asked on the POST that opened it, and a server may route an
/// answer to another stream.
/// An answer that cannot be read to filter it (compressed, not JSON, over the size limit) is
/// refused with 500, never passed on whole.
///
/// Hiding is not refusing: a call to a hidden tool still gets
/// [`RequireMcpScopes`](crate::server::RequireMcpScopes)'s 403 naming its scopes, so the
/// client can step up. Requests that list nothing pass with their body untouched; under
/// `RequireMcpScopes` (the usual order, shown below) their body is not even read again.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_mcp_oauth::server::{
///     FilterMcpListsLayer, McpScopes, RequireBearerLayer, RequireMcpScopesLayer, StaticVerifier,
/// };
///
/// let scopes = McpScopes::new().tool("delete_file", ["files:write"]).filter_lists(true);
/// let service = ServiceBuilder::new()
///     .layer(RequireBearerLayer::new(StaticVerifier::new()).required_scopes(["mcp"]))
///     .layer(RequireMcpScopesLayer::new(scopes.clone()))
///     .layer(FilterMcpListsLayer::new(scopes))
///     .service_fn(|_request: http::Request<http_body_util::Full<bytes::Bytes>>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
///     });
/// # let _ = service;
/// ```
///
/// With the legacy HTTP+SSE transport, answers travel on the GET stream: put the layer on that
/// route, and lists are filtered for the token that opened the stream. Not covered:
/// `resources/templates/list` (a template is not a resource's URI). An event larger than
/// [`McpScopes::max_body_bytes`] ends its stream with an error.
///
/// [`SCOPES_META_KEY`]: crate::server::SCOPES_META_KEY
#[derive(Debug, Clone)]
pub struct FilterMcpListsLayer {
    scopes: Arc<McpScopes>,
}

impl FilterMcpListsLayer {
    /// Lists answered per `scopes`.
    pub fn new(scopes: McpScopes) -> Self {
        Self {
            scopes: Arc::new(scopes),
        }
    }
}

impl<S> Layer<S> for FilterMcpListsLayer {
    type Service = FilterMcpLists<S>;

    fn layer(&self, inner: S) -> FilterMcpLists<S> {
        FilterMcpLists {
            inner,
            scopes: self.scopes.clone(),
        }
    }
}

/// Middleware that answers lists per the caller's scopes: see [`FilterMcpListsLayer`].
#[derive(Debug, Clone)]
pub struct FilterMcpLists<S> {
    inner: S,
    scopes: Arc<McpScopes>,
}

impl<S> FilterMcpLists<S> {
    /// Answers `inner`'s lists per `scopes`.
    pub fn new(inner: S, scopes: McpScopes) -> Self {
        FilterMcpListsLayer::new(scopes).layer(inner)
    }

    inner_service_accessors!();
}

type Boxed<ResBody, E> =
    Pin<Box<dyn Future<Output = Result<Response<ListsBody<ResBody>>, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of [`FilterMcpLists`]: the inner service's, polled in place, for requests
    /// that list nothing.
    pub struct FilterMcpListsFuture<F, ResBody, E> {
        #[pin]
        state: State<F, ResBody, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, ResBody, E> {
        Passing { #[pin] future: F, answers: Option<ListAnswers>, max_bytes: usize },
        Listing { future: Boxed<ResBody, E> },
    }
}

impl<F, ResBody, E> Future for FilterMcpListsFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ListsBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Passing {
                future,
                answers,
                max_bytes,
            } => {
                let response = std::task::ready!(future.poll(cx))?;
                let answers = answers.take().expect("polled after completion");
                Poll::Ready(Ok(watch_events(response, answers, *max_bytes)))
            }
            StateProj::Listing { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FilterMcpLists<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ListsBody<ResBody>>;
    type Error = S::Error;
    type Future = FilterMcpListsFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // A POST may list unless RequireMcpScopes, in front, read that it does not.
        let may_list = request.method() == Method::POST
            && request
                .extensions()
                .get::<ListsInBody>()
                .is_none_or(|found| found.0);
        if !may_list {
            // Its own answer lists nothing, but an event stream may carry (or replay) the
            // answer to a list asked on another request.
            let answers = ListAnswers {
                policy: self.scopes.clone(),
                caller: request.extensions().get::<AuthInfo>().cloned(),
            };
            return FilterMcpListsFuture {
                state: State::Passing {
                    future: self.inner.call(request),
                    answers: Some(answers),
                    max_bytes: self.scopes.max_body_bytes,
                },
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let future = Box::pin(answer_lists(inner, self.scopes.clone(), request));
        FilterMcpListsFuture {
            state: State::Listing { future },
        }
    }
}

/// An event stream with its list answers rewritten; any other answer as it is.
fn watch_events<B>(
    mut response: Response<B>,
    answers: ListAnswers,
    max_bytes: usize,
) -> Response<ListsBody<B>> {
    if !has_media_type_in(response.headers(), "text/event-stream") {
        return response.map(ListsBody::inner);
    }
    if is_encoded(response.headers()) {
        tracing::warn!("an MCP event stream came compressed, so it cannot be filtered; refused");
        return failed();
    }
    response.headers_mut().remove(http::header::CONTENT_LENGTH);
    response.map(|body| ListsBody::events(body, answers, max_bytes))
}

/// Sends a request that may list, and rewrites the lists in its answer.
async fn answer_lists<S, ReqBody, ResBody>(
    mut inner: S,
    policy: Arc<McpScopes>,
    request: Request<ReqBody>,
) -> Result<Response<ListsBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes> + From<Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let challenges = request
        .extensions()
        .get::<Arc<Challenges>>()
        .cloned()
        .unwrap_or_default();
    let (mut request, lists) = match lists_in(request, &policy).await {
        Ok(found) => found,
        Err(rejection) => {
            return Ok(challenges
                .reject::<()>(rejection)
                .map(|()| ListsBody::empty()))
        }
    };
    let answers = ListAnswers {
        policy: policy.clone(),
        caller: request.extensions().get::<AuthInfo>().cloned(),
    };
    if !lists {
        let response = inner.call(request).await?;
        return Ok(watch_events(response, answers, policy.max_body_bytes));
    }
    // An answer must come back readable to be rewritten.
    request.headers_mut().remove(http::header::ACCEPT_ENCODING);
    let response = inner.call(request).await?;
    Ok(rewrite_answer(response, answers, policy.max_body_bytes).await)
}

/// The request, its body read again if no layer in front read it, and whether it lists.
async fn lists_in<B>(
    request: Request<B>,
    policy: &McpScopes,
) -> Result<(Request<B>, bool), Rejection>
where
    B: Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    if let Some(found) = request.extensions().get::<ListsInBody>() {
        let lists = found.0;
        return Ok((request, lists));
    }
    let (parts, bytes, calls) = read_calls(request, policy.max_body_bytes).await?;
    Ok((
        Request::from_parts(parts, B::from(bytes)),
        lists_anything(&calls),
    ))
}

/// The answer with its lists rewritten: a JSON body whole, an event stream event by event,
/// an error status as it is; anything else cannot be filtered and is refused.
async fn rewrite_answer<ResBody>(
    response: Response<ResBody>,
    answers: ListAnswers,
    max_bytes: usize,
) -> Response<ListsBody<ResBody>>
where
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let encoded = is_encoded(response.headers());
    let headers = response.headers();
    let json = has_media_type_in(headers, "application/json");
    let events = has_media_type_in(headers, "text/event-stream");
    if !response.status().is_success() {
        return response.map(ListsBody::inner);
    }
    if encoded {
        tracing::warn!("an MCP list answer came compressed, so it cannot be filtered; refused");
        return failed();
    }
    if events {
        return watch_events(response, answers, max_bytes);
    }
    if !json {
        // A list is answered in JSON or SSE; anything else with a body cannot be filtered.
        if matches!(
            response.status(),
            StatusCode::ACCEPTED | StatusCode::NO_CONTENT
        ) {
            return response.map(ListsBody::inner);
        }
        tracing::warn!("an MCP list answer is neither JSON nor SSE; refused");
        return failed();
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match read_limited(body, max_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(?error, "an MCP list answer could not be read to filter it");
            return failed();
        }
    };
    let Ok(mut message) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        tracing::warn!("an MCP list answer is not JSON, so it cannot be filtered; refused");
        return failed();
    };
    if !answers.rewrite(&mut message) {
        return Response::from_parts(parts, ListsBody::whole(bytes));
    }
    let rewritten = Bytes::from(message.to_string());
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, ListsBody::whole(rewritten))
}

/// An answer that could not be filtered is never passed on whole.
fn failed<B>() -> Response<ListsBody<B>> {
    let mut response = Response::new(ListsBody::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::AuthData;
    use http_body_util::{BodyExt, Full};
    use serde_json::{json, Value};
    use tower::ServiceExt;

    /// A server answering `tools/list` with `a` (free) and `b` (needs `b`), as `media`.
    fn app(
        media: &'static str,
    ) -> FilterMcpLists<
        impl Service<
                Request<Full<Bytes>>,
                Response = Response<Full<Bytes>>,
                Error = std::convert::Infallible,
                Future = impl Send,
            > + Clone
            + Send
            + 'static,
    > {
        let inner = tower::service_fn(move |request: Request<Full<Bytes>>| async move {
            assert!(request.headers().get("accept-encoding").is_none());
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let call: Value = serde_json::from_slice(&body).unwrap();
            let answer = json!({"jsonrpc": "2.0", "id": call["id"], "result": {"tools": [{"name": "a"}, {"name": "b"}]}});
            let text = if media == "text/event-stream" {
                format!("id: 1\ndata: {answer}\n\n")
            } else {
                answer.to_string()
            };
            Ok(Response::builder()
                .header("content-type", media)
                .body(Full::new(Bytes::from(text)))
                .unwrap())
        });
        FilterMcpLists::new(inner, McpScopes::new().tool("b", ["b"]).filter_lists(true))
    }

    fn list(scopes: &[&str]) -> Request<Full<Bytes>> {
        let mut request = Request::post("/mcp")
            .header("accept-encoding", "gzip")
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#,
            )))
            .unwrap();
        request.extensions_mut().insert(AuthInfo::from(AuthData {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }));
        request
    }

    async fn text(response: Response<ListsBody<Full<Bytes>>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_and_event_stream_answers_are_filtered_per_caller() {
        for media in ["application/json", "text/event-stream"] {
            let without = text(app(media).oneshot(list(&[])).await.unwrap()).await;
            assert!(without.contains(r#""name":"a""#), "{without}");
            assert!(!without.contains(r#""name":"b""#), "{media}: {without}");
            let with = text(app(media).oneshot(list(&["b"])).await.unwrap()).await;
            assert!(with.contains(r#""name":"b""#), "{media}: {with}");
            assert!(with.contains(crate::server::SCOPES_META_KEY), "{with}");
        }
    }

    #[tokio::test]
    async fn a_resumed_stream_replaying_a_list_is_filtered() {
        let mut request = list(&[]);
        *request.method_mut() = Method::GET;
        request.headers_mut().remove("accept-encoding");
        request
            .headers_mut()
            .insert("last-event-id", "0/1".parse().unwrap());
        let answer = text(app("text/event-stream").oneshot(request).await.unwrap()).await;
        assert!(!answer.contains(r#""name":"b""#), "{answer}");
        assert!(answer.contains(r#""name":"a""#), "{answer}");
    }

    #[tokio::test]
    async fn a_body_it_cannot_read_is_refused_not_passed() {
        let mut request = list(&[]);
        *request.body_mut() = Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}"#,
        ));
        let response = app("application/json").oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
