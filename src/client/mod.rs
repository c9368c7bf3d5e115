//! The client side of MCP authorization: discovery, registration, the PKCE authorization-code
//! flow, tokens and their storage.
//!
//! [`OAuthState`] is the step-by-step API; [`OAuthLayer`] makes any tower HTTP service an
//! authorized MCP client, and [`AuthorizedHttpClient`] is that layer over the crate's own client.

mod authorization;
pub mod discovery;
pub mod handler;
pub mod layer;
pub mod registration;
mod session;
mod state;
pub mod store;
pub mod tokens;

pub use authorization::PendingAuthorization;
pub use discovery::Discovery;
pub use handler::{AuthorizationHandler, HeadlessHandler, LoopbackHandler};
pub use layer::{AuthorizedHttpClient, OAuth, OAuthLayer, ResponseFuture};
pub use registration::{
    ClientRegistration, ClientSettings, RegistrationSource, TokenEndpointAuthMethod,
};
pub use state::{OAuthConfig, OAuthState, DEFAULT_PROTOCOL_VERSION};
pub use store::{
    BoxFuture, CredentialKey, CredentialStore, FileStore, MemoryStore, StoreLease,
    StoredCredentials,
};
pub use tokens::TokenSet;
