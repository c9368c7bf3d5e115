//! Finding the authorization server for an MCP server: protected resource metadata (RFC 9728),
//! then authorization server metadata (RFC 8414, OpenID Connect discovery) in the MCP spec's
//! probe order, with the 2025-03-26 fallbacks for servers that publish neither.

use http::header::HeaderValue;
use tracing::Instrument;
use url::Url;

use crate::challenge::BearerChallenge;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{parse_json, parse_url, redact_url, HttpClient};
use crate::metadata::{
    at_root, authorization_server_candidates, path_inserted, AuthorizationServerMetadata,
    ProtectedResourceMetadata,
};

/// The MCP protocol version sent on discovery requests unless configured otherwise.
pub const DEFAULT_PROTOCOL_VERSION: &str = "2025-11-25";

/// The header MCP clients send on discovery requests.
pub const MCP_PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

/// What discovery found for one MCP server.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The RFC 8707 resource indicator to send: the protected resource metadata's `resource`,
    /// or `None` for a 2025-03-26 server that published no such metadata.
    pub resource: Option<String>,
    /// The protected resource metadata, when published.
    pub resource_metadata: Option<ProtectedResourceMetadata>,
    /// The authorization server metadata, found or (for 2025-03-26 servers) defaulted.
    pub authorization_server: AuthorizationServerMetadata,
    /// Whether the endpoints are the 2025-03-26 defaults because no metadata exists.
    pub default_endpoints: bool,
}

impl Discovery {
    /// The issuer identifier of the authorization server.
    pub fn issuer(&self) -> &str {
        &self.authorization_server.issuer
    }
}

/// The protected resource metadata URLs to try, in order.
pub(crate) fn resource_metadata_candidates(
    http: &HttpClient,
    server_url: &Url,
    challenge: Option<&BearerChallenge>,
) -> Result<Vec<Url>> {
    let mut candidates = Vec::new();
    if let Some(advertised) = challenge.and_then(|c| c.resource_metadata.as_deref()) {
        let url = parse_url(
            advertised,
            "resource_metadata in the WWW-Authenticate challenge",
        )?;
        http.check_url(&url, "resource metadata URL")?;
        candidates.push(url);
    }
    candidates.extend(path_inserted(server_url, "oauth-protected-resource"));
    candidates.push(at_root(server_url, "oauth-protected-resource"));
    candidates.dedup();
    Ok(candidates)
}

/// Whether the metadata's `resource` covers `server_url`: same origin, and the server's path is
/// the resource's path or below it.
pub(crate) fn resource_covers(resource: &Url, server_url: &Url) -> bool {
    if resource.origin() != server_url.origin() {
        return false;
    }
    let resource_path = resource.path().trim_end_matches('/');
    let server_path = server_url.path().trim_end_matches('/');
    server_path == resource_path
        || server_path
            .strip_prefix(resource_path)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Two issuer identifiers are the same: equal strings, or equal once parsed (which only differs
/// for the root path's trailing slash).
pub(crate) fn same_issuer(a: &str, b: &str) -> bool {
    a == b || matches!((Url::parse(a), Url::parse(b)), (Ok(x), Ok(y)) if x == y)
}

struct Discoverer<'a> {
    http: &'a HttpClient,
    protocol_version: HeaderValue,
}

enum Probe<T> {
    Found(T),
    /// 4xx: nothing here, try the next candidate.
    Absent,
    /// A redirect, a 5xx or a non-JSON page (an SPA catch-all, say): try the next candidate, and
    /// report this if none works.
    Unusable(Error),
}

impl Discoverer<'_> {
    async fn probe<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        what: &str,
    ) -> Result<Probe<T>> {
        let response = self
            .http
            .get(
                url,
                &[(MCP_PROTOCOL_VERSION_HEADER, self.protocol_version.clone())],
            )
            .await?;
        let status = response.status();
        tracing::debug!(url = %redact_url(url), %status, "discovery probe");
        if status.is_client_error() {
            return Ok(Probe::Absent);
        }
        if !status.is_success() || !crate::http::is_json(&response) {
            return Ok(Probe::Unusable(
                parse_json::<serde_json::Value>(&response, what)
                    .err()
                    .unwrap_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidResponse,
                            format!("{what}: unusable response"),
                        )
                    }),
            ));
        }
        // A JSON document that does not parse is broken, not absent.
        parse_json(&response, what).map(Probe::Found)
    }

    /// The first candidate that answers with a document, checked by `check`. Absent (4xx) and
    /// unusable candidates are skipped; when none answers, the first unusable answer is the
    /// error, else `None`.
    async fn first_found<T: serde::de::DeserializeOwned>(
        &self,
        candidates: Vec<Url>,
        what: &str,
        check: impl Fn(&Url, &T) -> Result<()>,
    ) -> Result<Option<T>> {
        let mut unusable = None;
        for url in candidates {
            match self.probe::<T>(&url, what).await? {
                Probe::Found(document) => {
                    check(&url, &document)?;
                    return Ok(Some(document));
                }
                Probe::Absent => {}
                Probe::Unusable(error) => {
                    unusable.get_or_insert(error);
                }
            }
        }
        unusable.map_or(Ok(None), Err)
    }

    async fn resource_metadata(
        &self,
        server_url: &Url,
        challenge: Option<&BearerChallenge>,
    ) -> Result<Option<ProtectedResourceMetadata>> {
        let candidates = resource_metadata_candidates(self.http, server_url, challenge)?;
        self.first_found(
            candidates,
            "protected resource metadata",
            |url, metadata: &ProtectedResourceMetadata| {
                let resource = parse_url(
                    &metadata.resource,
                    "the protected resource metadata's resource",
                )?;
                if resource_covers(&resource, server_url) {
                    return Ok(());
                }
                Err(Error::new(
                    ErrorKind::MetadataMismatch,
                    format!(
                        "protected resource metadata at {} is for resource {}, not for {}",
                        redact_url(url),
                        redact_url(&resource),
                        redact_url(server_url)
                    ),
                ))
            },
        )
        .await
    }

    /// Finds the metadata for `issuer`. `exact_issuer` is false only for the 2025-03-26
    /// fallback, where the issuer is not known beforehand: the document must then name an issuer
    /// on the MCP server's own origin.
    async fn authorization_server(
        &self,
        issuer: &str,
        exact_issuer: bool,
    ) -> Result<Option<AuthorizationServerMetadata>> {
        let issuer_url = parse_url(issuer, "authorization server issuer")?;
        self.http.check_url(&issuer_url, "authorization server")?;
        let candidates = authorization_server_candidates(&issuer_url);
        self.first_found(
            candidates,
            "authorization server metadata",
            |url, metadata: &AuthorizationServerMetadata| {
                let acceptable = if exact_issuer {
                    same_issuer(&metadata.issuer, issuer)
                } else {
                    Url::parse(&metadata.issuer)
                        .is_ok_and(|named| named.origin() == issuer_url.origin())
                };
                if !acceptable {
                    return Err(Error::new(
                        ErrorKind::MetadataMismatch,
                        format!(
                    "authorization server metadata at {} names issuer {:?}, expected {issuer:?}",
                    redact_url(url),
                    metadata.issuer
                ),
                    ));
                }
                Ok(())
            },
        )
        .await
    }

    /// The metadata of an issuer someone named (the resource's metadata, the configuration):
    /// finding none is a failure.
    async fn known_authorization_server(
        &self,
        issuer: &str,
    ) -> Result<AuthorizationServerMetadata> {
        self.authorization_server(issuer, true)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::DiscoveryFailed,
                    format!("no authorization server metadata found for issuer {issuer}"),
                )
            })
    }
}

fn origin_of(url: &Url) -> Url {
    let mut origin = url.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    origin
}

/// The 2025-03-26 defaults for a server without metadata: `/authorize`, `/token`, `/register`
/// at the MCP server's origin, PKCE S256 as that spec requires of every server.
fn default_endpoints(server_url: &Url) -> AuthorizationServerMetadata {
    let origin = origin_of(server_url);
    let endpoint = |path: &str| origin.join(path).map(|u| u.to_string()).ok();
    AuthorizationServerMetadata {
        issuer: origin.as_str().trim_end_matches('/').to_owned(),
        authorization_endpoint: endpoint("/authorize"),
        token_endpoint: endpoint("/token"),
        registration_endpoint: endpoint("/register"),
        code_challenge_methods_supported: Some(vec!["S256".into()]),
        response_types_supported: Some(vec!["code".into()]),
        ..Default::default()
    }
}

/// Checks that the endpoints the flow uses are present and safe.
pub(crate) fn validate_endpoints(
    http: &HttpClient,
    metadata: &AuthorizationServerMetadata,
) -> Result<()> {
    for (name, value) in [
        ("authorization_endpoint", &metadata.authorization_endpoint),
        ("token_endpoint", &metadata.token_endpoint),
    ] {
        let value = value.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidResponse,
                format!("authorization server metadata has no {name}"),
            )
        })?;
        http.check_url(&parse_url(value, name)?, name)?;
    }
    Ok(())
}

/// The metadata of the authorization server `issuer` (RFC 8414, then OpenID Connect
/// discovery), checked to name that issuer and to have a safe token endpoint: how a client
/// finds an enterprise IdP it was configured with.
pub(crate) async fn fetch_authorization_server_metadata(
    http: &HttpClient,
    issuer: &Url,
) -> Result<AuthorizationServerMetadata> {
    let discoverer = Discoverer {
        http,
        protocol_version: HeaderValue::from_static(DEFAULT_PROTOCOL_VERSION),
    };
    let issuer = issuer.as_str().trim_end_matches('/');
    let metadata = discoverer.known_authorization_server(issuer).await?;
    let token_endpoint = metadata.token_endpoint.as_deref().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidResponse,
            format!("the authorization server {issuer} publishes no token_endpoint"),
        )
    })?;
    http.check_url(
        &parse_url(token_endpoint, "token_endpoint")?,
        "token_endpoint",
    )?;
    Ok(metadata)
}

/// Runs discovery for `server_url`, starting from the challenge of a 401 when there is one.
///
/// # Errors
/// [`ErrorKind::MetadataMismatch`] when a document names another resource or issuer;
/// [`ErrorKind::InvalidResponse`] for malformed documents; [`ErrorKind::InsecureUrl`] for http
/// endpoints off loopback; [`ErrorKind::DiscoveryFailed`] when the resource names no usable
/// authorization server; transport errors as they come.
pub async fn discover(
    http: &HttpClient,
    server_url: &Url,
    challenge: Option<&BearerChallenge>,
    protocol_version: &str,
) -> Result<Discovery> {
    let span = tracing::info_span!("discovery", server = %redact_url(server_url));
    discover_inner(http, server_url, challenge, protocol_version)
        .instrument(span)
        .await
}

async fn discover_inner(
    http: &HttpClient,
    server_url: &Url,
    challenge: Option<&BearerChallenge>,
    protocol_version: &str,
) -> Result<Discovery> {
    let discoverer = Discoverer {
        http,
        protocol_version: HeaderValue::from_str(protocol_version).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                "the MCP protocol version is not a valid header value",
            )
        })?,
    };
    let resource_metadata = discoverer.resource_metadata(server_url, challenge).await?;
    let discovery = match resource_metadata {
        Some(prm) => {
            let issuer = prm.authorization_servers.first().ok_or_else(|| {
                Error::new(
                    ErrorKind::DiscoveryFailed,
                    "the protected resource metadata lists no authorization server",
                )
            })?;
            let metadata = discoverer.known_authorization_server(issuer).await?;
            Discovery {
                resource: Some(prm.resource.clone()),
                resource_metadata: Some(prm),
                authorization_server: metadata,
                default_endpoints: false,
            }
        }
        None => {
            // 2025-03-26: the MCP server's origin is the authorization server.
            let origin = origin_of(server_url);
            let issuer = origin.as_str().trim_end_matches('/').to_owned();
            match discoverer.authorization_server(&issuer, false).await? {
                Some(metadata) => Discovery {
                    resource: None,
                    resource_metadata: None,
                    authorization_server: metadata,
                    default_endpoints: false,
                },
                None => {
                    tracing::info!("no metadata published; using the 2025-03-26 default endpoints");
                    Discovery {
                        resource: None,
                        resource_metadata: None,
                        authorization_server: default_endpoints(server_url),
                        default_endpoints: true,
                    }
                }
            }
        }
    };
    validate_endpoints(http, &discovery.authorization_server)?;
    tracing::info!(issuer = %discovery.issuer(), "discovered authorization server");
    Ok(discovery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(v: Vec<Url>) -> Vec<String> {
        v.into_iter().map(String::from).collect()
    }

    #[test]
    fn probe_order_for_issuers_with_and_without_path() {
        let with_path = Url::parse("https://auth.example.com/tenant1").unwrap();
        assert_eq!(
            urls(authorization_server_candidates(&with_path)),
            vec![
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        let root = Url::parse("https://auth.example.com").unwrap();
        assert_eq!(
            urls(authorization_server_candidates(&root)),
            vec![
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn resource_metadata_order_prefers_the_challenge() {
        let server = Url::parse("https://mcp.example.com/public/mcp").unwrap();
        let challenge = BearerChallenge {
            resource_metadata: Some("https://mcp.example.com/custom/prm".into()),
            ..Default::default()
        };
        assert_eq!(
            urls(
                resource_metadata_candidates(&HttpClient::new(), &server, Some(&challenge))
                    .unwrap()
            ),
            vec![
                "https://mcp.example.com/custom/prm",
                "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        let insecure = BearerChallenge {
            resource_metadata: Some("http://evil.example/prm".into()),
            ..Default::default()
        };
        assert_eq!(
            resource_metadata_candidates(&HttpClient::new(), &server, Some(&insecure))
                .unwrap_err()
                .kind(),
            ErrorKind::InsecureUrl
        );
    }

    #[test]
    fn plain_http_endpoints_follow_the_clients_policy() {
        let metadata = |token: &str| AuthorizationServerMetadata {
            issuer: "http://mcp.vpc".into(),
            authorization_endpoint: Some("http://mcp.vpc/authorize".into()),
            token_endpoint: Some(token.into()),
            ..Default::default()
        };
        let allowing = HttpClient::new()
            .plain_http(crate::http::PlainHttp::private_networks().and_host("mcp.vpc"));
        assert!(validate_endpoints(&allowing, &metadata("http://mcp.vpc/token")).is_ok());
        assert!(validate_endpoints(&allowing, &metadata("http://10.1.1.1/token")).is_ok());
        // A discovered token endpoint on a public host never gets plain http.
        let public = validate_endpoints(&allowing, &metadata("http://auth.example.com/token"));
        assert_eq!(public.unwrap_err().kind(), ErrorKind::InsecureUrl);
        let strict = validate_endpoints(&HttpClient::new(), &metadata("http://mcp.vpc/token"));
        assert_eq!(strict.unwrap_err().kind(), ErrorKind::InsecureUrl);
    }

    #[test]
    fn resource_matching() {
        let server = Url::parse("https://mcp.example.com/mcp").unwrap();
        let ok = |r: &str| resource_covers(&Url::parse(r).unwrap(), &server);
        assert!(ok("https://mcp.example.com/mcp"));
        assert!(ok("https://mcp.example.com/mcp/"));
        assert!(ok("https://mcp.example.com"));
        assert!(!ok("https://mcp.example.com/mc"));
        assert!(!ok("https://mcp.example.com/other"));
        assert!(!ok("https://evil.example.com/mcp"));
        assert!(!ok("http://mcp.example.com/mcp"));
    }

    #[test]
    fn issuer_comparison_only_forgives_the_root_slash() {
        assert!(same_issuer("https://a.example", "https://a.example/"));
        assert!(!same_issuer(
            "https://a.example/t1",
            "https://a.example/t1/"
        ));
        assert!(!same_issuer("https://a.example", "https://b.example"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{json, Value};

        /// A JSON value of any shape, a few levels deep.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "[ -~]{0,16}".prop_map(Value::from),
                Just(json!("https://auth.example.com/token")),
                Just(json!("http://auth.example.com/token")),
                Just(json!("http://127.0.0.1:9/token")),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn json_response(body: &Value) -> http::Response<bytes::Bytes> {
            http::Response::builder()
                .header("content-type", "application/json")
                .body(bytes::Bytes::from(body.to_string()))
                .unwrap()
        }

        proptest! {
            #[test]
            fn any_metadata_document_is_used_or_refused_with_a_typed_error(
                fields in proptest::collection::btree_map(
                    prop_oneof![
                        Just("issuer".to_owned()), Just("authorization_endpoint".to_owned()),
                        Just("token_endpoint".to_owned()), Just("scopes_supported".to_owned()),
                        Just("code_challenge_methods_supported".to_owned()),
                        Just("authorization_response_iss_parameter_supported".to_owned()),
                        "[a-z_]{1,10}",
                    ],
                    any_json(),
                    0..8,
                ),
            ) {
                let document = Value::Object(fields.into_iter().collect());
                let parsed = crate::http::parse_json::<AuthorizationServerMetadata>(
                    &json_response(&document),
                    "authorization server metadata",
                );
                match parsed {
                    Err(error) => prop_assert_eq!(error.kind(), ErrorKind::InvalidResponse),
                    Ok(metadata) => match validate_endpoints(&HttpClient::new(), &metadata) {
                        Ok(()) => {
                            for endpoint in [&metadata.authorization_endpoint, &metadata.token_endpoint] {
                                let url = Url::parse(endpoint.as_deref().unwrap()).unwrap();
                                prop_assert!(crate::http::ensure_secure_url(&url, "endpoint").is_ok());
                            }
                        }
                        Err(error) => prop_assert!(matches!(
                            error.kind(),
                            ErrorKind::InvalidResponse | ErrorKind::InsecureUrl
                        )),
                    },
                }
            }

            #[test]
            fn any_protected_resource_metadata_parses_or_is_refused(document in any_json()) {
                let parsed = crate::http::parse_json::<ProtectedResourceMetadata>(
                    &json_response(&document),
                    "protected resource metadata",
                );
                if let Err(error) = parsed {
                    prop_assert_eq!(error.kind(), ErrorKind::InvalidResponse);
                }
            }
        }
    }
}
