//! Reading stored rows back into the store's types.

use tokio_postgres::Row;

use super::super::{
    AccessRecord, ClientAuthMethod, DeviceGrant, DeviceStatus, PendingConsent, RegisteredClient,
    TokenFamily, TokenHash,
};
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::unsigned;

pub(super) fn hash_of(row: &Row, column: &str) -> Result<TokenHash> {
    let bytes: Vec<u8> = row.get(column);
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| unreadable("a stored hash is not 32 bytes"))?;
    Ok(TokenHash(bytes))
}

pub(super) fn unreadable(why: &str) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!("PostgreSQL: a stored row is unreadable: {why}"),
    )
}

pub(super) fn client_from(row: &Row) -> Result<RegisteredClient> {
    let auth_method = match row.get::<_, &str>("auth_method") {
        "none" => ClientAuthMethod::None,
        "client_secret_post" => ClientAuthMethod::ClientSecretPost,
        "client_secret_basic" => ClientAuthMethod::ClientSecretBasic,
        "private_key_jwt" => ClientAuthMethod::PrivateKeyJwt,
        _ => return Err(unreadable("unknown client authentication method")),
    };
    let secret_hash = match row.get::<_, Option<Vec<u8>>>("secret_hash") {
        Some(bytes) => Some(TokenHash(
            bytes
                .try_into()
                .map_err(|_| unreadable("a stored hash is not 32 bytes"))?,
        )),
        None => None,
    };
    let metadata =
        serde_json::from_str(row.get("metadata")).map_err(|_| unreadable("client metadata"))?;
    Ok(RegisteredClient {
        client_id: row.get("client_id"),
        secret_hash,
        auth_method,
        metadata,
        issued_at: unsigned(row.get("issued_at")),
        pre_registered: row.get("pre_registered"),
    })
}

/// Rotates `$1` to `$2` when `$1` is its family's current token and the family is live at `$3`;
/// returns the family, or no row.
pub(super) const ROTATE: &str = "WITH rotated AS (
        UPDATE mcp_oauth_families f
        SET current_refresh = $2, previous_refresh = $1, rotated_at = $3
        WHERE f.id = (SELECT family_id FROM mcp_oauth_refresh WHERE token_hash = $1)
          AND f.current_refresh = $1 AND NOT f.revoked AND f.expires_at > $3
        RETURNING f.id, f.client_id, f.subject, f.scopes, f.resource, f.expires_at, f.revoked,
                  f.dpop_jkt
    ), added AS (
        INSERT INTO mcp_oauth_refresh (token_hash, family_id) SELECT $2, id FROM rotated
    )
    SELECT * FROM rotated";

pub(super) const FAMILY_COLUMNS: &str =
    "f.id, f.client_id, f.subject, f.scopes, f.resource, f.expires_at, f.revoked, f.dpop_jkt";

pub(super) fn family_from(row: &Row) -> Result<TokenFamily> {
    let missing = || unreadable("a token family lacks its grant");
    Ok(TokenFamily {
        id: row.get("id"),
        client_id: row
            .get::<_, Option<String>>("client_id")
            .ok_or_else(missing)?,
        subject: row
            .get::<_, Option<String>>("subject")
            .ok_or_else(missing)?,
        scopes: row
            .get::<_, Option<Vec<String>>>("scopes")
            .ok_or_else(missing)?,
        resource: row
            .get::<_, Option<String>>("resource")
            .ok_or_else(missing)?,
        expires_at: unsigned(row.get("expires_at")),
        revoked: row.get("revoked"),
        dpop_jkt: row.get("dpop_jkt"),
    })
}

pub(super) fn access_from(row: &Row) -> AccessRecord {
    AccessRecord {
        client_id: row.get("client_id"),
        subject: row.get("subject"),
        scopes: row.get("scopes"),
        resource: row.get("resource"),
        issued_at: unsigned(row.get("issued_at")),
        expires_at: unsigned(row.get("expires_at")),
        family_id: row.get("family_id"),
        dpop_jkt: row.get("dpop_jkt"),
        act: row.get("act"),
    }
}

pub(super) const DEVICE_COLUMNS: &str =
    "user_hash, client_id, client_name, scopes, resource, expires_at,
     interval_secs, last_poll, status, subject, family_id";

pub(super) fn device_from(row: &Row) -> Result<DeviceGrant> {
    let status = match (
        row.get::<_, &str>("status"),
        row.get::<_, Option<String>>("subject"),
    ) {
        ("pending", _) => DeviceStatus::Pending,
        ("approved", Some(subject)) => DeviceStatus::Approved { subject },
        ("denied", _) => DeviceStatus::Denied,
        _ => return Err(unreadable("a device authorization has an unknown status")),
    };
    Ok(DeviceGrant {
        client_id: row.get("client_id"),
        client_name: row.get("client_name"),
        user_code: hash_of(row, "user_hash")?,
        scopes: row.get("scopes"),
        resource: row.get("resource"),
        expires_at: unsigned(row.get("expires_at")),
        interval: unsigned(row.get("interval_secs")),
        last_poll: unsigned(row.get("last_poll")),
        status,
        family_id: row.get("family_id"),
    })
}

/// A status as stored: its name and its subject.
pub(super) fn device_status_columns(status: &DeviceStatus) -> (&'static str, Option<&str>) {
    match status {
        DeviceStatus::Pending => ("pending", None),
        DeviceStatus::Approved { subject } => ("approved", Some(subject)),
        DeviceStatus::Denied => ("denied", None),
    }
}

pub(super) fn consent_from(row: &Row) -> Result<PendingConsent> {
    Ok(PendingConsent {
        client_id: row.get("client_id"),
        client_name: row.get("client_name"),
        redirect_uri: row.get("redirect_uri"),
        redirect_uri_in_request: row.get("redirect_uri_in_request"),
        state: row.get("state"),
        scopes: row.get("scopes"),
        resource: row.get("resource"),
        code_challenge: row.get("code_challenge"),
        subject: row.get("subject"),
        csrf_hash: hash_of(row, "csrf_hash")?,
        expires_at: unsigned(row.get("expires_at")),
    })
}
