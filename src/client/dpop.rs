//! DPoP at the client: when to use it, the nonces servers hand out, and token requests that carry
//! a proof (with the one retry RFC 9449 §8 asks for when the authorization server wants a nonce).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use http::header::HeaderValue;
use http::HeaderMap;

pub(crate) use crate::dpop::DPOP;
use crate::dpop::{DpopAlgorithm, DpopKey, DPOP_NONCE};
use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpClient;
use crate::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};
use crate::sync::RwLockExt;

/// The longest nonce remembered; a longer one is ignored.
const MAX_NONCE_BYTES: usize = 1024;

/// When the client binds its tokens to a DPoP key (RFC 9449).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopMode {
    /// DPoP when both other parties take it: the authorization server lists an algorithm this
    /// client can sign with in `dpop_signing_alg_values_supported`, and the resource says it
    /// takes DPoP (its metadata lists `dpop_signing_alg_values_supported` or requires bound
    /// tokens, or it challenged with the `DPoP` scheme). Bearer otherwise, even where the
    /// authorization server offers DPoP. A bound token refused by a resource that then offers
    /// Bearer alone is replaced once by a Bearer one.
    #[default]
    Auto,
    /// Always DPoP (ES256 unless the server lists only ES384): a server that answers with a
    /// Bearer token is refused, and so is a resource that takes Bearer tokens only
    /// ([`ErrorKind::DpopNotAccepted`](crate::ErrorKind::DpopNotAccepted)).
    Required,
    /// Never DPoP: Bearer tokens only.
    Disabled,
}

/// What the resource has shown of DPoP beyond its metadata: its challenges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ResourceDpop {
    /// Nothing beyond the metadata.
    #[default]
    Unknown,
    /// A challenge offered the `DPoP` scheme.
    Offered,
    /// It said it takes DPoP (metadata or challenge), then refused a bound token once with a
    /// Bearer-only challenge, as some servers answer any bad token: the token is renewed, still
    /// bound, and a second such refusal settles it.
    Doubted,
    /// A DPoP-bound token was refused and the challenge offered Bearer alone.
    Refused,
}

impl ResourceDpop {
    /// What the challenges of a 401 or 403 say, given whether the request carried DPoP;
    /// `None` when they say nothing new (no challenge, or only a Bearer one to a Bearer token).
    pub(crate) fn from_challenges(headers: &HeaderMap, sent_dpop: bool) -> Option<Self> {
        let mut bearer = false;
        for value in headers.get_all(http::header::WWW_AUTHENTICATE) {
            let Some(challenges) = value
                .to_str()
                .ok()
                .and_then(|v| crate::challenge::parse_challenges(v).ok())
            else {
                continue;
            };
            for challenge in &challenges {
                if challenge.is_scheme("dpop") {
                    return Some(Self::Offered);
                }
                bearer |= challenge.is_scheme("bearer");
            }
        }
        (bearer && sent_dpop).then_some(Self::Refused)
    }
}

/// The algorithm to prove with for this authorization server and resource, `None` for Bearer.
pub(crate) fn algorithm_for(
    mode: DpopMode,
    authorization_server: &AuthorizationServerMetadata,
    resource: Option<&ProtectedResourceMetadata>,
    seen: ResourceDpop,
) -> Option<DpopAlgorithm> {
    let resource_algs: Option<Vec<DpopAlgorithm>> = resource
        .and_then(|r| r.dpop_signing_alg_values_supported.as_ref())
        .filter(|algs| !algs.is_empty())
        .map(|algs| {
            algs.iter()
                .filter_map(|name| DpopAlgorithm::from_name(name))
                .collect()
        });
    let listed: Vec<DpopAlgorithm> = authorization_server
        .dpop_signing_alg_values_supported
        .iter()
        .flatten()
        .filter_map(|name| DpopAlgorithm::from_name(name))
        .filter(|alg| alg.can_sign())
        .collect();
    // ES256 first whenever both list it: the cheapest and the most widely checked.
    let both_take = |alg: &DpopAlgorithm| {
        listed.contains(alg) && resource_algs.as_ref().is_none_or(|r| r.contains(alg))
    };
    let preferred = [DpopAlgorithm::ES256, DpopAlgorithm::ES384]
        .into_iter()
        .find(both_take);
    let required =
        mode == DpopMode::Required || resource.is_some_and(|r| r.dpop_bound_access_tokens_required);
    let resource_takes = match seen {
        ResourceDpop::Refused => false,
        ResourceDpop::Offered | ResourceDpop::Doubted => true,
        ResourceDpop::Unknown => resource_algs.is_some(),
    };
    match mode {
        DpopMode::Disabled => None,
        _ if required => Some(preferred.unwrap_or(DpopAlgorithm::ES256)),
        _ if resource_takes => preferred,
        _ => None,
    }
}

/// The nonce one server asked for (RFC 9449 §8, §9), replaced whenever it sends another.
#[derive(Debug, Default)]
pub(crate) struct NonceCell(RwLock<Option<Arc<str>>>);

impl NonceCell {
    pub(crate) fn get(&self) -> Option<Arc<str>> {
        self.0.read_locked().clone()
    }

    /// Remembers the `DPoP-Nonce` of a response, if it has a usable one; says whether it did.
    pub(crate) fn update_from(&self, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers
            .get(DPOP_NONCE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= MAX_NONCE_BYTES)
        else {
            return false;
        };
        if self.get().as_deref() != Some(nonce) {
            *self.0.write_locked() = Some(nonce.into());
        }
        true
    }
}

/// What a token request needs to carry a proof.
#[derive(Clone)]
pub(crate) struct DpopSigner {
    pub(crate) key: DpopKey,
    pub(crate) nonce: Arc<NonceCell>,
}

/// [`HttpClient`] with a proof on every request: the client the `oauth2` crate's token requests
/// run on when tokens are to be DPoP-bound. It owns what it uses, so the futures it makes
/// borrow nothing but itself.
pub(crate) struct DpopHttp {
    pub(crate) http: HttpClient,
    pub(crate) signer: DpopSigner,
}

impl DpopHttp {
    fn with_proof(&self, request: &oauth2::HttpRequest) -> Result<oauth2::HttpRequest> {
        let nonce = self.signer.nonce.get();
        let proof = self.signer.key.proof(
            request.method().as_str(),
            &request.uri().to_string(),
            None,
            nonce.as_deref(),
        )?;
        let mut copy = http::Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone())
            .version(request.version())
            .body(request.body().clone())
            .map_err(|e| {
                Error::new(ErrorKind::Config, "could not copy the token request").with_source(e)
            })?;
        *copy.headers_mut() = request.headers().clone();
        let mut value = HeaderValue::from_str(&proof).map_err(|e| {
            Error::new(ErrorKind::Config, "the DPoP proof is not a header value").with_source(e)
        })?;
        value.set_sensitive(true);
        copy.headers_mut().insert(DPOP, value);
        Ok(copy)
    }
}

/// Whether a token endpoint's answer asks for a nonce (`400 {"error":"use_dpop_nonce"}`).
fn asks_for_nonce(response: &oauth2::HttpResponse) -> bool {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    response.status() == http::StatusCode::BAD_REQUEST
        && serde_json::from_slice::<ErrorBody>(response.body())
            .is_ok_and(|body| body.error == "use_dpop_nonce")
}

impl<'c> oauth2::AsyncHttpClient<'c> for DpopHttp {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response =
                oauth2::AsyncHttpClient::call(&self.http, self.with_proof(&request)?).await?;
            let new_nonce = self.signer.nonce.update_from(response.headers());
            if !(new_nonce && asks_for_nonce(&response)) {
                return Ok(response);
            }
            // Once: a server that wants yet another nonce gets its error back.
            tracing::debug!("the token endpoint asked for a DPoP nonce; sending the request again");
            let response =
                oauth2::AsyncHttpClient::call(&self.http, self.with_proof(&request)?).await?;
            self.signer.nonce.update_from(response.headers());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(algs: Option<&[&str]>) -> AuthorizationServerMetadata {
        AuthorizationServerMetadata {
            issuer: "https://auth.example.com".into(),
            dpop_signing_alg_values_supported: algs
                .map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        }
    }

    fn resource(algs: Option<&[&str]>, required: bool) -> ProtectedResourceMetadata {
        ProtectedResourceMetadata {
            dpop_signing_alg_values_supported: algs
                .map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
            dpop_bound_access_tokens_required: required,
            ..Default::default()
        }
    }

    #[test]
    fn auto_binds_only_when_both_servers_take_dpop() {
        use DpopAlgorithm::*;
        use ResourceDpop::*;
        let auto = DpopMode::Auto;
        let offering = server(Some(&["RS256", "ES256"]));
        let taking = resource(Some(&["ES256", "RS256"]), false);
        let silent = resource(None, false);
        // The authorization server offers DPoP, the resource says nothing of it: Bearer.
        assert_eq!(algorithm_for(auto, &offering, Some(&silent), Unknown), None);
        assert_eq!(algorithm_for(auto, &offering, None, Unknown), None);
        // The resource takes it, by its metadata or by its challenge.
        assert_eq!(
            algorithm_for(auto, &offering, Some(&taking), Unknown),
            Some(ES256)
        );
        // Doubted after one Bearer-only refusal: still bound until a second one.
        assert_eq!(
            algorithm_for(auto, &offering, Some(&silent), Doubted),
            Some(ES256)
        );
        assert_eq!(
            algorithm_for(auto, &offering, Some(&silent), Offered),
            Some(ES256)
        );
        // A resource that refused a bound token is served Bearer, whatever its metadata says.
        assert_eq!(algorithm_for(auto, &offering, Some(&taking), Refused), None);
        // Only an algorithm both take.
        assert_eq!(
            algorithm_for(
                auto,
                &server(Some(&["ES256", "ES384"])),
                Some(&resource(Some(&["ES384"]), false)),
                Unknown
            ),
            Some(ES384)
        );
        assert_eq!(
            algorithm_for(
                auto,
                &server(Some(&["ES256"])),
                Some(&resource(Some(&["EdDSA"]), false)),
                Unknown
            ),
            None
        );
        // The authorization server does not offer it: Bearer.
        assert_eq!(
            algorithm_for(auto, &server(None), Some(&taking), Offered),
            None
        );
        assert_eq!(
            algorithm_for(auto, &server(Some(&["RS256"])), Some(&taking), Offered),
            None
        );
    }

    #[test]
    fn dpop_is_used_when_required_or_configured() {
        use DpopAlgorithm::*;
        use ResourceDpop::*;
        let requiring = resource(None, true);
        assert_eq!(
            algorithm_for(DpopMode::Auto, &server(None), Some(&requiring), Unknown),
            Some(ES256)
        );
        assert_eq!(
            algorithm_for(DpopMode::Required, &server(None), None, Refused),
            Some(ES256)
        );
        assert_eq!(
            algorithm_for(
                DpopMode::Disabled,
                &server(Some(&["ES256"])),
                Some(&requiring),
                Offered
            ),
            None
        );
    }

    #[test]
    fn challenges_tell_whether_the_resource_takes_dpop() {
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            map
        };
        let both = headers(&[
            r#"Bearer resource_metadata="https://r/x""#,
            r#"DPoP algs="ES256""#,
        ]);
        let bearer = headers(&[r#"Bearer error="invalid_token""#]);
        assert_eq!(
            ResourceDpop::from_challenges(&both, false),
            Some(ResourceDpop::Offered)
        );
        assert_eq!(
            ResourceDpop::from_challenges(&both, true),
            Some(ResourceDpop::Offered)
        );
        assert_eq!(
            ResourceDpop::from_challenges(&bearer, true),
            Some(ResourceDpop::Refused)
        );
        assert_eq!(ResourceDpop::from_challenges(&bearer, false), None);
        assert_eq!(ResourceDpop::from_challenges(&HeaderMap::new(), true), None);
        assert_eq!(
            ResourceDpop::from_challenges(&headers(&[r#"Bearer realm="unterminated"#]), true),
            None
        );
    }

    #[test]
    fn a_nonce_is_remembered_only_when_usable() {
        let cell = NonceCell::default();
        let mut headers = HeaderMap::new();
        assert!(!cell.update_from(&headers));
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
        assert!(cell.update_from(&headers));
        assert_eq!(cell.get().as_deref(), Some("n-1"));
        headers.insert(
            DPOP_NONCE,
            HeaderValue::from_str(&"x".repeat(2000)).unwrap(),
        );
        assert!(!cell.update_from(&headers));
        assert_eq!(cell.get().as_deref(), Some("n-1"));
    }
}
