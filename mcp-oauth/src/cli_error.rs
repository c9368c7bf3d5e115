//! [`CliError`]: what every command fails with.

/// What the commands fail with: a message for standard error, never a secret.
#[derive(Debug)]
pub(crate) struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tower_mcp_oauth::Error> for CliError {
    fn from(error: tower_mcp_oauth::Error) -> Self {
        Self(error.to_string())
    }
}

impl CliError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
