//! The device authorization grant (RFC 8628), for machines without a browser: the user opens
//! a page on any device, types the code shown here, and approves; meanwhile the client polls
//! the token endpoint.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::client::discovery::Discovery;
use crate::client::dpop::DpopSigner;
use crate::client::registration::ClientRegistration;
use crate::client::tokens::{self, TokenEndpoint, TokenSet};
use crate::client::wire::DEVICE_CODE_GRANT;
use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpClient;
use crate::metadata::OAuthErrorResponse;
use crate::secret::Secret;

/// RFC 8628 §3.2: the interval when the server names none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: what each `slow_down` adds.
const SLOW_DOWN: Duration = Duration::from_secs(5);
/// The longest interval or lifetime taken from a server's answer: a bad one must not park the
/// client for days.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Polls in a row that may fail on the way (a laptop waking up, a network change).
const TRANSIENT_FAILURES: u32 = 3;
/// Longest user code shown: RFC 8628 codes are short, and anything else is not one.
const MAX_USER_CODE_CHARS: usize = 64;

/// What the user needs to approve a device authorization: where to go and the code to type.
/// The device code itself stays with the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    /// The authorization server the user signs in at: show it, so the user can tell a page
    /// of theirs from one a server merely passed along.
    pub issuer: String,
    /// The code the user types on the verification page (printable ASCII).
    pub user_code: String,
    /// The page where the user types it.
    pub verification_uri: Url,
    /// The page with the code filled in, when the server gives one (for a QR code or a link).
    pub verification_uri_complete: Option<Url>,
    /// How long the code stays good.
    pub expires_in: Duration,
}

/// Shows the user a [`DeviceAuthorization`]: prints it, draws a QR code, sends a notification.
/// Any `Fn(&DeviceAuthorization)` is one.
pub trait DevicePrompt: Send + Sync + 'static {
    /// Tells the user where to go and which code to type. Called once per authorization.
    fn show(&self, authorization: &DeviceAuthorization);
}

impl<F> DevicePrompt for F
where
    F: Fn(&DeviceAuthorization) + Send + Sync + 'static,
{
    fn show(&self, authorization: &DeviceAuthorization) {
        self(authorization)
    }
}

/// The device authorization response (RFC 8628 §3.2).
#[derive(Deserialize)]
struct DeviceAuthorizationResponse {
    device_code: Secret,
    user_code: String,
    // Some providers (Google) still send the draft's name.
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(deserialize_with = "tokens::lenient_seconds")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "tokens::lenient_seconds")]
    interval: Option<u64>,
}

/// A started device authorization: what the user sees, and what the client polls with.
pub(crate) struct StartedDevice {
    pub(crate) shown: DeviceAuthorization,
    device_code: Secret,
    interval: Duration,
}

/// What a device authorization is for.
pub(crate) struct DeviceRequest<'a> {
    pub(crate) discovery: &'a Discovery,
    pub(crate) client: &'a ClientRegistration,
    pub(crate) scopes: &'a [String],
    pub(crate) resource: Option<&'a str>,
    pub(crate) token_params: &'a [(String, String)],
}

impl DeviceRequest<'_> {
    fn token_endpoint(&self) -> Result<TokenEndpoint<'_>> {
        TokenEndpoint::discovered(self.discovery, self.client, self.token_params)
    }

    /// RFC 8628 §3.1: asks the device authorization endpoint for a device code and a user code.
    pub(crate) async fn start(&self, http: &HttpClient) -> Result<StartedDevice> {
        let url = self
            .discovery
            .authorization_server
            .device_authorization_endpoint
            .as_deref()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    "the authorization server offers no device authorization endpoint",
                )
            })?;
        let parsed = Url::parse(url).map_err(|_| {
            Error::new(
                ErrorKind::InvalidResponse,
                "device_authorization_endpoint is not a URL",
            )
        })?;
        http.check_url(&parsed, "device authorization endpoint")?;
        let endpoint = TokenEndpoint {
            url,
            ..self.token_endpoint()?
        };
        let scope = self.scopes.join(" ");
        let mut params = Vec::new();
        if !scope.is_empty() {
            params.push(("scope", scope.as_str()));
        }
        if let Some(resource) = self.resource {
            params.push(("resource", resource));
        }
        let response =
            tokens::post_client_form(http, &endpoint, "device authorization", &params).await?;
        parse_start(&response, self.discovery.issuer(), http)
    }

    /// RFC 8628 §3.4–3.5: polls the token endpoint until the user answers or the code
    /// expires, at the server's pace.
    pub(crate) async fn poll(
        &self,
        http: &HttpClient,
        started: StartedDevice,
        dpop: Option<&DpopSigner>,
    ) -> Result<TokenSet> {
        let endpoint = self.token_endpoint()?;
        let deadline = tokio::time::Instant::now() + started.shown.expires_in;
        let mut interval = started.interval;
        let mut failures = 0;
        let mut params = vec![("device_code", started.device_code.expose())];
        if let Some(resource) = self.resource {
            params.push(("resource", resource));
        }
        loop {
            // A little past the interval: the server counts whole seconds.
            tokio::time::sleep(interval + Duration::from_millis(100)).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(expired());
            }
            let outcome =
                tokens::request_outcome(http, &endpoint, DEVICE_CODE_GRANT, &params, dpop).await;
            let refusal = match outcome {
                Ok(Ok(response)) => {
                    tracing::info!("the user approved the device authorization");
                    return tokens::token_set(&response, self.scopes, dpop.map(|s| &s.key));
                }
                Ok(Err(refusal)) => refusal,
                Err(error)
                    if matches!(error.kind(), ErrorKind::Http | ErrorKind::Timeout)
                        && failures < TRANSIENT_FAILURES =>
                {
                    failures += 1;
                    tracing::warn!(%error, "a device authorization poll failed; polling again");
                    continue;
                }
                Err(error) => return Err(error),
            };
            failures = 0;
            match refusal.error.as_str() {
                "authorization_pending" => {}
                // Not capped: polling sooner than the server asks would only hear slow_down
                // again; the code's lifetime bounds the wait.
                "slow_down" => interval += SLOW_DOWN,
                "access_denied" => {
                    return Err(Error::new(
                        ErrorKind::AuthorizationDenied,
                        "the user denied the device authorization",
                    ))
                }
                "expired_token" => return Err(expired()),
                _ => return Err(tokens::grant_error("device_code", &refusal)),
            }
        }
    }
}

fn expired() -> Error {
    Error::new(
        ErrorKind::Handler,
        "the device code expired before the user approved; sign in again",
    )
}

fn parse_start(
    response: &oauth2::HttpResponse,
    issuer: &str,
    http: &HttpClient,
) -> Result<StartedDevice> {
    let status = response.status();
    if !status.is_success() {
        return match serde_json::from_slice::<OAuthErrorResponse>(response.body()) {
            Ok(error) => Err(tokens::grant_error("device authorization", &error)),
            Err(_) => Err(Error::new(
                ErrorKind::InvalidResponse,
                format!(
                    "the device authorization endpoint answered {status} without an OAuth error"
                ),
            )),
        };
    }
    let answer: DeviceAuthorizationResponse =
        serde_json::from_slice(response.body()).map_err(|e| {
            // The body holds the device code: keep only the position.
            Error::new(
                ErrorKind::InvalidResponse,
                format!(
                    "the device authorization response is invalid (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
    let invalid = |why: &'static str| Error::new(ErrorKind::InvalidResponse, why);
    // Shown on a terminal: printable ASCII only, so nothing can move the cursor, reorder the
    // text (bidi overrides) or hide characters (zero-width ones).
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| (b' '..=b'~').contains(&b));
    if !printable(&answer.user_code) || answer.user_code.len() > MAX_USER_CODE_CHARS {
        return Err(invalid(
            "the device authorization response has an unusable user_code",
        ));
    }
    if answer.device_code.expose().is_empty() {
        return Err(invalid(
            "the device authorization response has an empty device_code",
        ));
    }
    let page = |uri: &str| -> Result<Url> {
        let url = Url::parse(uri).map_err(|_| invalid("a verification URI is not a URL"))?;
        http.check_url(&url, "verification URI")?;
        Ok(url)
    };
    let verification_uri = page(&answer.verification_uri)?;
    let verification_uri_complete = answer
        .verification_uri_complete
        .as_deref()
        .map(page)
        .transpose()?;
    let expires_in = answer
        .expires_in
        .map(Duration::from_secs)
        .ok_or_else(|| invalid("the device authorization response has no expires_in"))?
        .min(MAX_LIFETIME);
    let interval = answer
        .interval
        .map_or(DEFAULT_INTERVAL, Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_INTERVAL);
    Ok(StartedDevice {
        shown: DeviceAuthorization {
            issuer: issuer.to_owned(),
            user_code: answer.user_code,
            verification_uri,
            verification_uri_complete,
            expires_in,
        },
        device_code: answer.device_code,
        interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse_start_at(response: &oauth2::HttpResponse) -> Result<StartedDevice> {
        parse_start(response, "https://auth.example.com", &HttpClient::new())
    }

    fn answer(status: u16, body: &serde_json::Value) -> oauth2::HttpResponse {
        http::Response::builder()
            .status(status)
            .body(serde_json::to_vec(body).unwrap())
            .unwrap()
    }

    #[test]
    fn a_device_authorization_is_read_with_its_limits() {
        let started = parse_start_at(&answer(
            200,
            &json!({
                "device_code": "DEVICE-SECRET", "user_code": "BCDF-GHJK",
                "verification_uri": "https://auth.example.com/device",
                "verification_uri_complete": "https://auth.example.com/device?user_code=BCDF-GHJK",
                "expires_in": "1800", "interval": 0,
            }),
        ))
        .unwrap();
        assert_eq!(started.shown.user_code, "BCDF-GHJK");
        assert_eq!(started.shown.expires_in, Duration::from_secs(1800));
        assert_eq!(
            started.interval,
            Duration::from_secs(1),
            "at least a second"
        );
        assert!(!format!("{:?}", started.shown).contains("DEVICE-SECRET"));

        let google = parse_start_at(&answer(
            200,
            &json!({
                "device_code": "d", "user_code": "ABC-DEF",
                "verification_url": "https://www.google.com/device", "expires_in": 1800,
            }),
        ))
        .unwrap();
        assert_eq!(google.interval, DEFAULT_INTERVAL);
    }

    #[test]
    fn unusable_answers_are_typed_errors() {
        let base = json!({
            "device_code": "d", "user_code": "BCDF-GHJK",
            "verification_uri": "https://auth.example.com/device", "expires_in": 600,
        });
        for (field, value, kind) in [
            (
                "user_code",
                json!("BCDF\u{1b}[2J"),
                ErrorKind::InvalidResponse,
            ),
            ("user_code", json!(""), ErrorKind::InvalidResponse),
            (
                "verification_uri",
                json!("http://evil.example.com/device"),
                ErrorKind::InsecureUrl,
            ),
            (
                "verification_uri",
                json!("not a url"),
                ErrorKind::InvalidResponse,
            ),
            ("device_code", json!(""), ErrorKind::InvalidResponse),
            ("expires_in", json!(null), ErrorKind::InvalidResponse),
        ] {
            let mut body = base.clone();
            body[field] = value;
            let error = parse_start_at(&answer(200, &body)).err().unwrap();
            assert_eq!(error.kind(), kind, "{field}");
        }
        let refused = parse_start_at(&answer(400, &json!({"error": "unauthorized_client"})));
        assert_eq!(refused.err().unwrap().kind(), ErrorKind::UnauthorizedClient);
    }

    proptest! {
        /// Whatever the endpoint answers: a device authorization whose user code is printable,
        /// or a typed error that quotes nothing of the body.
        #[test]
        fn any_answer_parses_or_fails_typed(
            status in prop_oneof![Just(200u16), Just(400), Just(500)],
            body in prop_oneof![
                any::<Vec<u8>>(),
                "[ -~]{0,80}".prop_map(String::into_bytes),
                ("[^\"\\\\]{0,70}", 0u64..100_000).prop_map(|(code, expires)| serde_json::to_vec(&json!({
                    "device_code": "SECRETDEVICE", "user_code": code,
                    "verification_uri": "https://auth.example.com/device", "expires_in": expires,
                })).unwrap()),
            ],
        ) {
            let response = http::Response::builder().status(status).body(body).unwrap();
            match parse_start(&response, "https://auth.example.com", &HttpClient::new()) {
                Ok(started) => {
                    prop_assert_eq!(status, 200);
                    prop_assert!(started.shown.user_code.bytes().all(|b| (b' '..=b'~').contains(&b)));
                    prop_assert!(started.shown.expires_in <= MAX_LIFETIME);
                    prop_assert!(started.interval >= Duration::from_secs(1));
                }
                Err(error) => prop_assert!(!error.to_string().contains("SECRETDEVICE")),
            }
        }
    }
}
