//! The schema, one migration per step; applied in order, each once.

pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE mcp_oauth_clients (
    client_id TEXT PRIMARY KEY,
    secret_hash BYTEA,
    auth_method TEXT NOT NULL,
    metadata JSONB NOT NULL,
    issued_at BIGINT NOT NULL,
    pre_registered BOOLEAN NOT NULL
);
CREATE TABLE mcp_oauth_codes (
    code_hash BYTEA PRIMARY KEY,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    redirect_uri_in_request BOOLEAN NOT NULL,
    code_challenge TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    family_id TEXT NOT NULL,
    redeemed BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX mcp_oauth_codes_expiry ON mcp_oauth_codes (expires_at);
-- A row without client_id is a revocation that arrived before its family was saved.
CREATE TABLE mcp_oauth_families (
    id TEXT PRIMARY KEY,
    client_id TEXT,
    subject TEXT,
    scopes TEXT[],
    resource TEXT,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL,
    dpop_jkt TEXT,
    current_refresh BYTEA
);
CREATE INDEX mcp_oauth_families_expiry ON mcp_oauth_families (expires_at);
CREATE TABLE mcp_oauth_refresh (
    token_hash BYTEA PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES mcp_oauth_families (id) ON DELETE CASCADE
);
CREATE INDEX mcp_oauth_refresh_family ON mcp_oauth_refresh (family_id);
CREATE TABLE mcp_oauth_access (
    token_hash BYTEA PRIMARY KEY,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    family_id TEXT,
    dpop_jkt TEXT
);
CREATE INDEX mcp_oauth_access_family ON mcp_oauth_access (family_id);
CREATE INDEX mcp_oauth_access_expiry ON mcp_oauth_access (expires_at);
CREATE TABLE mcp_oauth_consents (
    id BYTEA PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_name TEXT,
    redirect_uri TEXT NOT NULL,
    redirect_uri_in_request BOOLEAN NOT NULL,
    state TEXT,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    subject TEXT NOT NULL,
    csrf_hash BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX mcp_oauth_consents_client ON mcp_oauth_consents (client_id, expires_at);
CREATE INDEX mcp_oauth_consents_expiry ON mcp_oauth_consents (expires_at);
"#,
    r#"
CREATE TABLE mcp_oauth_devices (
    device_hash BYTEA PRIMARY KEY,
    user_hash BYTEA NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    client_name TEXT,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    interval_secs BIGINT NOT NULL,
    last_poll BIGINT NOT NULL,
    status TEXT NOT NULL,
    subject TEXT,
    family_id TEXT NOT NULL
);
CREATE INDEX mcp_oauth_devices_client ON mcp_oauth_devices (client_id, expires_at);
CREATE INDEX mcp_oauth_devices_expiry ON mcp_oauth_devices (expires_at);
"#,
    // The refresh token rotated last and when, for the rotation grace period.
    r#"
ALTER TABLE mcp_oauth_families ADD COLUMN previous_refresh BYTEA;
ALTER TABLE mcp_oauth_families ADD COLUMN rotated_at BIGINT;
"#,
    // Upstream sign-in: waiting authorizations, sessions, remembered consents, sealed tokens.
    r#"
CREATE TABLE mcp_oauth_sign_ins (
    id BYTEA PRIMARY KEY,
    record TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX mcp_oauth_sign_ins_expiry ON mcp_oauth_sign_ins (expires_at);
CREATE TABLE mcp_oauth_sessions (
    id BYTEA PRIMARY KEY,
    subject TEXT NOT NULL,
    record TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX mcp_oauth_sessions_expiry ON mcp_oauth_sessions (expires_at);
CREATE TABLE mcp_oauth_remembered_consents (
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (subject, client_id)
);
CREATE INDEX mcp_oauth_remembered_consents_expiry ON mcp_oauth_remembered_consents (expires_at);
CREATE TABLE mcp_oauth_upstream_tokens (
    subject TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
"#,
    // Token exchange: who acts for the subject of an exchanged token.
    r#"
ALTER TABLE mcp_oauth_access ADD COLUMN act TEXT;
"#,
];
