//! [`ProtectedResource`]: one description of a protected resource, from which both its
//! [`RequireBearerLayer`] and its RFC 9728 metadata endpoint are made, so the two never disagree.

use crate::error::{Error, ErrorKind, Result};
use crate::metadata::ProtectedResourceMetadata;
use crate::server::bearer::RequireBearerLayer;
use crate::server::dpop::DpopPolicy;
use crate::server::resource_metadata::ResourceMetadataService;
use crate::server::verify::TokenVerifier;

/// A protected resource: its URL, the verifier of its tokens, the authorization servers it
/// trusts, the scopes it requires and how it takes DPoP. [`Self::layer`] and
/// [`Self::metadata_service`] (or, with axum, [`Self::router`]) are made from it: the layer's
/// challenges point at the metadata, and the metadata advertises the layer's scopes and DPoP
/// algorithms.
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
}

impl<V> std::fmt::Debug for ProtectedResource<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedResource")
            .field("metadata", &self.metadata)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<V> Clone for ProtectedResource<V> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            layer: self.layer.clone(),
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
        })
    }

    /// An authorization server (its issuer URL) clients get tokens from; repeatable.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.metadata.authorization_servers.push(issuer.into());
        self
    }

    /// Scopes every request needs: the layer requires them and the metadata lists them.
    pub fn required_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.add_supported(&scopes);
        self.layer = self.layer.required_scopes(scopes);
        self
    }

    /// Scopes the metadata lists beside the required ones (scopes some tools need, for
    /// [`RequireMcpScopesLayer`](crate::server::RequireMcpScopesLayer)).
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.add_supported(&scopes);
        self
    }

    fn add_supported(&mut self, scopes: &[String]) {
        if scopes.is_empty() {
            return;
        }
        let listed = self.metadata.scopes_supported.get_or_insert_with(Vec::new);
        for scope in scopes {
            if !listed.contains(scope) {
                listed.push(scope.clone());
            }
        }
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
}

#[cfg(feature = "axum")]
impl<V: TokenVerifier + 'static> ProtectedResource<V> {
    /// An axum router serving `service` behind the layer at the resource's path (as the
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
        let protected = self.layer().layer(service);
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
