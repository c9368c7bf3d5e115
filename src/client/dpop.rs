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
    /// DPoP when the authorization server lists an algorithm this client can sign with in
    /// `dpop_signing_alg_values_supported`, or the resource requires DPoP-bound tokens; Bearer
    /// otherwise.
    #[default]
    Auto,
    /// Always DPoP (ES256 unless the server lists only ES384): a server that answers with a
    /// Bearer token is refused.
    Required,
    /// Never DPoP: Bearer tokens only.
    Disabled,
}

/// The algorithm to prove with for this authorization server and resource, `None` for Bearer.
pub(crate) fn algorithm_for(
    mode: DpopMode,
    authorization_server: &AuthorizationServerMetadata,
    resource: Option<&ProtectedResourceMetadata>,
) -> Option<DpopAlgorithm> {
    let listed: Vec<DpopAlgorithm> = authorization_server
        .dpop_signing_alg_values_supported
        .iter()
        .flatten()
        .filter_map(|name| DpopAlgorithm::from_name(name))
        .filter(|alg| alg.can_sign())
        .collect();
    // ES256 first whenever it is listed: the cheapest and the most widely checked.
    let preferred = [DpopAlgorithm::ES256, DpopAlgorithm::ES384]
        .into_iter()
        .find(|alg| listed.contains(alg));
    let required =
        mode == DpopMode::Required || resource.is_some_and(|r| r.dpop_bound_access_tokens_required);
    match mode {
        DpopMode::Disabled => None,
        _ if required => Some(preferred.unwrap_or(DpopAlgorithm::ES256)),
        _ => preferred,
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

    #[test]
    fn dpop_is_used_when_offered_required_or_configured() {
        use DpopAlgorithm::*;
        let auto = DpopMode::Auto;
        assert_eq!(algorithm_for(auto, &server(None), None), None);
        assert_eq!(
            algorithm_for(auto, &server(Some(&["RS256", "ES256"])), None),
            Some(ES256)
        );
        assert_eq!(
            algorithm_for(auto, &server(Some(&["ES384"])), None),
            Some(ES384)
        );
        assert_eq!(algorithm_for(auto, &server(Some(&["RS256"])), None), None);
        let requiring = ProtectedResourceMetadata {
            dpop_bound_access_tokens_required: true,
            ..Default::default()
        };
        assert_eq!(
            algorithm_for(auto, &server(None), Some(&requiring)),
            Some(ES256)
        );
        assert_eq!(
            algorithm_for(DpopMode::Required, &server(None), None),
            Some(ES256)
        );
        assert_eq!(
            algorithm_for(
                DpopMode::Disabled,
                &server(Some(&["ES256"])),
                Some(&requiring)
            ),
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
