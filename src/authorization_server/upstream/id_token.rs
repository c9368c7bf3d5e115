//! The OpenID Connect ID token check (Core §3.1.3.7): signed by the provider's key with an
//! asymmetric algorithm, issued by it, for our client, for this sign-in's `nonce`, and fresh.

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::clock::numeric_date;
use crate::jwks::{check_lifetime, KeyCache, KeyError, UnverifiedJwt};

/// Clock skew allowed between the provider and us.
const LEEWAY_SECS: u64 = 60;
/// An ID token is minted when the code is redeemed, a moment ago: older is refused.
const MAX_AGE_SECS: u64 = 600;
/// OpenID Connect Core §2: `sub` is at most 255 ASCII characters.
const MAX_SUBJECT_LEN: usize = 255;

/// What this sign-in's ID token must say.
pub(super) struct Expected<'a> {
    pub(super) issuer: &'a str,
    pub(super) client_id: &'a str,
    pub(super) nonce: &'a str,
    pub(super) now: u64,
}

/// Why an ID token was refused. The text names the failed check, never the token.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IdTokenError {
    /// The provider's keys cannot be had: try again later.
    Unavailable,
    /// The token is not acceptable.
    Invalid(&'static str),
}

impl IdTokenError {
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable => "the identity provider's keys could not be fetched",
            Self::Invalid(reason) => reason,
        }
    }
}

/// Checks `token` and returns its claims.
pub(super) async fn check(
    token: &str,
    keys: &KeyCache,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    let jwt = UnverifiedJwt::parse(token).map_err(IdTokenError::Invalid)?;
    keys.verify(&jwt).await.map_err(|e| match e {
        KeyError::Unavailable(_) => IdTokenError::Unavailable,
        KeyError::Invalid(reason) => IdTokenError::Invalid(reason),
    })?;
    check_claims(&jwt.claims, expected).map_err(IdTokenError::Invalid)?;
    Ok(jwt.claims)
}

/// The claim checks, once the signature holds.
pub(super) fn check_claims(
    claims: &Map<String, Value>,
    expected: &Expected<'_>,
) -> Result<(), &'static str> {
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err("the ID token was issued by another provider (iss)");
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => return Err("the ID token names no audience (aud)"),
    };
    if !audiences.contains(&expected.client_id) {
        return Err("the ID token is for another client (aud)");
    }
    match claims.get("azp") {
        Some(azp) if azp.as_str() != Some(expected.client_id) => {
            return Err("the ID token was issued to another party (azp)")
        }
        None if audiences.len() > 1 => {
            return Err("the ID token has several audiences and no authorized party (azp)")
        }
        _ => {}
    }
    let nonce_ok = claims
        .get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|nonce| bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())));
    if !nonce_ok {
        return Err("the ID token is not for this sign-in (nonce)");
    }
    check_lifetime(claims, expected.now, LEEWAY_SECS)?;
    let iat = claims
        .get("iat")
        .and_then(numeric_date)
        .ok_or("the ID token has no issue time (iat)")?;
    if iat > expected.now.saturating_add(LEEWAY_SECS) {
        return Err("the ID token was issued in the future (iat)");
    }
    if iat.saturating_add(MAX_AGE_SECS + LEEWAY_SECS) < expected.now {
        return Err("the ID token is too old (iat)");
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() && sub.len() <= MAX_SUBJECT_LEN => Ok(()),
        _ => Err("the ID token names no valid subject (sub)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://idp.example",
            client_id: "mcp-as",
            nonce: "n-0S6_WzA2Mj",
            now: NOW,
        }
    }

    fn good() -> Map<String, Value> {
        json!({
            "iss": "https://idp.example", "aud": "mcp-as", "sub": "alice",
            "nonce": "n-0S6_WzA2Mj", "iat": NOW - 5, "exp": NOW + 3600
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn with(name: &str, value: Value) -> Map<String, Value> {
        let mut claims = good();
        claims.insert(name.into(), value);
        claims
    }

    fn without(name: &str) -> Map<String, Value> {
        let mut claims = good();
        claims.remove(name);
        claims
    }

    #[test]
    fn a_good_token_passes_and_each_wrong_claim_is_named() {
        assert_eq!(check_claims(&good(), &expected()), Ok(()));
        let refused = |claims: Map<String, Value>| check_claims(&claims, &expected()).unwrap_err();
        assert!(refused(with("iss", json!("https://evil.example"))).contains("(iss)"));
        assert!(refused(without("iss")).contains("(iss)"));
        assert!(refused(with("aud", json!("someone-else"))).contains("(aud)"));
        assert!(refused(without("aud")).contains("(aud)"));
        assert!(refused(with("nonce", json!("another"))).contains("(nonce)"));
        assert!(refused(without("nonce")).contains("(nonce)"));
        assert!(refused(with("exp", json!(NOW - 120))).contains("expired"));
        assert!(refused(without("exp")).contains("exp"));
        assert!(refused(with("iat", json!(NOW + 600))).contains("future"));
        assert!(refused(with("iat", json!(NOW - 7200))).contains("too old"));
        assert!(refused(without("iat")).contains("(iat)"));
        assert!(refused(with("sub", json!(""))).contains("(sub)"));
        assert!(refused(with("sub", json!(42))).contains("(sub)"));
        assert!(refused(with("azp", json!("someone-else"))).contains("(azp)"));
    }

    #[test]
    fn several_audiences_need_our_azp() {
        let several = with("aud", json!(["mcp-as", "other"]));
        assert!(check_claims(&several, &expected())
            .unwrap_err()
            .contains("azp"));
        let mut named = several.clone();
        named.insert("azp".into(), json!("mcp-as"));
        assert_eq!(check_claims(&named, &expected()), Ok(()));
        assert_eq!(
            check_claims(&with("aud", json!(["mcp-as"])), &expected()),
            Ok(())
        );
    }

    proptest! {
        /// Any claim set passes only if it holds every expected value: the check never panics
        /// and never passes a token missing one.
        #[test]
        fn arbitrary_claims_pass_only_when_they_say_what_is_expected(
            iss in prop::option::of(prop_oneof![Just("https://idp.example".to_owned()), ".{0,20}"]),
            aud in prop::option::of(prop_oneof![Just("mcp-as".to_owned()), ".{0,12}"]),
            nonce in prop::option::of(prop_oneof![Just("n-0S6_WzA2Mj".to_owned()), ".{0,12}"]),
            exp in prop::option::of(0u64..2 * NOW),
            iat in prop::option::of(0u64..2 * NOW),
            sub in prop::option::of(".{0,300}"),
            extra in prop::collection::btree_map("x_[a-z]{1,6}", any::<i64>(), 0..4),
        ) {
            let mut claims: Map<String, Value> =
                extra.into_iter().map(|(k, v)| (k, json!(v))).collect();
            for (name, value) in [("iss", iss.clone()), ("aud", aud.clone()), ("nonce", nonce.clone()), ("sub", sub.clone())] {
                match value { Some(v) => { claims.insert(name.into(), json!(v)); } None => { claims.remove(name); } }
            }
            for (name, value) in [("exp", exp), ("iat", iat)] {
                match value { Some(v) => { claims.insert(name.into(), json!(v)); } None => { claims.remove(name); } }
            }
            let passed = check_claims(&claims, &expected()).is_ok();
            let should = iss.as_deref() == Some("https://idp.example")
                && aud.as_deref() == Some("mcp-as")
                && nonce.as_deref() == Some("n-0S6_WzA2Mj")
                && exp.is_some_and(|e| e + LEEWAY_SECS > NOW)
                && iat.is_some_and(|i| i <= NOW + LEEWAY_SECS && i + MAX_AGE_SECS + LEEWAY_SECS >= NOW)
                && sub.as_deref().is_some_and(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_LEN);
            prop_assert_eq!(passed, should);
        }
    }
}
