//! `--dpop off|accepted|required`: how an example's MCP endpoints take DPoP-bound tokens.
#![allow(dead_code, unreachable_pub)]

use tower_mcp_oauth::server::{DpopPolicy, RequireBearerLayer, TokenVerifier};

/// How the MCP endpoints take DPoP-bound tokens (RFC 9449).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DpopChoice {
    /// Bearer tokens only: clients are not offered DPoP.
    Off,
    /// DPoP-bound tokens beside Bearer ones (what `RequireBearerLayer` does by default).
    #[default]
    Accepted,
    /// DPoP-bound tokens only.
    Required,
}

impl DpopChoice {
    /// `layer` taking DPoP as chosen, its policy finished by `tune` (nonces, a shared replay
    /// cache).
    pub fn apply<V: TokenVerifier>(
        self,
        layer: RequireBearerLayer<V>,
        tune: impl FnOnce(DpopPolicy) -> DpopPolicy,
    ) -> RequireBearerLayer<V> {
        match self {
            Self::Off => layer.without_dpop(),
            Self::Accepted => layer.dpop(tune(DpopPolicy::accepted())),
            Self::Required => layer.dpop(tune(DpopPolicy::required())),
        }
    }
}
