//! The client side of MCP authorization: discovery, registration, the PKCE authorization-code
//! flow, tokens and their storage.
//!
//! [`OAuthState`] is the step-by-step API; [`AuthorizedHttpClient`] runs the whole flow on a 401.

mod authorization;
pub mod discovery;
pub mod handler;
pub mod registration;
mod state;
pub mod store;
pub mod tokens;

pub use authorization::PendingAuthorization;
pub use discovery::Discovery;
pub use handler::{AuthorizationHandler, HeadlessHandler, LoopbackHandler};
pub use registration::{
    ClientRegistration, ClientSettings, RegistrationSource, TokenEndpointAuthMethod,
};
pub use state::{AuthorizedHttpClient, OAuthConfig, OAuthState, DEFAULT_PROTOCOL_VERSION};
pub use store::{CredentialKey, CredentialStore, FileStore, MemoryStore, StoredCredentials};
pub use tokens::TokenSet;
