//! Sign-in without a browser on this machine: the URL goes to standard error, and the address
//! the browser (on any machine) ends on is pasted back on the terminal.

use std::io::BufRead;

use tower_mcp_oauth::client::{AuthorizationHandler, BoxFuture};
use url::Url;

use super::cli_error::CliError;

/// How long a pasted address is waited for.
const PASTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Prints the authorization URL and reads the redirect URL from the terminal (`/dev/tty`, so it
/// works while standard input carries MCP), or, where standard input is free (`login`) and
/// there is no terminal, from standard input.
pub(crate) struct PasteHandler {
    redirect_uri: Url,
    stdin_is_free: bool,
}

impl PasteHandler {
    /// A redirect to `http://127.0.0.1:{port}/callback`. Nothing listens there: the browser
    /// shows an error page whose address holds the code, which the user pastes.
    /// `host` and `path` of the redirect URI default to `127.0.0.1` and `/callback`.
    pub(crate) fn new(
        port: Option<u16>,
        host: Option<&str>,
        path: Option<&str>,
        stdin_is_free: bool,
    ) -> Result<Self, CliError> {
        let port = match port {
            Some(port) => port,
            // A port nothing listens on now, so the browser's page is an error, not someone's.
            None => std::net::TcpListener::bind(("127.0.0.1", 0))
                .and_then(|listener| listener.local_addr())
                .map(|address| address.port())
                .map_err(|e| CliError::new(format!("cannot pick a callback port: {e}")))?,
        };
        let (host, path) = (host.unwrap_or("127.0.0.1"), path.unwrap_or("/callback"));
        let redirect_uri = Url::parse(&format!("http://{host}:{port}{path}"))
            .map_err(|_| CliError::new("cannot form the redirect URI"))?;
        Ok(Self {
            redirect_uri,
            stdin_is_free,
        })
    }
}

/// One line of `input`, trimmed, read on a blocking thread so the runtime goes on meanwhile;
/// `None` at the end of the input.
pub(crate) fn read_line(
    mut input: Box<dyn BufRead + Send>,
) -> tokio::task::JoinHandle<std::io::Result<Option<String>>> {
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let read = input.read_line(&mut line)?;
        Ok((read > 0).then(|| line.trim().to_owned()))
    })
}

/// Where the pasted address is read: the terminal while standard input carries MCP (never
/// standard input then), else standard input.
fn paste_input(stdin_is_free: bool) -> std::io::Result<Box<dyn BufRead + Send>> {
    if stdin_is_free {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let tty = std::fs::File::open("/dev/tty")?;
    Ok(Box::new(std::io::BufReader::new(tty)))
}

impl AuthorizationHandler for PasteHandler {
    fn redirect_uri(&self) -> Url {
        self.redirect_uri.clone()
    }

    fn authorize<'a>(
        &'a self,
        authorization_url: &'a Url,
    ) -> BoxFuture<'a, tower_mcp_oauth::Result<Url>> {
        Box::pin(async move {
            // Before asking: a bridge a desktop app started may have no terminal at all.
            let input = paste_input(self.stdin_is_free).map_err(|_| {
                handler_error(
                    "no terminal to paste the address into: run `mcp-oauth login URL` in a terminal",
                )
            })?;
            eprintln!(
                "Open this URL in a browser to sign in:\n\n  {authorization_url}\n\n\
                 Then paste here the address the browser ends on (it starts with {}):",
                self.redirect_uri
            );
            let reading = read_line(input);
            // Other bridges wait for this sign-in: it does not wait for ever.
            let pasted = tokio::time::timeout(PASTE_TIMEOUT, reading)
                .await
                .map_err(|_| handler_error("nothing was pasted within 10 minutes"))?
                .map_err(|_| handler_error("the terminal reader failed"))?
                .map_err(|_| handler_error("cannot read the pasted address"))?
                .unwrap_or_default();
            Url::parse(&pasted).map_err(|_| handler_error("what was pasted is not an address"))
        })
    }
}

fn handler_error(message: &'static str) -> tower_mcp_oauth::Error {
    tower_mcp_oauth::Error::new(tower_mcp_oauth::ErrorKind::Handler, message)
}
