//! Upstream sign-in records on PostgreSQL: any replica finishes a sign-in another began, and a
//! session or a remembered consent holds at every replica.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::super::{
    PendingSignIn, RememberedConsent, SealedUpstreamTokens, SignInSession, TokenHash,
};
use super::rows::unreadable;
use super::PostgresAuthorizationStore;
use crate::clock::now_secs;
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::{execute, query_opt, seconds, unsigned};

/// Sign-ins waiting for the provider across the deployment: past it, the one expiring first
/// goes.
const MAX_PENDING_SIGN_INS: i64 = 20_000;

fn to_text(record: &impl Serialize, what: &str) -> Result<String> {
    serde_json::to_string(record)
        .map_err(|_| Error::new(ErrorKind::Storage, format!("{what} cannot be stored")))
}

fn from_text<T: DeserializeOwned>(text: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|_| unreadable(what))
}

impl PostgresAuthorizationStore {
    pub(super) async fn save_sign_in(&self, id: TokenHash, pending: PendingSignIn) -> Result<()> {
        let db = self.pool.client().await?;
        let record = to_text(&pending, "a waiting sign-in")?;
        execute(
            &db,
            "DELETE FROM mcp_oauth_sign_ins WHERE id = (
                 SELECT id FROM mcp_oauth_sign_ins ORDER BY expires_at LIMIT 1)
             AND (SELECT count(*) FROM mcp_oauth_sign_ins) >= $1",
            &[&MAX_PENDING_SIGN_INS],
            "saving a waiting sign-in",
        )
        .await?;
        execute(
            &db,
            "INSERT INTO mcp_oauth_sign_ins (id, record, expires_at) VALUES ($1, $2, $3)",
            &[
                &id.0.as_slice(),
                &record,
                &seconds(pending.consent.expires_at),
            ],
            "saving a waiting sign-in",
        )
        .await?;
        self.wrote();
        Ok(())
    }

    pub(super) async fn take_sign_in(&self, id: TokenHash) -> Result<Option<PendingSignIn>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            "DELETE FROM mcp_oauth_sign_ins WHERE id = $1 AND expires_at > $2 RETURNING record",
            &[&id.0.as_slice(), &seconds(now_secs())],
            "taking a waiting sign-in",
        )
        .await?;
        row.map(|row| from_text(row.get("record"), "a waiting sign-in"))
            .transpose()
    }

    pub(super) async fn save_session(&self, id: TokenHash, session: SignInSession) -> Result<()> {
        let db = self.pool.client().await?;
        let record = to_text(&session, "a session")?;
        execute(
            &db,
            "INSERT INTO mcp_oauth_sessions (id, subject, record, expires_at)
                 VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET subject = $2, record = $3, expires_at = $4",
            &[
                &id.0.as_slice(),
                &session.subject,
                &record,
                &seconds(session.expires_at),
            ],
            "saving a session",
        )
        .await?;
        self.wrote();
        Ok(())
    }

    pub(super) async fn session(&self, id: TokenHash) -> Result<Option<SignInSession>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            "SELECT record FROM mcp_oauth_sessions WHERE id = $1 AND expires_at > $2",
            &[&id.0.as_slice(), &seconds(now_secs())],
            "loading a session",
        )
        .await?;
        row.map(|row| from_text(row.get("record"), "a session"))
            .transpose()
    }

    pub(super) async fn end_session(&self, id: TokenHash) -> Result<()> {
        let db = self.pool.client().await?;
        execute(
            &db,
            "DELETE FROM mcp_oauth_sessions WHERE id = $1",
            &[&id.0.as_slice()],
            "ending a session",
        )
        .await?;
        Ok(())
    }

    pub(super) async fn remember_consent(&self, consent: RememberedConsent) -> Result<()> {
        let db = self.pool.client().await?;
        execute(
            &db,
            "INSERT INTO mcp_oauth_remembered_consents
                 (subject, client_id, scopes, resource, expires_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (subject, client_id)
                 DO UPDATE SET scopes = $3, resource = $4, expires_at = $5",
            &[
                &consent.subject,
                &consent.client_id,
                &consent.scopes,
                &consent.resource,
                &seconds(consent.expires_at),
            ],
            "remembering a consent",
        )
        .await?;
        self.wrote();
        Ok(())
    }

    pub(super) async fn remembered_consent(
        &self,
        subject: &str,
        client_id: &str,
    ) -> Result<Option<RememberedConsent>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            "SELECT scopes, resource, expires_at FROM mcp_oauth_remembered_consents
                 WHERE subject = $1 AND client_id = $2 AND expires_at > $3",
            &[&subject, &client_id, &seconds(now_secs())],
            "loading a remembered consent",
        )
        .await?;
        Ok(row.map(|row| RememberedConsent {
            subject: subject.to_owned(),
            client_id: client_id.to_owned(),
            scopes: row.get("scopes"),
            resource: row.get("resource"),
            expires_at: unsigned(row.get("expires_at")),
        }))
    }

    pub(super) async fn forget_consent(
        &self,
        subject: &str,
        client_id: Option<&str>,
    ) -> Result<()> {
        let db = self.pool.client().await?;
        execute(
            &db,
            "DELETE FROM mcp_oauth_remembered_consents
                 WHERE subject = $1 AND ($2::text IS NULL OR client_id = $2)",
            &[&subject, &client_id],
            "forgetting a consent",
        )
        .await?;
        Ok(())
    }

    pub(super) async fn save_upstream_tokens(
        &self,
        subject: &str,
        tokens: SealedUpstreamTokens,
    ) -> Result<()> {
        let db = self.pool.client().await?;
        execute(
            &db,
            "INSERT INTO mcp_oauth_upstream_tokens (subject, sealed, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (subject) DO UPDATE SET sealed = $2, updated_at = $3",
            &[&subject, &tokens.0, &seconds(now_secs())],
            "keeping upstream tokens",
        )
        .await?;
        Ok(())
    }

    pub(super) async fn upstream_tokens(
        &self,
        subject: &str,
    ) -> Result<Option<SealedUpstreamTokens>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            "SELECT sealed FROM mcp_oauth_upstream_tokens WHERE subject = $1",
            &[&subject],
            "loading upstream tokens",
        )
        .await?;
        Ok(row.map(|row| SealedUpstreamTokens(row.get("sealed"))))
    }
}
