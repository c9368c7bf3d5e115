//! Consent pages waiting for an answer and device authorizations waiting for a user.

use super::super::{DeviceGrant, DevicePoll, DeviceSave, DeviceStatus, PendingConsent, TokenHash};
use super::rows::{consent_from, device_from, device_status_columns, unreadable, DEVICE_COLUMNS};
use super::{PostgresAuthorizationStore, MAX_CONSENTS_PER_CLIENT, MAX_DEVICES_PER_CLIENT};
use crate::error::Result;
use crate::postgres::{database_error, execute, query_opt, seconds};

impl PostgresAuthorizationStore {
    pub(super) async fn save_consent(&self, id: TokenHash, consent: PendingConsent) -> Result<()> {
        let mut db = self.pool.client().await?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error("saving a consent request", &e))?;
        // One client's pages push out only its own oldest.
        execute(
            &tx,
            "DELETE FROM mcp_oauth_consents WHERE id IN (
                 SELECT id FROM mcp_oauth_consents WHERE client_id = $1
                 ORDER BY expires_at DESC OFFSET $2)",
            &[&consent.client_id, &(MAX_CONSENTS_PER_CLIENT - 1)],
            "saving a consent request",
        )
        .await?;
        execute(
            &tx,
            "DELETE FROM mcp_oauth_consents WHERE id = (
                 SELECT id FROM mcp_oauth_consents WHERE client_id = (
                     SELECT client_id FROM mcp_oauth_consents
                     GROUP BY client_id ORDER BY count(*) DESC LIMIT 1)
                 ORDER BY expires_at LIMIT 1)
             AND (SELECT count(*) FROM mcp_oauth_consents) >= $1",
            &[&self.max_consents],
            "saving a consent request",
        )
        .await?;
        execute(
            &tx,
            "INSERT INTO mcp_oauth_consents (id, client_id, client_name, redirect_uri,
                 redirect_uri_in_request, state, scopes, resource, code_challenge, subject,
                 csrf_hash, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &id.0.as_slice(),
                &consent.client_id,
                &consent.client_name,
                &consent.redirect_uri,
                &consent.redirect_uri_in_request,
                &consent.state,
                &consent.scopes,
                &consent.resource,
                &consent.code_challenge,
                &consent.subject,
                &consent.csrf_hash.0.as_slice(),
                &seconds(consent.expires_at),
            ],
            "saving a consent request",
        )
        .await?;
        tx.commit()
            .await
            .map_err(|e| database_error("saving a consent request", &e))?;
        self.wrote();
        Ok(())
    }

    pub(super) async fn take_consent(&self, id: TokenHash) -> Result<Option<PendingConsent>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            "DELETE FROM mcp_oauth_consents WHERE id = $1
                 RETURNING client_id, client_name, redirect_uri, redirect_uri_in_request, state,
                           scopes, resource, code_challenge, subject, csrf_hash, expires_at",
            &[&id.0.as_slice()],
            "taking a consent request",
        )
        .await?;
        row.as_ref().map(consent_from).transpose()
    }

    pub(super) async fn save_device(
        &self,
        device_code: TokenHash,
        grant: DeviceGrant,
    ) -> Result<DeviceSave> {
        const DOING: &str = "saving a device authorization";
        let now = seconds(crate::clock::now_secs());
        let mut db = self.pool.client().await?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error(DOING, &e))?;
        // An expired grant gives its user code back.
        execute(
            &tx,
            "DELETE FROM mcp_oauth_devices WHERE user_hash = $1 AND expires_at <= $2",
            &[&grant.user_code.0.as_slice(), &now],
            DOING,
        )
        .await?;
        // A soft cap: replicas saving at the same moment may pass it by a few.
        let counts = query_opt(
            &tx,
            "SELECT (SELECT count(*) FROM mcp_oauth_devices
                         WHERE client_id = $1 AND expires_at > $2) AS held,
                    (SELECT count(*) FROM mcp_oauth_devices WHERE expires_at > $2) AS live",
            &[&grant.client_id, &now],
            DOING,
        )
        .await?
        .ok_or_else(|| unreadable("counting device authorizations gave no row"))?;
        let (held, live): (i64, i64) = (counts.get("held"), counts.get("live"));
        if held >= MAX_DEVICES_PER_CLIENT {
            return Ok(DeviceSave::Full);
        }
        if live >= self.max_devices {
            // Full: the client holding the most unapproved authorizations (waiting or denied)
            // loses its oldest, so a few flooding clients never keep out the others. One a
            // user approved is never dropped for room.
            let dropped = execute(
                &tx,
                "DELETE FROM mcp_oauth_devices WHERE device_hash = (
                     SELECT device_hash FROM mcp_oauth_devices
                     WHERE status <> 'approved' AND expires_at > $1 AND client_id = (
                         SELECT client_id FROM mcp_oauth_devices
                         WHERE status <> 'approved' AND expires_at > $1
                         GROUP BY client_id ORDER BY count(*) DESC LIMIT 1)
                     ORDER BY expires_at LIMIT 1)",
                &[&now],
                DOING,
            )
            .await?;
            if dropped == 0 {
                return Ok(DeviceSave::Full);
            }
        }
        let (status, subject) = device_status_columns(&grant.status);
        let inserted = execute(
            &tx,
            "INSERT INTO mcp_oauth_devices (device_hash, user_hash, client_id, client_name,
                 scopes, resource, expires_at, interval_secs, last_poll, status, subject,
                 family_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT DO NOTHING",
            &[
                &device_code.0.as_slice(),
                &grant.user_code.0.as_slice(),
                &grant.client_id,
                &grant.client_name,
                &grant.scopes,
                &grant.resource,
                &seconds(grant.expires_at),
                &seconds(grant.interval),
                &seconds(grant.last_poll),
                &status,
                &subject,
                &grant.family_id,
            ],
            DOING,
        )
        .await?;
        tx.commit().await.map_err(|e| database_error(DOING, &e))?;
        self.wrote();
        Ok(if inserted == 1 {
            DeviceSave::Saved
        } else {
            DeviceSave::UserCodeTaken
        })
    }

    pub(super) async fn device_by_user_code(
        &self,
        user_code: TokenHash,
    ) -> Result<Option<DeviceGrant>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            &format!("SELECT {DEVICE_COLUMNS} FROM mcp_oauth_devices WHERE user_hash = $1"),
            &[&user_code.0.as_slice()],
            "reading a device authorization",
        )
        .await?;
        row.as_ref().map(device_from).transpose()
    }

    pub(super) async fn answer_device(
        &self,
        user_code: TokenHash,
        answer: DeviceStatus,
        now: u64,
    ) -> Result<bool> {
        let db = self.pool.client().await?;
        let (status, subject) = device_status_columns(&answer);
        let answered = execute(
            &db,
            "UPDATE mcp_oauth_devices SET status = $2, subject = $3
             WHERE user_hash = $1 AND status = 'pending' AND expires_at > $4",
            &[&user_code.0.as_slice(), &status, &subject, &seconds(now)],
            "answering a device authorization",
        )
        .await?;
        Ok(answered == 1)
    }

    pub(super) async fn poll_device(
        &self,
        device_code: TokenHash,
        client_id: &str,
        now: u64,
    ) -> Result<DevicePoll> {
        const DOING: &str = "polling a device authorization";
        let mut db = self.pool.client().await?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error(DOING, &e))?;
        // The row lock makes two polls (two replicas) take turns: one hands the grant out.
        let row = query_opt(
            &tx,
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM mcp_oauth_devices WHERE device_hash = $1 FOR UPDATE"
            ),
            &[&device_code.0.as_slice()],
            DOING,
        )
        .await?;
        let Some(mut grant) = row.as_ref().map(device_from).transpose()? else {
            return Ok(DevicePoll::Unknown);
        };
        if grant.client_id != client_id {
            return Ok(DevicePoll::Unknown);
        }
        let outcome = grant.poll(now);
        if matches!(outcome, DevicePoll::Pending | DevicePoll::SlowDown) {
            execute(
                &tx,
                "UPDATE mcp_oauth_devices SET last_poll = $2, interval_secs = $3
                 WHERE device_hash = $1",
                &[
                    &device_code.0.as_slice(),
                    &seconds(grant.last_poll),
                    &seconds(grant.interval),
                ],
                DOING,
            )
            .await?;
        } else {
            execute(
                &tx,
                "DELETE FROM mcp_oauth_devices WHERE device_hash = $1",
                &[&device_code.0.as_slice()],
                DOING,
            )
            .await?;
        }
        tx.commit().await.map_err(|e| database_error(DOING, &e))?;
        Ok(outcome)
    }
}
