//! [`ProtectedResource`]: one description of a protected resource, from which both its
//! [`RequireBearerLayer`] and its RFC 9728 metadata endpoint are made, so the two never disagree.

use crate::error::{Error, ErrorKind, Result};
use crate::metadata::ProtectedResourceMetadata;
use crate::server::bearer::RequireBearerLayer;
use crate::server::dpop::DpopPolicy;
use crate::server::filter_lists::FilterMcpListsLayer;
use crate::server::mcp::McpScopes;
use crate::server::mcp_scopes::RequireMcpScopesLayer;
use crate::server::resource_metadata::ResourceMetadataService;
use crate::server::verify::TokenVerifier;

/// A protected resource: its URL, the verifier of its tokens, the authorization servers it
/// trusts, the scopes it requires and how it takes DPoP. [`Self::layer`] and
/// [`Self::metadata_service`] (or, with axum, [`Self::router`]) are made from it: the layer's
/// challenges point at the metadata, and the metadata advertises the layer's scopes and DPoP
/// algorithms.
///
/// `scopes_supported` lists the scopes every request needs, then those its tools, prompts and
/// resources declare ([`Self::mcp_scopes`]), then any the operator adds
/// ([`Self::scopes_supported`]), unless [`Self::exact_scopes_supported`] sets the list by hand.
/// A 401's challenge names only the scopes every request needs: clients ask for the least, and
/// step up when a tool needs more.
///
/// ```
/// use tower_mcp_oauth::server::{ProtectedResource, StaticVerifier};
///
/// let resource = ProtectedResource::new("https://mcp.example.com/mcp", StaticVerifier::new())
///     .unwrap()
///     .authorization_server("https://auth.example.com")
///     .required_scopes(["mcp:tools"]);
/// let metadata = resource.metadata();
/// assert_eq!(metadata.scopes_supported, Some(vec!["mcp:tools".to_owned()]));
/// // DPoP is taken by default, and said so.
/// assert!(metadata.dpop_signing_alg_values_supported.is_some());
/// assert_eq!(
///     resource.metadata_service().url(),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// // For plain tower: the layer over the service, and the metadata service at its paths.
/// let layer = resource.layer();
/// # let _ = layer;
/// ```
pub struct ProtectedResource<V> {
    metadata: ProtectedResourceMetadata,
    layer: RequireBearerLayer<V>,
    required_scopes: Vec<String>,
    extra_scopes: Vec<String>,
    exact_scopes: Option<Vec<String>>,
    mcp_scopes: Option<McpScopes>,
}

impl<V> std::fmt::Debug for ProtectedResource<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedResource")
            .field("metadata", &self.metadata)
            .field("layer", &self.layer)
            .field("mcp_scopes", &self.mcp_scopes)
            .finish_non_exhaustive()
    }
}

impl<V> Clone for ProtectedResource<V> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            layer: self.layer.clone(),
            required_scopes: self.required_scopes.clone(),
            extra_scopes: self.extra_scopes.clone(),
            exact_scopes: self.exact_scopes.clone(),
            mcp_scopes: self.mcp_scopes.clone(),
        }
    }
}

impl<V: TokenVerifier> ProtectedResource<V> {
    /// The resource at `url` (its canonical URL: tokens must name it in `aud`, DPoP proofs
    /// its origin), its tokens checked by `verifier`; DPoP accepted beside Bearer (see
    /// [`RequireBearerLayer::new`]).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `url` is not an absolute http(s) URL without a fragment.
    pub fn new(url: impl Into<String>, verifier: V) -> Result<Self> {
        let url = url.into();
        let parsed = url::Url::parse(&url).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                "the protected resource's URL is not valid",
            )
            .with_source(e)
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.fragment().is_some() {
            return Err(Error::new(
                ErrorKind::Config,
                "the protected resource's URL must be http(s), without a fragment",
            ));
        }
        Ok(Self {
            metadata: ProtectedResourceMetadata {
                resource: url.clone(),
                bearer_methods_supported: Some(vec!["header".into()]),
                ..Default::default()
            },
            layer: RequireBearerLayer::new(verifier).resource(url),
            required_scopes: Vec::new(),
            extra_scopes: Vec::new(),
            exact_scopes: None,
            mcp_scopes: None,
        })
    }

    /// An authorization server (its issuer URL) clients get tokens from; repeatable.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.metadata.authorization_servers.push(issuer.into());
        self
    }

    /// Scopes every request needs: the layer requires them, its challenges name them, and the
    /// metadata lists them.
    pub fn required_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.required_scopes.extend(scopes.iter().cloned());
        self.layer = self.layer.required_scopes(scopes);
        self
    }

    /// Scopes per MCP method, tool, prompt and resource: [`Self::router`] enforces them
    /// ([`RequireMcpScopesLayer`]) and answers lists per caller ([`FilterMcpListsLayer`]), and
    /// the metadata lists every scope they declare. With plain tower ([`Self::layer`]), add
    /// [`Self::mcp_layers`] inside it, or the metadata advertises scopes nothing enforces.
    pub fn mcp_scopes(mut self, scopes: McpScopes) -> Self {
        self.mcp_scopes = Some(scopes);
        self
    }

    /// Scopes the metadata lists beside the required and declared ones (those another service
    /// behind the same authorization server honours, say).
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The metadata's `scopes_supported`, exactly: nothing derived is added (an empty list
    /// leaves the field out).
    pub fn exact_scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exact_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// What `scopes_supported` lists: see the type's documentation.
    fn supported_scopes(&self) -> Vec<String> {
        if let Some(exact) = &self.exact_scopes {
            return exact.clone();
        }
        let declared = self
            .mcp_scopes
            .as_ref()
            .map(McpScopes::declared_scopes)
            .unwrap_or_default();
        let mut listed: Vec<String> = Vec::new();
        for scope in self
            .required_scopes
            .iter()
            .chain(&declared)
            .chain(&self.extra_scopes)
        {
            if !listed.contains(scope) {
                listed.push(scope.clone());
            }
        }
        listed
    }

    /// A name for people (`resource_name`).
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.metadata.resource_name = Some(name.into());
        self
    }

    /// How DPoP-bound tokens are taken (default [`DpopPolicy::accepted`]).
    pub fn dpop(mut self, policy: DpopPolicy) -> Self {
        self.layer = self.layer.dpop(policy);
        self
    }

    /// Bearer tokens only (see [`RequireBearerLayer::without_dpop`]).
    pub fn without_dpop(mut self) -> Self {
        self.layer = self.layer.without_dpop();
        self
    }

    /// Any other setting of the layer (its cache, realm).
    pub fn configure_layer(
        mut self,
        configure: impl FnOnce(RequireBearerLayer<V>) -> RequireBearerLayer<V>,
    ) -> Self {
        self.layer = configure(self.layer);
        self
    }

    /// The metadata document, as the layer takes tokens.
    pub fn metadata(&self) -> ProtectedResourceMetadata {
        let mut metadata = self.metadata.clone();
        let scopes = self.supported_scopes();
        metadata.scopes_supported = (!scopes.is_empty()).then_some(scopes);
        self.layer.describe(&mut metadata);
        metadata
    }

    /// The RFC 9728 metadata endpoint: mount it at each of its
    /// [`paths`](ResourceMetadataService::paths).
    pub fn metadata_service(&self) -> ResourceMetadataService {
        ResourceMetadataService::new(self.metadata())
            .expect("the resource URL was checked when it was given")
    }

    /// The layer to put over the resource's service; its challenges name the metadata URL.
    pub fn layer(&self) -> RequireBearerLayer<V> {
        self.layer
            .clone()
            .resource_metadata(self.metadata_service().url())
    }

    /// The layers of [`Self::mcp_scopes`], to put inside [`Self::layer`] in this order:
    /// enforcing, then answering lists. `None` without declared MCP scopes.
    pub fn mcp_layers(&self) -> Option<(RequireMcpScopesLayer, FilterMcpListsLayer)> {
        let scopes = self.mcp_scopes.clone()?;
        Some((
            RequireMcpScopesLayer::new(scopes.clone()),
            FilterMcpListsLayer::new(scopes),
        ))
    }
}

#[cfg(feature = "axum")]
impl<V: TokenVerifier + 'static> ProtectedResource<V> {
    /// An axum router serving `service` behind the layer (and the [`Self::mcp_layers`], when
    /// MCP scopes are declared) at the resource's path (as the
    /// fallback, for a resource at the origin) and the metadata at its well-known paths: merge
    /// it into the application's router. The metadata's root form
    /// (`/.well-known/oauth-protected-resource`) is one per origin, so a second resource on
    /// the same origin is mounted with [`Self::layer`] and the first of its
    /// [`metadata_service`](Self::metadata_service)'s paths instead (axum panics on a route
    /// registered twice).
    pub fn router<S, ResBody>(&self, service: S) -> axum::Router
    where
        S: tower::Service<
                http::Request<axum::body::Body>,
                Response = http::Response<ResBody>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        ResBody: http_body::Body<Data = bytes::Bytes> + Default + Send + 'static,
        ResBody::Error: Into<crate::error::BoxError>,
    {
        use tower::Layer;
        match self.mcp_layers() {
            Some((enforce, lists)) => {
                let stack = tower::ServiceBuilder::new()
                    .layer(self.layer())
                    .layer(enforce)
                    .layer(lists)
                    .service(service);
                self.route(stack)
            }
            None => self.route(self.layer().layer(service)),
        }
    }

    /// `protected` at the resource's path, and the metadata at its well-known paths.
    fn route<P, ResBody>(&self, protected: P) -> axum::Router
    where
        P: tower::Service<
                http::Request<axum::body::Body>,
                Response = http::Response<ResBody>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        P::Future: Send + 'static,
        ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        ResBody::Error: Into<crate::error::BoxError>,
    {
        let metadata = self.metadata_service();
        let path = url::Url::parse(&self.metadata.resource)
            .map(|url| url.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let mut router = if path.is_empty() {
            axum::Router::new().fallback_service(protected)
        } else {
            axum::Router::new().nest_service(&path, protected)
        };
        for path in metadata.paths() {
            router = router.route_service(path, metadata.clone());
        }
        router
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::StaticVerifier;

    #[test]
    fn the_metadata_says_what_the_layer_does() {
        let resource = ProtectedResource::new("https://mcp.example.com/mcp", StaticVerifier::new())
            .unwrap()
            .authorization_server("https://auth.example.com")
            .required_scopes(["mcp:tools"])
            .scopes_supported(["mcp:tools", "files:write"])
            .dpop(DpopPolicy::required());
        let metadata = resource.metadata();
        assert_eq!(metadata.resource, "https://mcp.example.com/mcp");
        assert_eq!(metadata.authorization_servers, ["https://auth.example.com"]);
        assert_eq!(
            metadata.scopes_supported.as_deref(),
            Some(&["mcp:tools".to_owned(), "files:write".to_owned()][..])
        );
        assert!(metadata.dpop_bound_access_tokens_required);
        let bearer_only = resource.without_dpop().metadata();
        assert_eq!(bearer_only.dpop_signing_alg_values_supported, None);
        assert!(!bearer_only.dpop_bound_access_tokens_required);
    }

    #[test]
    fn scopes_supported_come_from_the_declaration_unless_set_by_hand() {
        let declared = McpScopes::new()
            .tool("delete", ["files:write"])
            .prompt("secret", ["mcp:tools", "admin"]);
        let resource = ProtectedResource::new("https://mcp.example.com/mcp", StaticVerifier::new())
            .unwrap()
            .required_scopes(["mcp:tools"])
            .mcp_scopes(declared)
            .scopes_supported(["offline_access", "files:write"]);
        assert_eq!(
            resource.metadata().scopes_supported.unwrap(),
            ["mcp:tools", "admin", "files:write", "offline_access"]
        );
        assert!(resource.mcp_layers().is_some());
        let by_hand = resource.exact_scopes_supported(["mcp:tools"]);
        assert_eq!(by_hand.metadata().scopes_supported.unwrap(), ["mcp:tools"]);
        let none = by_hand.exact_scopes_supported(Vec::<String>::new());
        assert_eq!(none.metadata().scopes_supported, None);
    }

    #[test]
    fn a_resource_must_be_an_http_url() {
        for bad in [
            "not a url",
            "ftp://x.example/mcp",
            "https://x.example/mcp#frag",
        ] {
            let error = ProtectedResource::new(bad, StaticVerifier::new()).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
        }
    }
}
