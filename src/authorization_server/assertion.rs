//! JWTs that others sign and this server accepts: client assertions (`private_key_jwt`,
//! RFC 7523 §2.2), and the JWT-bearer grant (RFC 7523 §2.1) with workload identity tokens
//! (SEP-1933) or enterprise IdPs' ID-JAGs (SEP-990).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::grant::split_scopes;
use super::store::RegisteredClient;
use super::wire::{OAuthError, Params};
use super::AuthorizationServer;
use crate::clock::{now_secs, numeric_date};
use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpClient;
use crate::jwks::{
    audience_matches, check_lifetime, FetchPolicy, KeyCache, KeyError, KeySpec as Keys,
    UnverifiedJwt,
};
use crate::sync::LockExt;

/// RFC 7523 §2.1.
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 7523 §2.2.
pub(super) const CLIENT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The JOSE `typ` of an Identity Assertion JWT Authorization Grant.
const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// The longest a client assertion may live: its `jti` is remembered that long.
const MAX_CLIENT_ASSERTION_LIFETIME: u64 = 3600;
/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY: u64 = 30;
/// `jwks_uri` key sets kept at once; operator-registered clients only, so a generous bound.
const MAX_CLIENT_KEY_SETS: usize = 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const FETCH_POLICY: FetchPolicy = FetchPolicy {
    min_refetch_interval: Duration::from_secs(30),
    max_key_age: Duration::from_secs(3600),
    max_stale: Duration::from_secs(3600),
};

/// The key cache of `issuer`, its keys where `spec` says.
fn key_cache(spec: &Keys, issuer: &str, http: &HttpClient) -> Result<Arc<KeyCache>> {
    KeyCache::new(spec.source(issuer)?, http.clone(), FETCH_POLICY).map(Arc::new)
}

/// A workload identity issuer whose tokens the JWT-bearer grant takes (SEP-1933): Kubernetes
/// service account tokens, SPIFFE JWT-SVIDs, a CI system's OIDC tokens. Only the subjects
/// named get tokens, each with at most the scopes named for it.
///
/// ```
/// use tower_mcp_oauth::authorization_server::WorkloadIssuer;
///
/// let cluster = WorkloadIssuer::new("https://kubernetes.default.svc")
///     .jwks_url("https://10.0.0.1/openid/v1/jwks")
///     .audience("mcp-auth") // the audience the projected token was requested for
///     .subject("system:serviceaccount:ci:deployer", ["mcp:tools"])
///     .subject("system:serviceaccount:agents:*", ["mcp:read"]);
/// # let _ = cluster;
/// ```
#[derive(Debug, Clone)]
pub struct WorkloadIssuer {
    issuer: String,
    keys: Keys,
    audiences: Vec<String>,
    subjects: Vec<SubjectRule>,
    subject_prefix: String,
}

#[derive(Debug, Clone)]
struct SubjectRule {
    subject: String,
    /// A trailing `*`: the subject is a prefix.
    prefix: bool,
    scopes: Vec<String>,
}

impl SubjectRule {
    fn matches(&self, subject: &str) -> bool {
        if self.prefix {
            subject.starts_with(&self.subject) && subject.len() > self.subject.len()
        } else {
            subject == self.subject
        }
    }
}

impl WorkloadIssuer {
    /// The issuer identifier, as its tokens name it in `iss`. Its keys are found through its
    /// metadata unless [`jwks_url`](Self::jwks_url) or [`jwks`](Self::jwks) says otherwise.
    /// Its tokens must name this server (its issuer or token endpoint) in `aud`, or an
    /// [`audience`](Self::audience) configured here.
    ///
    /// The subjects of its tokens are qualified by it (`{issuer}#{sub}`), so a workload never
    /// names a user who signs in interactively; [`subject_prefix`](Self::subject_prefix)
    /// chooses another prefix.
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        Self {
            subject_prefix: format!("{issuer}#"),
            issuer,
            keys: Keys::Discover,
            audiences: Vec::new(),
            subjects: Vec::new(),
        }
    }

    /// Puts `prefix` before the subjects of the tokens issued on this issuer's word, instead
    /// of `{issuer}#` (`k8s-prod:` makes `system:serviceaccount:ci:deployer` the user
    /// `k8s-prod:system:serviceaccount:ci:deployer`); subject rules still match the token's
    /// own `sub`. Distinct when several issuers are trusted, none the start of another:
    /// otherwise two of them could name one user. An empty prefix shares the subject names of
    /// interactive users: only for an issuer whose subjects cannot be theirs.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Where the keys are, instead of the issuer's metadata.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys = Keys::Url(url.into());
        self
    }

    /// The keys themselves, a JWKS document of public keys: never fetched.
    pub fn jwks(mut self, jwks: Value) -> Self {
        self.keys = Keys::Inline(jwks);
        self
    }

    /// Another accepted `aud`, besides this server's issuer and token endpoint.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Lets `subject` (the token's `sub`; a trailing `*` makes it a prefix) get tokens with
    /// at most `scopes`. A subject no rule names gets nothing.
    pub fn subject<I, T>(mut self, subject: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let subject = subject.into();
        let (subject, prefix) = match subject.strip_suffix('*') {
            Some(prefix) => (prefix.to_owned(), true),
            None => (subject, false),
        };
        self.subjects.push(SubjectRule {
            subject,
            prefix,
            scopes: scopes.into_iter().map(Into::into).collect(),
        });
        self
    }
}

/// An enterprise IdP whose ID-JAGs (Identity Assertion JWT Authorization Grants, SEP-990) the
/// JWT-bearer grant takes: the IdP vouches that its user may use this server through the
/// client the ID-JAG names.
#[derive(Debug, Clone)]
pub struct EnterpriseIdp {
    issuer: String,
    keys: Keys,
    subject_prefix: String,
}

impl EnterpriseIdp {
    /// The IdP's issuer identifier; its keys are found through its metadata unless
    /// [`jwks_url`](Self::jwks_url) or [`jwks`](Self::jwks) says otherwise.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            keys: Keys::Discover,
            subject_prefix: String::new(),
        }
    }

    /// Puts `prefix` before the subjects of the tokens issued on this IdP's word. Required,
    /// and distinct, when several issuers are trusted (see
    /// [`WorkloadIssuer::subject_prefix`]).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Where the keys are, instead of the IdP's metadata.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys = Keys::Url(url.into());
        self
    }

    /// The keys themselves, a JWKS document of public keys: never fetched.
    pub fn jwks(mut self, jwks: Value) -> Self {
        self.keys = Keys::Inline(jwks);
        self
    }
}

/// The issuers this server takes assertions from, with their keys, and the key sets of
/// `private_key_jwt` clients that registered a `jwks_uri`.
pub(super) struct Trust {
    workloads: Vec<(WorkloadIssuer, Arc<KeyCache>)>,
    idps: Vec<(EnterpriseIdp, Arc<KeyCache>)>,
    client_keys: Mutex<HashMap<String, Arc<KeyCache>>>,
    http: HttpClient,
}

impl Trust {
    pub(super) fn new(workloads: &[WorkloadIssuer], idps: &[EnterpriseIdp]) -> Result<Self> {
        let prefixes: Vec<&str> = workloads
            .iter()
            .map(|w| w.subject_prefix.as_str())
            .chain(idps.iter().map(|i| i.subject_prefix.as_str()))
            .collect();
        check_subject_prefixes(&prefixes)?;
        let http = HttpClient::new().timeout(FETCH_TIMEOUT);
        let workloads = workloads
            .iter()
            .map(|w| Ok((w.clone(), key_cache(&w.keys, &w.issuer, &http)?)))
            .collect::<Result<_>>()?;
        let idps = idps
            .iter()
            .map(|i| Ok((i.clone(), key_cache(&i.keys, &i.issuer, &http)?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            workloads,
            idps,
            client_keys: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// Whether the JWT-bearer grant is offered.
    pub(super) fn takes_jwt_bearer(&self) -> bool {
        !self.workloads.is_empty() || !self.idps.is_empty()
    }

    fn client_keys(&self, client: &RegisteredClient) -> Result<Arc<KeyCache>> {
        match (&client.metadata.jwks, &client.metadata.jwks_uri) {
            (Some(jwks), _) => {
                key_cache(&Keys::Inline(jwks.clone()), &client.client_id, &self.http)
            }
            (None, Some(uri)) => {
                let mut sets = self.client_keys.locked();
                if let Some(keys) = sets.get(uri) {
                    return Ok(keys.clone());
                }
                let keys = key_cache(&Keys::Url(uri.clone()), &client.client_id, &self.http)?;
                if sets.len() >= MAX_CLIENT_KEY_SETS {
                    sets.clear();
                }
                sets.insert(uri.clone(), keys.clone());
                Ok(keys)
            }
            (None, None) => Err(Error::new(
                ErrorKind::Config,
                "the client registered no public keys",
            )),
        }
    }
}

/// With several trusted issuers, each needs a prefix that no other's starts with: `a:` and
/// `a:b:` would let `a:` + `b:x` and `a:b:` + `x` name one user.
fn check_subject_prefixes(prefixes: &[&str]) -> Result<()> {
    if prefixes.len() < 2 {
        return Ok(());
    }
    let clash = prefixes.iter().enumerate().any(|(i, a)| {
        a.is_empty()
            || prefixes
                .iter()
                .enumerate()
                .any(|(j, b)| i != j && b.starts_with(a))
    });
    if clash {
        return Err(Error::new(
            ErrorKind::Config,
            "several issuers are trusted for the JWT-bearer grant: give each a subject_prefix, \
             none the start of another, so that two of them cannot name one user",
        ));
    }
    Ok(())
}

/// 16 bytes naming one use of a `jti` by one issuer, for the replay cache.
fn replay_id(kind: &str, issuer: &str, jti: &str) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(kind)
        .chain_update([0])
        .chain_update(issuer)
        .chain_update([0])
        .chain_update(jti)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

impl AuthorizationServer {
    /// What `aud` a workload token meant for this server may name: its issuer or its token
    /// endpoint (as Kubernetes and CI systems are configured to ask for).
    fn own_audiences(&self) -> Vec<String> {
        vec![self.issuer().to_owned(), format!("{}/token", self.issuer())]
    }

    /// Marks `jti` of `issuer` used until `expires_at`; `false` when it was used before.
    async fn first_use(
        &self,
        kind: &str,
        issuer: &str,
        jti: &str,
        expires_at: u64,
    ) -> std::result::Result<bool, OAuthError> {
        let id = replay_id(kind, issuer, jti);
        Ok(self
            .inner
            .config
            .assertion_replay
            .first_use(issuer, id, expires_at.saturating_add(LEEWAY), now_secs())
            .await?)
    }

    /// RFC 7523 §3 for a client assertion: signed by a key the client registered, `iss` and
    /// `sub` the client, `aud` this server, short-lived, and its `jti` never seen before.
    pub(super) async fn check_client_assertion(
        &self,
        client: &RegisteredClient,
        jwt: &UnverifiedJwt<'_>,
    ) -> std::result::Result<(), OAuthError> {
        let refuse = |why: &str| OAuthError::invalid_client(format!("client assertion: {why}"));
        let keys = self.inner.trust.client_keys(client).map_err(|error| {
            tracing::warn!(%error, client_id = %client.client_id, "client keys unusable");
            refuse("the client's registered keys are unusable")
        })?;
        keys.verify(jwt).await.map_err(|error| match error {
            KeyError::Unavailable(why) => {
                tracing::warn!(why, client_id = %client.client_id, "client keys unavailable");
                refuse("the client's keys cannot be fetched")
            }
            KeyError::Invalid(why) => refuse(why),
        })?;
        let id = client.client_id.as_str();
        if jwt.claim("iss") != Some(id) || jwt.claim("sub") != Some(id) {
            return Err(refuse("iss and sub must be the client_id"));
        }
        // draft-ietf-oauth-rfc7523bis: the issuer alone, as one string, so an assertion made
        // for another server that names our token endpoint cannot be replayed here.
        if jwt.claims.get("aud").and_then(serde_json::Value::as_str) != Some(self.issuer()) {
            return Err(refuse(
                "aud must be this server's issuer, as a single string",
            ));
        }
        let now = now_secs();
        let exp = check_lifetime(&jwt.claims, now, LEEWAY).map_err(refuse)?;
        if exp > now + MAX_CLIENT_ASSERTION_LIFETIME {
            return Err(refuse("it may live an hour at most"));
        }
        let jti = jwt.claim("jti").ok_or_else(|| refuse("it has no jti"))?;
        if !self.first_use("client_assertion", id, jti, exp).await? {
            return Err(refuse("it was used before"));
        }
        Ok(())
    }

    /// The JWT-bearer grant: who the assertion vouches for, with which scopes, for which
    /// resource. An ID-JAG (`typ` `oauth-id-jag+jwt`) must come from an enterprise IdP, any
    /// other assertion from a workload issuer.
    pub(super) async fn check_grant_assertion(
        &self,
        client: &RegisteredClient,
        params: &Params,
    ) -> std::result::Result<AssertionGrant, OAuthError> {
        let assertion = params.require("assertion")?;
        let jwt = UnverifiedJwt::parse(assertion)
            .map_err(|why| OAuthError::invalid_grant(format!("assertion: {why}")))?;
        let issuer = jwt
            .claim("iss")
            .ok_or_else(|| OAuthError::invalid_grant("assertion: it has no iss"))?;
        // RFC 7515 §4.1.9: `typ` may carry the `application/` prefix.
        let typ = jwt
            .header
            .typ
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        let trust = &self.inner.trust;
        let untrusted = || OAuthError::invalid_grant("assertion: its issuer is not trusted here");
        let grant = if typ == ID_JAG_TYP {
            // The ID-JAG names the client: only that client, authenticated, may redeem it.
            if client.auth_method == super::store::ClientAuthMethod::None {
                return Err(OAuthError::new(
                    "unauthorized_client",
                    "an ID-JAG is redeemed by a confidential client",
                ));
            }
            let (idp, keys) = trust
                .idps
                .iter()
                .find(|(idp, _)| idp.issuer == issuer)
                .ok_or_else(untrusted)?;
            verify_signature(keys, &jwt).await?;
            let mut grant = self.check_id_jag(client, &jwt, params).await?;
            grant.subject.insert_str(0, &idp.subject_prefix);
            grant
        } else if matches!(typ, "at+jwt" | "dpop+jwt") || typ.ends_with("id-jag+jwt") {
            // Access tokens, proofs and malformed ID-JAGs are no workload identity.
            return Err(OAuthError::invalid_grant(
                "assertion: this kind of JWT is not a grant",
            ));
        } else {
            let (workload, keys) = trust
                .workloads
                .iter()
                .find(|(w, _)| w.issuer == issuer)
                .ok_or_else(untrusted)?;
            verify_signature(keys, &jwt).await?;
            let mut grant = self.check_workload_token(workload, &jwt, params)?;
            grant.subject.insert_str(0, &workload.subject_prefix);
            grant
        };
        self.check_scopes(client, &grant.scopes)
            .map_err(|d| OAuthError::new("invalid_scope", d))?;
        Ok(grant)
    }

    /// SEP-1933: a workload token from a trusted issuer, for this server, naming a subject a
    /// rule lets in; scopes at most the rule's.
    fn check_workload_token(
        &self,
        workload: &WorkloadIssuer,
        jwt: &UnverifiedJwt<'_>,
        params: &Params,
    ) -> std::result::Result<AssertionGrant, OAuthError> {
        let refuse = |why: &str| OAuthError::invalid_grant(format!("assertion: {why}"));
        check_lifetime(&jwt.claims, now_secs(), LEEWAY).map_err(refuse)?;
        let mut audiences = self.own_audiences();
        audiences.extend(workload.audiences.iter().cloned());
        if !jwt
            .claims
            .get("aud")
            .is_some_and(|aud| audience_matches(aud, &audiences))
        {
            return Err(refuse("its aud does not name this server"));
        }
        let subject = jwt.claim("sub").ok_or_else(|| refuse("it has no sub"))?;
        let rule = workload
            .subjects
            .iter()
            .find(|rule| rule.matches(subject))
            .ok_or_else(|| {
                OAuthError::new(
                    "unauthorized_client",
                    "the workload is not allowed tokens here",
                )
            })?;
        let scopes = narrow_scopes(params.get("scope"), &rule.scopes)?;
        let resource = self
            .resolve_resource(params.get("resource"))
            .map_err(|d| OAuthError::new("invalid_target", d))?;
        Ok(AssertionGrant {
            subject: subject.to_owned(),
            scopes,
            resource,
        })
    }

    /// SEP-990 / the ID-JAG draft §4.3: `aud` this server, `client_id` the authenticated
    /// client, `resource` one of ours, `sub`, `iat` and a `jti` never seen before; scopes at
    /// most those the IdP granted.
    async fn check_id_jag(
        &self,
        client: &RegisteredClient,
        jwt: &UnverifiedJwt<'_>,
        params: &Params,
    ) -> std::result::Result<AssertionGrant, OAuthError> {
        let refuse = |why: &str| OAuthError::invalid_grant(format!("ID-JAG: {why}"));
        let exp = check_lifetime(&jwt.claims, now_secs(), LEEWAY).map_err(refuse)?;
        let issued = jwt
            .claims
            .get("iat")
            .and_then(numeric_date)
            .ok_or_else(|| refuse("it has no iat"))?;
        if issued > now_secs() + LEEWAY {
            return Err(refuse("it is issued in the future"));
        }
        if !jwt
            .claims
            .get("aud")
            .is_some_and(|aud| audience_matches(aud, &[self.issuer().to_owned()]))
        {
            return Err(refuse("its aud is not this authorization server"));
        }
        if jwt.claim("client_id") != Some(client.client_id.as_str()) {
            return Err(refuse("it was issued to another client"));
        }
        let subject = jwt.claim("sub").ok_or_else(|| refuse("it has no sub"))?;
        let resource = match (jwt.claims.get("resource"), params.get("resource")) {
            (None, requested) => self
                .resolve_resource(requested)
                .map_err(|d| OAuthError::new("invalid_target", d))?,
            (Some(granted), requested) => {
                let granted = granted
                    .as_str()
                    .ok_or_else(|| refuse("its resource is not one URI"))?;
                let resolved = self
                    .resolve_resource(Some(granted))
                    .map_err(|_| refuse("its resource is not served here"))?;
                if requested.is_some_and(|r| {
                    self.resolve_resource(Some(r)).ok().as_ref() != Some(&resolved)
                }) {
                    return Err(OAuthError::new(
                        "invalid_target",
                        "resource differs from the ID-JAG's",
                    ));
                }
                resolved
            }
        };
        let scopes = match jwt.claims.get("scope") {
            None => {
                let requested = split_scopes(params.get("scope"));
                if requested.is_empty() {
                    self.inner.config.default_scopes.clone().unwrap_or_default()
                } else {
                    requested
                }
            }
            Some(granted) => {
                let granted = granted
                    .as_str()
                    .ok_or_else(|| refuse("its scope is not a string"))?;
                narrow_scopes(params.get("scope"), &split_scopes(Some(granted)))?
            }
        };
        let jti = jwt.claim("jti").ok_or_else(|| refuse("it has no jti"))?;
        let idp = jwt.claim("iss").unwrap_or_default();
        if !self.first_use("id_jag", idp, jti, exp).await? {
            return Err(refuse("it was used before"));
        }
        Ok(AssertionGrant {
            subject: subject.to_owned(),
            scopes,
            resource,
        })
    }
}

/// What a JWT-bearer grant's assertion allows.
pub(super) struct AssertionGrant {
    pub(super) subject: String,
    pub(super) scopes: Vec<String>,
    pub(super) resource: String,
}

async fn verify_signature(
    keys: &KeyCache,
    jwt: &UnverifiedJwt<'_>,
) -> std::result::Result<(), OAuthError> {
    keys.verify(jwt).await.map_err(|error| match error {
        KeyError::Unavailable(why) => {
            tracing::warn!(why, "assertion issuer keys unavailable");
            OAuthError::new(
                "temporarily_unavailable",
                "the assertion issuer's keys cannot be fetched; try again later",
            )
        }
        KeyError::Invalid(why) => OAuthError::invalid_grant(format!("assertion: {why}")),
    })
}

/// The requested scopes when all are `allowed`; `allowed` when none are requested.
fn narrow_scopes(
    requested: Option<&str>,
    allowed: &[String],
) -> std::result::Result<Vec<String>, OAuthError> {
    let requested = split_scopes(requested);
    if requested.is_empty() {
        return Ok(allowed.to_vec());
    }
    match requested.iter().find(|s| !allowed.contains(s)) {
        Some(extra) => Err(OAuthError::new(
            "invalid_scope",
            format!("the scope {extra} is not granted to this assertion"),
        )),
        None => Ok(requested),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_rules_match_exactly_or_by_a_strict_prefix() {
        let issuer = WorkloadIssuer::new("https://k8s")
            .subject("system:serviceaccount:ci:deployer", ["a"])
            .subject("spiffe://example.org/agents/*", ["b"]);
        let matching = |sub: &str| {
            issuer
                .subjects
                .iter()
                .find(|r| r.matches(sub))
                .map(|r| r.scopes.clone())
        };
        assert_eq!(
            matching("system:serviceaccount:ci:deployer"),
            Some(vec!["a".into()])
        );
        assert_eq!(matching("system:serviceaccount:ci:deployer2"), None);
        assert_eq!(
            matching("spiffe://example.org/agents/x"),
            Some(vec!["b".into()])
        );
        assert_eq!(matching("spiffe://example.org/agents/"), None);
        assert_eq!(matching("spiffe://example.org/agent"), None);
    }

    #[test]
    fn scopes_narrow_to_what_is_allowed() {
        let allowed = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(narrow_scopes(None, &allowed).unwrap(), allowed);
        assert_eq!(
            narrow_scopes(Some("b"), &allowed).unwrap(),
            vec!["b".to_owned()]
        );
        assert_eq!(
            narrow_scopes(Some("b c"), &allowed).unwrap_err().code,
            "invalid_scope"
        );
    }

    #[test]
    fn replay_ids_separate_kinds_issuers_and_jtis() {
        let base = replay_id("client_assertion", "c", "j");
        assert_ne!(base, replay_id("id_jag", "c", "j"));
        assert_ne!(base, replay_id("client_assertion", "c2", "j"));
        assert_ne!(base, replay_id("client_assertion", "c", "j2"));
        // The separator keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(replay_id("k", "ab", "c"), replay_id("k", "a", "bc"));
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::check_subject_prefixes;

    #[test]
    fn several_issuers_need_distinct_prefixes_none_the_start_of_another() {
        assert!(check_subject_prefixes(&[]).is_ok());
        assert!(
            check_subject_prefixes(&[""]).is_ok(),
            "one issuer needs none"
        );
        assert!(check_subject_prefixes(&["k8s:", "idp:"]).is_ok());
        for clash in [
            &["", "idp:"][..],
            &["a:", "a:"],
            &["a:", "a:b:"],
            &["a:b:", "a:"],
        ] {
            assert!(check_subject_prefixes(clash).is_err(), "{clash:?}");
        }
    }
}
