//! [`CliError`]: what every command fails with.

/// What the commands fail with: a message for standard error, never a secret. Servers' words
/// end up in it, so it holds no control character: nothing in it may drive the terminal.
#[derive(Debug)]
pub(crate) struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tower_mcp_oauth::Error> for CliError {
    fn from(error: tower_mcp_oauth::Error) -> Self {
        Self::new(error.to_string())
    }
}

impl CliError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self(
            message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_control_characters_never_reach_the_terminal() {
        let error = CliError::new("the call failed: \u{1b}]52;c;ZXZpbA==\u{7}\nrm -rf");
        assert_eq!(
            error.to_string(),
            "the call failed:  ]52;c;ZXZpbA==  rm -rf"
        );
    }
}
