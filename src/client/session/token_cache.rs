//! What requests attach. A token has three shapes: the [`TokenSet`] the session stores, the
//! [`TokenSnapshot`] built from it once per token (the header plus when to refresh), and a
//! per-thread copy of the header for the hot path. Its generation is counted under the state
//! lock and mirrored in one atomic (`published`), which the hot path reads without locking.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::header::HeaderValue;

use super::{Session, SessionState};
use crate::client::tokens::TokenSet;
use crate::clock::now_secs;
use crate::dpop::{access_token_hash, DpopKey};
use crate::sync::RwLockExt;

/// What a request attaches: the `Authorization` value and the token generation it belongs to.
#[derive(Clone)]
pub(crate) struct Attach {
    /// `Bearer …` or `DPoP …`, marked sensitive.
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
    /// For a DPoP-bound token, what each request's proof is made of.
    pub(crate) dpop: Option<Arc<DpopAttach>>,
}

/// The parts of a DPoP proof that stay the same for one token.
pub(crate) struct DpopAttach {
    pub(crate) key: DpopKey,
    /// `ath`, hashed once per token rather than per request.
    pub(crate) ath: String,
}

/// A published token: built once per token, not per request.
pub(crate) struct TokenSnapshot {
    pub(crate) attach: Attach,
    refresh_due_at: Option<u64>,
    expires_at: Option<u64>,
    pub(crate) refreshable: bool,
}

impl TokenSnapshot {
    /// `reacquirable`: a grant without a user can get a new token whenever this one is due,
    /// refresh token or not.
    fn build(
        tokens: &TokenSet,
        generation: u64,
        margin_secs: u64,
        reacquirable: bool,
        present_id_token: bool,
    ) -> Option<Self> {
        let id_token = present_id_token.then(|| good_id_token(tokens)).flatten();
        let (token, scheme, dpop, expires_at, issued_at) = match id_token {
            // An ID token is never bound: it goes as Bearer, due by its own `exp`.
            Some((token, expires_at, issued_at)) => {
                (token, "Bearer", None, Some(expires_at), issued_at)
            }
            None => {
                let token = tokens.access_token.expose();
                let (scheme, dpop) = match &tokens.dpop_key {
                    Some(key) => (
                        "DPoP",
                        Some(Arc::new(DpopAttach {
                            key: key.clone(),
                            ath: access_token_hash(token),
                        })),
                    ),
                    // A DPoP-bound token without its key is of no use to anyone.
                    None if tokens.token_type.eq_ignore_ascii_case("dpop") => return None,
                    None => ("Bearer", None),
                };
                (token, scheme, dpop, tokens.expires_at, tokens.issued_at)
            }
        };
        let mut header = HeaderValue::from_str(&format!("{scheme} {token}")).ok()?;
        header.set_sensitive(true);
        let margin = match (expires_at, issued_at) {
            (Some(expires_at), Some(issued_at)) => {
                margin_secs.min(expires_at.saturating_sub(issued_at) / 2)
            }
            _ => margin_secs,
        };
        Some(Self {
            attach: Attach {
                header,
                generation,
                dpop,
            },
            refresh_due_at: expires_at.map(|at| at.saturating_sub(margin)),
            expires_at,
            refreshable: reacquirable || tokens.refresh_token.is_some(),
        })
    }

    pub(crate) fn due(&self, now: u64) -> bool {
        self.refresh_due_at.is_some_and(|at| at <= now)
    }

    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The ID token with its `exp` and `iat`, if one is still good; `None` otherwise (the access
/// token is sent then, rather than a refresh on every request).
fn good_id_token(tokens: &TokenSet) -> Option<(&str, u64, Option<u64>)> {
    let token = tokens.id_token.as_ref()?.expose();
    if !crate::client::wire::is_attachable(token) {
        return None;
    }
    let expires_at = crate::jose::unverified_claim_u64(token, "exp")?;
    if expires_at <= crate::clock::now_secs() {
        tracing::warn!("the ID token has expired and no newer one came; sending the access token");
        return None;
    }
    Some((
        token,
        expires_at,
        crate::jose::unverified_claim_u64(token, "iat"),
    ))
}

/// A thread's own copy of a session's current header. Requests on many cores would otherwise
/// all bump the same reference counts (the lock, the snapshot, the header bytes) and fight over
/// one cache line; with a copy per thread, the hot path only reads shared memory.
struct LocalToken {
    session: u64,
    attach: Attach,
    refresh_due_at: Option<u64>,
}

thread_local! {
    static LOCAL_TOKENS: RefCell<Vec<LocalToken>> = const { RefCell::new(Vec::new()) };
}

/// How many sessions a thread keeps copies for.
const LOCAL_TOKEN_SLOTS: usize = 8;

impl Session {
    /// The generation of the token requests attach, `None` when none is attached. Taken from
    /// what is published, not from what is stored: a stored token that cannot be attached must
    /// not make a 401 look already recovered.
    pub(super) fn current_generation(&self) -> Option<u64> {
        let published = self.published.load(Ordering::Acquire);
        (published != 0).then_some(published)
    }

    /// Replaces the tokens under the state lock and republishes the snapshot.
    pub(super) fn replace_tokens(&self, s: &mut SessionState, tokens: Option<TokenSet>) {
        s.generation += 1;
        if let Some(old) = &s.tokens {
            let kept = tokens
                .as_ref()
                .is_some_and(|new| new.access_token.expose() == old.access_token.expose());
            if !kept {
                s.dropped_access = Some(access_digest(old));
            }
        }
        let snapshot = tokens
            .as_ref()
            .and_then(|t| {
                TokenSnapshot::build(
                    t,
                    s.generation,
                    self.config.refresh_margin.as_secs(),
                    self.config.grant.needs_no_user(),
                    self.config.present_id_token,
                )
            })
            .map(Arc::new);
        s.tokens = tokens;
        let published = snapshot.as_ref().map_or(0, |s| s.attach.generation);
        *self.snapshot.write_locked() = snapshot;
        self.published.store(published, Ordering::Release);
    }

    /// The header to attach, from this thread's copy when it is current and not due for
    /// refresh; `None` sends the caller down the full path.
    pub(crate) fn fast_attach(&self) -> Option<Attach> {
        let published = self.published.load(Ordering::Acquire);
        if published == 0 {
            return None;
        }
        LOCAL_TOKENS.with(|cell| {
            let mut local = cell.borrow_mut();
            let fresh = local
                .iter()
                .position(|t| t.session == self.id && t.attach.generation == published);
            let index = match fresh {
                Some(index) => index,
                None => {
                    let snapshot = self
                        .snapshot()
                        .filter(|s| s.attach.generation == published)?;
                    // A copy of the bytes: its reference count belongs to this thread alone.
                    let mut header =
                        HeaderValue::from_bytes(snapshot.attach.header.as_bytes()).ok()?;
                    header.set_sensitive(true);
                    local.retain(|t| t.session != self.id);
                    if local.len() >= LOCAL_TOKEN_SLOTS {
                        local.remove(0);
                    }
                    local.push(LocalToken {
                        session: self.id,
                        attach: Attach {
                            header,
                            generation: published,
                            dpop: snapshot.attach.dpop.clone(),
                        },
                        refresh_due_at: snapshot.refresh_due_at,
                    });
                    local.len() - 1
                }
            };
            let token = &local[index];
            if token.refresh_due_at.is_some_and(|at| at <= now_secs()) {
                return None;
            }
            Some(token.attach.clone())
        })
    }

    /// The current token to attach, if any.
    pub(crate) fn current_attach(&self) -> Option<Attach> {
        self.fast_attach()
            .or_else(|| self.snapshot().map(|s| s.attach.clone()))
    }

    pub(crate) fn set_tokens(&self, tokens: Option<TokenSet>) {
        self.with(|s| self.replace_tokens(s, tokens));
    }

    /// The published token, without any I/O.
    pub(crate) fn snapshot(&self) -> Option<Arc<TokenSnapshot>> {
        self.snapshot.read_locked().clone()
    }
}

/// The SHA-256 of a token set's access token: how a session remembers one it let go of.
pub(crate) fn access_digest(tokens: &TokenSet) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(tokens.access_token.expose().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn id_token(iat: u64, exp: u64) -> String {
        let claims =
            format!(r#"{{"iss":"https://idp.example","sub":"alice","iat":{iat},"exp":{exp}}}"#);
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims))
    }

    fn tokens(id_token: Option<String>) -> TokenSet {
        let now = crate::clock::now_secs();
        TokenSet {
            access_token: crate::Secret::new("access"),
            token_type: "Bearer".into(),
            refresh_token: Some(crate::Secret::new("refresh")),
            expires_at: Some(now + 7_200),
            scopes: vec!["openid".into()],
            issued_at: Some(now),
            dpop_key: None,
            id_token: id_token.map(crate::Secret::new),
        }
    }

    #[test]
    fn the_id_token_is_presented_and_renewed_by_its_own_expiry() {
        let now = crate::clock::now_secs();
        let id = id_token(now, now + 600);
        let snapshot = TokenSnapshot::build(&tokens(Some(id.clone())), 1, 60, false, true).unwrap();
        assert_eq!(snapshot.attach.header, format!("Bearer {id}").as_str());
        assert!(!snapshot.due(now) && snapshot.due(now + 541));
        assert!(snapshot.expired(now + 600));
        // Not asked for: the access token, due by its own expiry.
        let access = TokenSnapshot::build(&tokens(Some(id)), 1, 60, false, false).unwrap();
        assert_eq!(access.attach.header, "Bearer access");
        assert!(!access.due(now + 600));
    }

    #[test]
    fn without_a_good_id_token_the_access_token_is_sent() {
        let now = crate::clock::now_secs();
        for id in [
            None,
            Some(id_token(now - 700, now - 100)),
            Some("not.a-jwt".into()),
        ] {
            let snapshot = TokenSnapshot::build(&tokens(id), 1, 60, false, true).unwrap();
            assert_eq!(snapshot.attach.header, "Bearer access");
        }
    }
}
