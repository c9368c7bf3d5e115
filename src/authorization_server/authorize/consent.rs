//! The consent page: which client asks, for which scopes, on which resource, sent back where,
//! and for whom (a user the policy named, the user signed in upstream, or the user about to
//! sign in there).

use axum::response::Response;
use http::header::SET_COOKIE;
use http::{HeaderValue, StatusCode};
use url::Url;

use super::{authorize_path, unavailable_page, Validated, CONSENT_COOKIE_PREFIX, CONSENT_TTL};
use crate::authorization_server::grant::{hash, random_token};
use crate::authorization_server::page::{
    csrf_cookie, escape, html_response, scope_items, PAGE_STYLE,
};
use crate::authorization_server::store::UpstreamIdentity;
use crate::authorization_server::AuthorizationServer;

/// For whom the client would act.
pub(super) enum Who<'a> {
    /// The user the approval policy named.
    Subject(&'a str),
    /// The user signed in upstream (a session).
    SignedIn {
        subject: &'a str,
        identity: &'a UpstreamIdentity,
    },
    /// Nobody yet: approving sends the browser to sign in at `provider`, whose authorization
    /// endpoint is at `origin`.
    SignInAt { provider: &'a str, origin: &'a str },
}

impl Who<'_> {
    /// The subject kept with the page: empty until someone signs in.
    fn subject(&self) -> String {
        match self {
            Self::Subject(subject) | Self::SignedIn { subject, .. } => (*subject).to_owned(),
            Self::SignInAt { .. } => String::new(),
        }
    }

    fn sentence(&self, resource: &str) -> String {
        let resource = escape(resource);
        match self {
            Self::Subject(subject) => format!(
                r#"It will be able to act as <strong id="user">{}</strong> on <code id="resource">{resource}</code> with these scopes:"#,
                escape(subject)
            ),
            Self::SignedIn { identity, .. } => format!(
                r#"It will be able to act as <strong id="user">{}</strong> (signed in with <span id="provider">{}</span>) on <code id="resource">{resource}</code> with these scopes:"#,
                escape(identity.shown_name()),
                escape(&identity.issuer)
            ),
            Self::SignInAt { provider, .. } => format!(
                r#"You will sign in with <strong id="provider">{}</strong> next. The application will then be able to act as you on <code id="resource">{resource}</code> with these scopes:"#,
                escape(provider)
            ),
        }
    }
}

pub(super) async fn consent_page(
    server: &AuthorizationServer,
    request: Validated,
    who: Who<'_>,
) -> Response {
    let id = random_token();
    let csrf = random_token();
    let client_name = request
        .client_name
        .clone()
        .unwrap_or_else(|| request.client_id.clone());
    let redirect = Url::parse(&request.redirect_uri).ok();
    let redirect_host = redirect
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    // CSP names a web origin, or for a private-use scheme the scheme itself.
    let redirect_origin = redirect
        .as_ref()
        .map(|u| match u.scheme() {
            "http" | "https" => u.origin().ascii_serialization(),
            scheme => format!("{scheme}:"),
        })
        .unwrap_or_default();
    // Approving before sign-in redirects to the provider: the form may go there too.
    let upstream_origin = match &who {
        Who::SignInAt { origin, .. } => *origin,
        _ => "",
    };
    let scopes = scope_items(&request.scopes);
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {name}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{PAGE_STYLE}</style>
</head><body>
<h1>Authorize <span id="client-name">{name}</span>?</h1>
<p>{sentence}</p>
<ul id="scopes">{scopes}</ul>
<p>You will be sent back to <strong id="redirect-host">{host}</strong> (<code id="redirect-uri">{redirect_uri}</code>).</p>
<form method="post" action="{action}">
<input type="hidden" name="request" value="{id}">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
</body></html>"#,
        name = escape(&client_name),
        sentence = who.sentence(&request.resource),
        scopes = scopes,
        host = escape(&redirect_host),
        redirect_uri = escape(&request.redirect_uri),
        action = escape(&authorize_path(server)),
        id = escape(&id),
        csrf = escape(&csrf),
    );
    let cookie = csrf_cookie(
        &format!("{CONSENT_COOKIE_PREFIX}{id}"),
        &csrf,
        &authorize_path(server),
        CONSENT_TTL.as_secs(),
        server.inner.config.issuer.scheme() == "https",
    );
    let pending = request.pending(who.subject(), &csrf);
    if let Err(error) = server
        .inner
        .config
        .store
        .save_consent(hash(&id), pending)
        .await
    {
        tracing::error!(%error, "consent store failed");
        return unavailable_page();
    }
    let mut response = html_response(StatusCode::OK, html);
    // The form posts here, and the answer redirects to the client (or the provider): all must
    // be allowed.
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {redirect_origin} {upstream_origin}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert("content-security-policy", value);
    }
    if let Some(cookie) = cookie {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}
