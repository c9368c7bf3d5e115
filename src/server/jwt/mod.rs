//! [`JwtVerifier`]: JWT access tokens checked against their issuers' keys.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::Value;
use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpClient;
use crate::jwks::{
    audience_matches, check_lifetime, FetchPolicy, KeyCache, KeyError, KeySpec, UnverifiedJwt,
    ASYMMETRIC,
};
use crate::server::verify::{now_secs, AuthData, AuthInfo, TokenVerifier, VerifyError};
use crate::BoxFuture;

/// Unknown `kid`s trigger at most one JWKS fetch per this interval.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Default clock skew allowed on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Keys older than this are fetched again, so a key the issuer withdrew stops being trusted.
pub const DEFAULT_MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// How long past their age keys stay trusted while the issuer cannot be reached, by default.
pub const DEFAULT_MAX_STALE_KEY_AGE: Duration = Duration::from_secs(3600);
/// JWKS and discovery calls give up after this long (a request waits for them).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a template's `{tenant}` may be replaced with: no `/`, `?`, `#` or `@` can sneak in.
fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 128
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && tenant != "."
        && tenant != ".."
}

const TENANT: &str = "{tenant}";

/// An issuer a [`JwtVerifier`] trusts, with where its keys are and its quirks.
///
/// ```
/// use tower_mcp_oauth::server::{JwtVerifier, TrustedIssuer};
///
/// # fn example() -> tower_mcp_oauth::Result<()> {
/// // Entra ID v2, multi-tenant: two customer tenants (their directory ids, as `iss` names
/// // them; these two are placeholders), their keys at the common JWKS. Microsoft's own
/// // tenant for personal accounts, 9188040d-6c67-4c5b-b112-36a304b66dad, belongs here only
/// // to let in anyone with a personal Microsoft account.
/// let entra = TrustedIssuer::tenants(
///     "https://login.microsoftonline.com/{tenant}/v2.0",
///     ["0f6b1a7e-2c4d-4e8f-9a1b-3c5d7e9f1a2b", "5e2d8c4a-7b1f-4d3e-8a6c-9b0e2f4d6a8c"],
/// )?
/// .jwks_url("https://login.microsoftonline.com/common/discovery/v2.0/keys");
/// let verifier = JwtVerifier::for_audience("https://mcp.example.com/mcp")
///     .audience("api://mcp-server") // Entra's App ID URI, beside the resource URL
///     .trust(entra)
///     .discover_lazily()?;
/// # let _ = verifier; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// One issuer, or a template's tenants.
    issuers: Vec<String>,
    keys: KeySpec,
    authorized_parties: Option<Vec<String>>,
}

impl TrustedIssuer {
    /// The issuer identifier, exactly as tokens name it in `iss`. Its keys are found through
    /// its metadata unless [`jwks_url`](Self::jwks_url) or [`jwks`](Self::jwks) says otherwise.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuers: vec![issuer.into()],
            keys: KeySpec::Discover,
            authorized_parties: None,
        }
    }

    /// A multi-tenant provider: `template` holds `{tenant}` once (Entra ID v2:
    /// `https://login.microsoftonline.com/{tenant}/v2.0`), and only the listed tenants are
    /// trusted; a token from any other tenant is refused like one from an unknown issuer.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the template does not hold `{tenant}` exactly once, when no
    /// tenant is listed, or when a tenant is more than letters, digits, `-`, `.` and `_`.
    pub fn tenants<I, T>(template: &str, tenants: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        if template.matches(TENANT).count() != 1 {
            return Err(Error::new(
                ErrorKind::Config,
                "an issuer template must hold {tenant} exactly once",
            ));
        }
        let mut issuers = Vec::new();
        for tenant in tenants {
            let tenant = tenant.into();
            if !valid_tenant(&tenant) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{tenant:?} is not a tenant identifier"),
                ));
            }
            issuers.push(template.replace(TENANT, &tenant));
        }
        if issuers.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "an issuer template needs an allow-list of tenants",
            ));
        }
        Ok(Self {
            issuers,
            keys: KeySpec::Discover,
            authorized_parties: None,
        })
    }

    /// Where the keys are, instead of the issuer's metadata. For a template, every tenant
    /// shares this one key set (Entra's common JWKS).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys = KeySpec::Url(url.into());
        self
    }

    /// The keys themselves, a JWKS document (`{"keys": [...]}`) of public keys: never fetched.
    pub fn jwks(mut self, jwks: Value) -> Self {
        self.keys = KeySpec::Inline(jwks);
        self
    }

    /// An explicit opt-in for issuers that put no `aud` in access tokens (Keycloak without an
    /// audience mapper, some Okta and Cognito setups): a token of this issuer **without** `aud`
    /// is accepted when its `azp` (or, lacking one, `client_id`) is one of `authorized_parties`.
    /// A token that has an `aud` must still name this resource. Prefer configuring the issuer
    /// to add the audience: without one, any resource trusting the issuer accepts the token.
    pub fn without_audience<I, T>(mut self, authorized_parties: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.authorized_parties = Some(authorized_parties.into_iter().map(Into::into).collect());
        self
    }
}

/// One trusted issuer identifier and its keys.
struct Trusted {
    issuer: String,
    keys: Arc<KeyCache>,
    authorized_parties: Option<Vec<String>>,
}

struct Inner {
    issuers: Vec<Trusted>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    require_at_jwt: bool,
}

/// [`JwtVerifier`]: JWT access tokens checked against their issuers' keys.
///
/// - Keys come from the configured JWKS URL or document, or from `jwks_uri` in the issuer's
///   metadata (RFC 8414 / OpenID Connect discovery). They are cached, and fetched again when a
///   token names an unknown `kid`, at most once per [`DEFAULT_MIN_REFETCH_INTERVAL`].
/// - Several issuers may be trusted ([`JwtVerifierBuilder::trust`]), each with its own keys,
///   tenants of a multi-tenant provider among them ([`TrustedIssuer::tenants`]). A token's
///   `iss` picks the keys; a token from an issuer nobody configured is refused.
/// - Only asymmetric algorithms are accepted (RS*, PS*, ES256, ES384, EdDSA): never `none`, never
///   an HMAC algorithm, so a token "signed" with the public key as an HMAC secret goes nowhere.
///   The key's type and declared `alg` must match the token's.
/// - `aud` must name the resource (RFC 8707) or another configured audience, unless the
///   issuer opted out of `aud` ([`TrustedIssuer::without_audience`]); `exp` is required, and
///   `exp` and `nbf` are checked with a small leeway. Optionally `typ` must be `at+jwt`
///   (RFC 9068).
/// - A JWKS that cannot be fetched makes the verifier unavailable (503), never permissive.
///
/// Verifies JWT access tokens. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self
            .inner
            .issuers
            .iter()
            .map(|t| t.issuer.as_str())
            .collect();
        f.debug_struct("JwtVerifier")
            .field("issuers", &issuers)
            .field("audiences", &self.inner.audiences)
            .field("algorithms", &self.inner.algorithms)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtVerifier`].
#[derive(Debug, Clone)]
pub struct JwtVerifierBuilder {
    issuers: Vec<TrustedIssuer>,
    audiences: Vec<String>,
    http: HttpClient,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    require_at_jwt: bool,
    min_refetch_interval: Duration,
    max_key_age: Duration,
    max_stale_key_age: Duration,
}

impl JwtVerifier {
    /// Tokens from `issuer` for the resource `audience` (the MCP server's canonical URL).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> JwtVerifierBuilder {
        Self::for_audience(audience).trust(TrustedIssuer::new(issuer))
    }

    /// Tokens for the resource `audience`, from the issuers then named with
    /// [`trust`](JwtVerifierBuilder::trust).
    pub fn for_audience(audience: impl Into<String>) -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            issuers: Vec::new(),
            audiences: vec![audience.into()],
            http: HttpClient::new().timeout(DEFAULT_FETCH_TIMEOUT),
            algorithms: ASYMMETRIC.to_vec(),
            leeway: DEFAULT_LEEWAY_SECS,
            require_at_jwt: false,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            max_key_age: DEFAULT_MAX_KEY_AGE,
            max_stale_key_age: DEFAULT_MAX_STALE_KEY_AGE,
        }
    }
}

impl JwtVerifierBuilder {
    /// Where the keys of the first issuer are, when not discovered.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        if let Some(first) = self.issuers.first_mut() {
            first.keys = KeySpec::Url(url.into());
        }
        self
    }

    /// The keys of the first issuer, as a JWKS document: never fetched.
    pub fn jwks(mut self, jwks: Value) -> Self {
        if let Some(first) = self.issuers.first_mut() {
            first.keys = KeySpec::Inline(jwks);
        }
        self
    }

    /// Also trusts `issuer` (see [`TrustedIssuer`]).
    pub fn trust(mut self, issuer: TrustedIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Also accepts tokens whose `aud` is `audience` (Entra ID's `api://…` App ID URI, an
    /// Auth0 API identifier), beside the resource URL. `RequireBearer` leaves the audience to
    /// this verifier, which accepts every audience it is given: give each resource a verifier
    /// of its own, or a token for one is good at the other.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The HTTP client for discovery and JWKS fetches.
    pub fn http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// Restricts the accepted algorithms; HMAC algorithms are dropped whatever is asked.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms
            .into_iter()
            .filter(|a| ASYMMETRIC.contains(a))
            .collect();
        self
    }

    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Requires the header `typ` to be `at+jwt` (RFC 9068 access tokens).
    pub fn require_at_jwt_typ(mut self, required: bool) -> Self {
        self.require_at_jwt = required;
        self
    }

    /// The least time between two JWKS fetches caused by unknown key ids.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long fetched keys are trusted before the JWKS is fetched again (default one hour).
    pub fn max_key_age(mut self, age: Duration) -> Self {
        self.max_key_age = age;
        self
    }

    /// How long past [`max_key_age`](Self::max_key_age) keys are still trusted while the
    /// issuer cannot be reached (default one hour): an outage does not stop the server at
    /// once, and a key the issuer withdrew is not trusted for ever. Past it, tokens are refused
    /// as unverifiable (503, `Retry-After`) until the keys are fetched again.
    pub fn max_stale_key_age(mut self, age: Duration) -> Self {
        self.max_stale_key_age = age;
        self
    }

    /// Builds with the configured JWKS URLs or documents; keys are fetched on first use.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for an issuer without a JWKS URL or document (use
    /// [`discover`](Self::discover) for those), an invalid JWKS document, no issuer or no
    /// algorithm; [`ErrorKind::InsecureUrl`] for an http URL off loopback.
    pub fn build(self) -> Result<JwtVerifier> {
        if let Some(issuer) = self
            .issuers
            .iter()
            .find(|i| matches!(i.keys, KeySpec::Discover))
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "no JWKS URL for issuer {}: set one, or use discover()",
                    issuer.issuers[0]
                ),
            ));
        }
        self.finish()
    }

    /// Finds `jwks_uri` in the metadata of every issuer without a JWKS URL or document
    /// (RFC 8414 probe order, then OpenID Connect discovery).
    ///
    /// # Errors
    /// Discovery errors: unreachable or malformed metadata, an issuer mismatch, no `jwks_uri`;
    /// and those of [`build`](Self::build).
    pub async fn discover(self) -> Result<JwtVerifier> {
        let verifier = self.finish()?;
        for trusted in &verifier.inner.issuers {
            trusted.keys.resolve().await?;
        }
        Ok(verifier)
    }

    /// Like [`discover`](Self::discover), but returns at once: the issuers' metadata and keys
    /// are fetched on first use. Until they can be, tokens get 503 with `Retry-After` (never a
    /// pass), and the verifier keeps trying, at most every few seconds, so a resource server
    /// can start before its identity provider and recover by itself when it comes up.
    ///
    /// # Errors
    /// Those of [`build`](Self::build), discovery aside.
    pub fn discover_lazily(self) -> Result<JwtVerifier> {
        self.finish()
    }

    fn finish(self) -> Result<JwtVerifier> {
        if self.algorithms.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "no asymmetric algorithm allowed",
            ));
        }
        if self.issuers.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "no issuer is trusted: name one with trust()",
            ));
        }
        let policy = FetchPolicy {
            min_refetch_interval: self.min_refetch_interval,
            max_key_age: self.max_key_age,
            max_stale: self.max_stale_key_age,
        };
        let mut issuers = Vec::new();
        for trusted in self.issuers {
            // A URL or document is one key set for every tenant; discovery is per issuer.
            let shared = match &trusted.keys {
                KeySpec::Discover => None,
                spec => Some(spec.source(&trusted.issuers[0])?),
            };
            let shared = shared
                .map(|source| KeyCache::new(source, self.http.clone(), policy).map(Arc::new))
                .transpose()?;
            for issuer in trusted.issuers {
                let keys = match &shared {
                    Some(keys) => keys.clone(),
                    None => Arc::new(KeyCache::new(
                        trusted.keys.source(&issuer)?,
                        self.http.clone(),
                        policy,
                    )?),
                };
                issuers.push(Trusted {
                    issuer,
                    keys,
                    authorized_parties: trusted.authorized_parties.clone(),
                });
            }
        }
        let mut audiences = Vec::new();
        for audience in self.audiences {
            // An http(s) resource URL with and without its trailing slash; others exactly.
            let trimmed = audience.trim_end_matches('/');
            let web = Url::parse(&audience).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if web && !trimmed.is_empty() {
                audiences.push(trimmed.to_owned());
                audiences.push(format!("{trimmed}/"));
            } else {
                audiences.push(audience);
            }
        }
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                issuers,
                audiences,
                algorithms: self.algorithms,
                leeway: self.leeway,
                require_at_jwt: self.require_at_jwt,
            }),
        })
    }
}

impl Inner {
    async fn verify(&self, token: &str) -> std::result::Result<AuthInfo, VerifyError> {
        let jwt = UnverifiedJwt::parse(token)
            .map_err(|why| VerifyError::invalid(format!("the token is refused: {why}")))?;
        if !self.algorithms.contains(&jwt.header.alg) {
            return Err(VerifyError::invalid(format!(
                "algorithm {:?} is not accepted",
                jwt.header.alg
            )));
        }
        if self.require_at_jwt {
            let typ = jwt.header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
            if typ != "at+jwt" && typ != "application/at+jwt" {
                return Err(VerifyError::invalid("the token's typ is not at+jwt"));
            }
        }
        let issuer = jwt
            .claim("iss")
            .ok_or_else(|| VerifyError::invalid("the token has no iss claim"))?;
        // The unverified `iss` only picks the keys; their signature then vouches for it.
        let trusted = self
            .issuers
            .iter()
            .find(|t| t.issuer == issuer)
            .ok_or_else(|| VerifyError::invalid("the token is from another issuer"))?;
        trusted
            .keys
            .verify(&jwt)
            .await
            .map_err(|error| match error {
                KeyError::Unavailable(why) => VerifyError::unavailable(why),
                KeyError::Invalid(why) => VerifyError::invalid(why),
            })?;
        self.validate_claims(trusted, &jwt.claims, now_secs())?;
        Ok(AuthData::from_claims(jwt.claims))
    }

    /// RFC 7519 / RFC 9068: not expired and not before `nbf` (both with the leeway); for one
    /// of the audiences, or, where the issuer opted out of `aud`, for an authorized party.
    fn validate_claims(
        &self,
        trusted: &Trusted,
        claims: &serde_json::Map<String, Value>,
        now: u64,
    ) -> std::result::Result<(), VerifyError> {
        check_lifetime(claims, now, self.leeway).map_err(VerifyError::invalid)?;
        match (claims.get("aud"), &trusted.authorized_parties) {
            (Some(audience), _) if audience_matches(audience, &self.audiences) => Ok(()),
            (None, Some(parties)) => {
                let party = claims
                    .get("azp")
                    .or_else(|| claims.get("client_id"))
                    .and_then(Value::as_str);
                if party.is_some_and(|p| parties.iter().any(|allowed| allowed == p)) {
                    Ok(())
                } else {
                    Err(VerifyError::invalid(
                        "the token has no aud, and its azp is not an authorized party",
                    ))
                }
            }
            (None, None) => Err(VerifyError::invalid("the token has no aud claim")),
            (Some(_), _) => Err(VerifyError::invalid(
                "the token is not for this resource (aud)",
            )),
        }
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, std::result::Result<AuthInfo, VerifyError>> {
        Box::pin(self.inner.verify(token))
    }

    /// Every token's `aud` is checked against the configured audiences (or, for an issuer
    /// that opted out of `aud`, its `azp` against the authorized parties).
    fn checks_audience(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
