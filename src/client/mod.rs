//! The client side of MCP authorization: discovery, registration, the PKCE authorization-code
//! flow, tokens and their storage.
//!
//! [`OAuthState`] is the step-by-step API; [`OAuthLayer`] makes any tower HTTP service an
//! authorized MCP client, and [`AuthorizedHttpClient`] is that layer over the crate's own client.
//!
//! Read top-down: [`config`](OAuthConfig) and [`state`](OAuthState) are what users build;
//! `layer` and `replay` are the middleware; `session` is the engine both share (token cache,
//! single flight, recovery); `discovery`, `registration`, `authorization` and `tokens` are the
//! protocol steps; `store` (and `postgres_store`, feature `postgres`) and `handler` are the places
//! users plug their own parts in.

mod assertion;
mod authorization;
mod authorized;
mod config;
mod device;
mod discovery;
mod dpop;
mod grant;
mod handler;
mod layer;
#[cfg(feature = "postgres")]
mod postgres_store;
mod registration;
mod replay;
mod request_options;
mod retry;
mod session;
mod state;
mod store;
mod tokens;
mod wire;

pub use crate::BoxFuture;
pub use assertion::{ClientKey, TokenSource};
pub use authorization::PendingAuthorization;
pub use authorized::AuthorizedHttpClient;
pub use config::OAuthConfig;
pub use device::{DeviceAuthorization, DevicePrompt};
pub use discovery::{discover, Discovery, DEFAULT_PROTOCOL_VERSION, MCP_PROTOCOL_VERSION_HEADER};
pub use dpop::DpopMode;
pub use grant::{EnterpriseGrant, Grant, ID_JAG_TOKEN_TYPE, ID_TOKEN_TYPE, SAML2_TOKEN_TYPE};
pub use handler::{
    AuthorizationHandler, HeadlessHandler, LoopbackHandler, DEFAULT_CALLBACK_CONNECTION_TIMEOUT,
    DEFAULT_LOOPBACK_TIMEOUT, PORT_WAIT,
};
pub use layer::{OAuth, OAuthLayer, ResponseFuture};
#[cfg(feature = "postgres")]
pub use postgres_store::PostgresCredentialStore;
pub use registration::{
    ClientRegistration, ClientSettings, RegistrationSource, TokenEndpointAuthMethod,
};
pub use replay::{replay_fn, CloneBodies, NoReplay, ReplayFn, ReplayPolicy};
pub use retry::RetryTransient;
pub use state::OAuthState;
pub use store::{
    CredentialKey, CredentialStore, FileStore, MemoryStore, SealingKey, StoreLease,
    StoredCredentials,
};
pub use tokens::TokenSet;

// What downstream authorization (token exchange on a caller's behalf, `crate::downstream`)
// takes from the client: its token requests, DPoP signing, metadata discovery and replays.
#[cfg(feature = "downstream")]
pub(crate) use {
    discovery::{fetch_authorization_server_metadata, same_issuer},
    dpop::{DpopSigner, NonceCell},
    replay::Replay,
    tokens::{request_outcome, TokenEndpoint, TokenResponse},
    wire::is_attachable,
};
