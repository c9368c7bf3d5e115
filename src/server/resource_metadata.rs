//! [`ResourceMetadataService`]: the RFC 9728 protected resource metadata endpoint.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower::Service;
use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::http::cors;
use crate::metadata::{at_root, path_inserted, ProtectedResourceMetadata};

const SUFFIX: &str = "oauth-protected-resource";

/// Serving the RFC 9728 protected resource metadata, with CORS so browser-based MCP clients can
/// read it.
///
/// ```
/// use tower_mcp_oauth::metadata::ProtectedResourceMetadata;
/// use tower_mcp_oauth::server::ResourceMetadataService;
///
/// let service = ResourceMetadataService::new(ProtectedResourceMetadata {
///     resource: "https://mcp.example.com/mcp".into(),
///     authorization_servers: vec!["https://auth.example.com".into()],
///     scopes_supported: Some(vec!["mcp".into()]),
///     bearer_methods_supported: Some(vec!["header".into()]),
///     resource_name: None,
///     jwks_uri: None,
///     ..Default::default()
/// })
/// .unwrap();
/// assert_eq!(
///     service.paths(),
///     vec!["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]
/// );
/// assert_eq!(
///     service.url(),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// ```
///
/// A tower service answering GET (and CORS preflight) at the resource's well-known metadata
/// paths: `/.well-known/oauth-protected-resource{path}` and the root form. Anything else is 404.
#[derive(Debug, Clone)]
pub struct ResourceMetadataService {
    document: Bytes,
    paths: Arc<Vec<String>>,
    url: String,
}

impl ResourceMetadataService {
    /// Serves `metadata`; its `resource` decides the paths.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `resource` is not an absolute URL.
    pub fn new(metadata: ProtectedResourceMetadata) -> Result<Self> {
        let resource = Url::parse(&metadata.resource).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                "the protected resource's URL is not valid",
            )
            .with_source(e)
        })?;
        let mut urls: Vec<Url> = path_inserted(&resource, SUFFIX).into_iter().collect();
        urls.push(at_root(&resource, SUFFIX));
        let document = serde_json::to_vec(&metadata).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                "cannot serialize the protected resource metadata",
            )
            .with_source(e)
        })?;
        Ok(Self {
            document: Bytes::from(document),
            paths: Arc::new(urls.iter().map(|u| u.path().to_owned()).collect()),
            url: urls[0].to_string(),
        })
    }

    /// The paths this service answers, to mount it (the path-inserted form first).
    pub fn paths(&self) -> Vec<&str> {
        self.paths.iter().map(String::as_str).collect()
    }

    /// The metadata URL to advertise in `WWW-Authenticate` (`resource_metadata`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl<B> Service<Request<B>> for ResourceMetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<std::result::Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let known = self.paths.iter().any(|p| p == request.uri().path());
        let mut response = Response::new(Full::default());
        match (known, request.method()) {
            (false, _) => *response.status_mut() = StatusCode::NOT_FOUND,
            (true, &Method::GET) | (true, &Method::HEAD) => {
                if request.method() == Method::GET {
                    *response.body_mut() = Full::new(self.document.clone());
                }
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
                cors::DOCUMENTS.apply(response.headers_mut());
            }
            (true, &Method::OPTIONS) => {
                *response.status_mut() = StatusCode::NO_CONTENT;
                cors::DOCUMENTS.preflight(response.headers_mut());
            }
            (true, _) => {
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                response.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
            }
        }
        ready(Ok(response))
    }
}
