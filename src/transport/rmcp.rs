//! [`TowerHttpClient`]: rmcp's Streamable HTTP client over any tower stack.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http::header::{
    HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, StreamableHttpClient,
    StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::{Error as SseError, Sse};
use tower::{Service, ServiceExt};

use crate::challenge::BearerChallenge;
use crate::error::{BoxError, Error, ErrorKind};
use crate::http::{has_media_type, read_limited, ReadError};
use crate::transport::common::{self, LAST_EVENT_ID, SESSION_ID};
use crate::transport::DEFAULT_MAX_MESSAGE_BYTES;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// Headers the transport sets itself; a custom header must not duplicate them.
const RESERVED: [&str; 5] = [
    "authorization",
    SESSION_ID,
    LAST_EVENT_ID,
    "accept",
    "content-type",
];

/// rmcp integration (feature `rmcp`): [`TowerHttpClient`] implements rmcp's
/// `StreamableHttpClient` on any tower HTTP service, so rmcp's own Streamable HTTP transport runs
/// on a stack of your choosing, `OAuthLayer` included.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
/// use rmcp::transport::StreamableHttpClientTransport;
/// use rmcp::ServiceExt;
/// use tower::ServiceBuilder;
/// use tower_mcp_oauth::client::{OAuthLayer, OAuthState};
/// use tower_mcp_oauth::transport::TowerHttpClient;
///
/// let state = OAuthState::new("https://mcp.example.com/mcp", None).await?;
/// let hyper_client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<Full<Bytes>>();
/// let stack = ServiceBuilder::new().layer(OAuthLayer::new(state)).service(hyper_client);
/// let transport = StreamableHttpClientTransport::with_client(
///     TowerHttpClient::new(stack),
///     StreamableHttpClientTransportConfig::with_uri("https://mcp.example.com/mcp"),
/// );
/// let client = rmcp::model::ClientConfig::default().serve(transport).await?;
/// let tools = client.list_tools(Default::default()).await?;
/// # let _ = tools;
/// # Ok(()) }
/// ```
///
/// rmcp's `StreamableHttpClient` over a tower service.
#[derive(Debug, Clone)]
pub struct TowerHttpClient<S> {
    service: common::SharedService<S>,
}

impl<S: Clone> TowerHttpClient<S> {
    /// Sends rmcp's requests through `service`.
    pub fn new(service: S) -> Self {
        Self {
            service: common::SharedService::new(service),
        }
    }
}

type Failure = StreamableHttpError<Error>;

fn transport_error(e: impl Into<BoxError>) -> Failure {
    StreamableHttpError::Client(Error::from_service(e))
}

fn header_text(
    response: &Response<impl Sized>,
    name: impl http::header::AsHeaderName,
) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Turns a response body into one rmcp's SSE parser takes (its errors must be `std::error::Error`).
fn typed_body<B>(body: B) -> impl Body<Data = Bytes, Error = Error> + Send + 'static
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(|e| {
        Error::new(ErrorKind::Http, "the response body failed").with_boxed_source(e.into())
    })
}

/// Our bounded decoder under rmcp's event type: an event over `max_event` bytes ends the stream
/// with an error instead of growing a buffer without limit.
fn bounded_events<B>(body: B, max_event: usize) -> BoxStream<'static, Result<Sse, SseError>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    crate::transport::sse::SseStream::new(Box::pin(typed_body(body)), max_event)
        .map(|event| match event {
            Ok(event) => Ok(Sse {
                event: Some(event.event),
                data: Some(event.data),
                id: event.id.map(|id| id.to_string()),
                retry: event.retry.map(|r| r.as_millis() as u64),
            }),
            Err(error) => Err(SseError::Body(Box::new(error))),
        })
        .boxed()
}

async fn collect_capped(
    body: impl Body<Data = Bytes, Error = Error>,
    limit: usize,
) -> Result<Bytes, Failure> {
    read_limited(body, limit).await.map_err(|e| match e {
        ReadError::TooLarge => StreamableHttpError::ResponseBodyTooLarge { max_size: limit },
        ReadError::Body(e) => StreamableHttpError::Client(Error::from_boxed(e)),
    })
}

/// A 401 or 403 that reached the transport: the layer below could not handle it.
fn auth_failure<B>(response: &Response<B>) -> Option<Failure> {
    let header = header_text(response, WWW_AUTHENTICATE).unwrap_or_default();
    match response.status() {
        StatusCode::UNAUTHORIZED => Some(StreamableHttpError::AuthRequired(
            AuthRequiredError::new(header),
        )),
        StatusCode::FORBIDDEN => {
            let challenge = BearerChallenge::from_headers(response.headers());
            let insufficient = challenge
                .as_ref()
                .is_some_and(|c| c.error.as_deref() == Some("insufficient_scope"));
            insufficient.then(|| {
                StreamableHttpError::InsufficientScope(InsufficientScopeError::new(
                    header,
                    challenge.and_then(|c| c.scope),
                ))
            })
        }
        _ => None,
    }
}

fn status_failure<B>(response: &Response<B>) -> Failure {
    StreamableHttpError::HttpStatus(HttpStatusError::new(
        response.status().as_u16(),
        header_text(response, RETRY_AFTER),
    ))
}

impl<S, B> TowerHttpClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn request(
        method: Method,
        uri: &str,
        session_id: Option<&str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        body: Full<Bytes>,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(id) = session_id {
            request = request.header(SESSION_ID, id);
        }
        if let Some(token) = auth_header {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(transport_error)?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let mut request = request.body(body).map_err(transport_error)?;
        for (name, value) in custom_headers {
            if RESERVED.contains(&name.as_str()) {
                return Err(StreamableHttpError::ReservedHeaderConflict(
                    name.to_string(),
                ));
            }
            request.headers_mut().insert(name, value);
        }
        Ok(request)
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<B>, Failure> {
        self.service
            .get()
            .oneshot(request)
            .await
            .map_err(transport_error)
    }

    #[allow(clippy::too_many_arguments)]
    async fn post_limited(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_event: usize,
        max_json: usize,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let body = Full::new(Bytes::from(serde_json::to_vec(&message)?));
        let mut request = Self::request(
            Method::POST,
            &uri,
            session_id.as_deref(),
            auth_header,
            custom_headers,
            body,
        )?;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        let response = self.send(request).await?;
        let status = response.status();
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if let Some(failure) = auth_failure(&response) {
            return Err(failure);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        let new_session = header_text(&response, SESSION_ID);
        if !status.is_success() {
            // A JSON-RPC error in the body says more than the status does.
            if has_media_type(&response, "application/json") {
                let failure = status_failure(&response);
                let bytes = collect_capped(typed_body(response.into_body()), max_json).await?;
                return match serde_json::from_slice::<ServerJsonRpcMessage>(&bytes) {
                    Ok(message @ ServerJsonRpcMessage::Error(_)) => {
                        Ok(StreamableHttpPostResponse::Json(message, new_session))
                    }
                    _ => Err(failure),
                };
            }
            return Err(status_failure(&response));
        }
        if has_media_type(&response, "text/event-stream") {
            let events: BoxStream<'static, Result<Sse, SseError>> =
                bounded_events(response.into_body(), max_event);
            return Ok(StreamableHttpPostResponse::Sse(events, new_session));
        }
        if has_media_type(&response, "application/json") {
            let bytes = collect_capped(typed_body(response.into_body()), max_json).await?;
            let message: ServerJsonRpcMessage = serde_json::from_slice(&bytes)?;
            return Ok(StreamableHttpPostResponse::Json(message, new_session));
        }
        // An empty 200 answers a notification as 202 would.
        let content_type = header_text(&response, CONTENT_TYPE);
        let bytes = collect_capped(typed_body(response.into_body()), max_json).await?;
        if bytes.is_empty() {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(content_type))
    }

    async fn get_limited(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_event: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        let mut request = Self::request(
            Method::GET,
            &uri,
            session_id.as_deref(),
            auth_header,
            custom_headers,
            Full::default(),
        )?;
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = last_event_id {
            request.headers_mut().insert(
                LAST_EVENT_ID,
                HeaderValue::from_str(&id).map_err(transport_error)?,
            );
        }
        let response = self.send(request).await?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if let Some(failure) = auth_failure(&response) {
            return Err(failure);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !status.is_success() {
            return Err(status_failure(&response));
        }
        if !has_media_type(&response, "text/event-stream") {
            return Err(StreamableHttpError::UnexpectedContentType(header_text(
                &response,
                CONTENT_TYPE,
            )));
        }
        Ok(bounded_events(response.into_body(), max_event))
    }
}

impl<S, B> StreamableHttpClient for TowerHttpClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Error = Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        self.post_limited(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            DEFAULT_MAX_MESSAGE_BYTES,
            DEFAULT_MAX_MESSAGE_BYTES,
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        self.post_limited(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
            DEFAULT_MAX_MESSAGE_BYTES,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        self.post_limited(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits.max_sse_event_size,
            limits.max_json_response_size,
        )
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Failure> {
        let request = Self::request(
            Method::DELETE,
            &uri,
            Some(&session_id),
            auth_header,
            custom_headers,
            Full::default(),
        )?;
        let response = self.send(request).await?;
        match response.status() {
            status if status.is_success() => Ok(()),
            // The server keeps no sessions to end, or this one is already gone.
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND => Ok(()),
            _ => match auth_failure(&response) {
                Some(failure) => Err(failure),
                None => Err(status_failure(&response)),
            },
        }
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        self.get_limited(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            DEFAULT_MAX_MESSAGE_BYTES,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        self.get_limited(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        )
        .await
    }
}

/// Makes one of our transports an rmcp client transport, so
/// `ClientConfig::default().serve(transport)` works as with rmcp's own.
macro_rules! rmcp_client_transport {
    ($transport:ident) => {
        impl<S, B> rmcp::transport::Transport<rmcp::RoleClient> for crate::transport::$transport<S>
        where
            S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
            S::Error: Into<BoxError>,
            S::Future: Send + 'static,
            B: Body<Data = Bytes> + Send + Unpin + 'static,
            B::Error: Into<BoxError>,
        {
            type Error = Error;

            fn send(
                &mut self,
                item: ClientJsonRpcMessage,
            ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'static {
                let sending = serde_json::to_value(&item)
                    .map(|message| crate::transport::$transport::send(self, message))
                    .map_err(|e| {
                        Error::new(ErrorKind::Config, "cannot serialize a JSON-RPC message").with_source(e)
                    });
                async move { sending?.await }
            }

            async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
                loop {
                    match crate::transport::$transport::receive(self).await? {
                        Ok(message) => match serde_json::from_value(message) {
                            Ok(message) => return Some(message),
                            Err(error) => tracing::warn!(%error, "ignoring a message that is not MCP"),
                        },
                        // Our transports only report errors that end them (session expired,
                        // a stream that cannot be resumed): the connection is over.
                        Err(error) => {
                            tracing::warn!(%error, "MCP transport ended");
                            return None;
                        }
                    }
                }
            }

            fn close(&mut self) -> impl std::future::Future<Output = Result<(), Error>> + Send {
                crate::transport::$transport::close(self)
            }
        }
    };
}

rmcp_client_transport!(StreamableHttpTransport);
rmcp_client_transport!(LegacySseTransport);
rmcp_client_transport!(AutoTransport);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_over_the_limit_end_the_stream_with_an_error() {
        let body = Full::new(Bytes::from(format!(
            "data: {}\n\ndata: small\n\n",
            "x".repeat(100)
        )));
        let mut events = bounded_events(body, 64);
        assert!(events.next().await.unwrap().is_err());
        let body = Full::new(Bytes::from_static(b"id: 3\nretry: 25\ndata: fits\n\n"));
        let event = bounded_events(body, 64).next().await.unwrap().unwrap();
        assert_eq!(event.data.as_deref(), Some("fits"));
        assert_eq!(event.id.as_deref(), Some("3"));
        assert_eq!(event.retry, Some(25));
    }
}
