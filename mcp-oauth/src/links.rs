//! `mcp-oauth call`'s answer to a server that asks its user to open a page (URL-mode
//! elicitation: linking an account at a third party). The whole URL and its origin go to
//! standard error; the page opens in the browser only when the user says yes on standard input.
//! Without an answer (standard input closed, as in scripts) nothing is opened and the call
//! fails with the server's request, which names the page.

use std::sync::Arc;

use tower_mcp_oauth::elicitation::{LinkOpener, UrlElicitation};
use tower_mcp_oauth::BoxFuture;

/// Pages one call may ask the user to open.
const MAX_PROMPTS: usize = 3;

/// What the user has been asked so far.
#[derive(Default)]
struct Prompts {
    shown: usize,
    declined: bool,
}

/// Asks on the terminal, then opens the system browser (or, where there is none, lets the user
/// open the page elsewhere). One question at a time, so an answer always belongs to the page
/// shown last; after a "no", or three pages, the server's further pages are not shown.
pub(crate) fn ask_on_terminal(browser: bool) -> impl LinkOpener {
    let prompts = Arc::new(tokio::sync::Mutex::new(Prompts::default()));
    move |request: UrlElicitation| -> BoxFuture<'static, bool> {
        let prompts = prompts.clone();
        Box::pin(async move {
            let mut prompts = prompts.lock().await;
            if prompts.declined || prompts.shown >= MAX_PROMPTS {
                eprintln!(
                    "mcp-oauth: the server asked to open another page at {}; not shown",
                    request.origin
                );
                return false;
            }
            prompts.shown += 1;
            eprintln!("{}", describe(&request));
            let question = if browser {
                format!("Open {} in your browser? [y/N] ", request.origin)
            } else {
                format!(
                    "Open it on any device, then answer y here when you are done at {} [y/N] ",
                    request.origin
                )
            };
            eprint!("{question}");
            let stdin = Box::new(std::io::BufReader::new(std::io::stdin()));
            let answer = crate::paste::read_line(stdin)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            if !answer.as_deref().is_some_and(is_yes) {
                prompts.declined = true;
                eprintln!("mcp-oauth: the page was not opened");
                return false;
            }
            if !browser {
                return true;
            }
            match webbrowser::open(request.url.as_str()) {
                Ok(()) => true,
                Err(_) => {
                    eprintln!(
                        "mcp-oauth: no browser could be opened; open the address above yourself"
                    );
                    false
                }
            }
        })
    }
}

/// What the user is shown: the origin first and plainly, then the server's message and the
/// whole address.
fn describe(request: &UrlElicitation) -> String {
    let warning = if request.punycode {
        " (the name is written in Punycode: check it is the site you expect)"
    } else {
        ""
    };
    let mut text = format!(
        "mcp-oauth: the server asks you to open a page at {}{warning}",
        request.origin
    );
    if !request.message.is_empty() {
        text.push_str(&format!("\n  {}", request.message));
    }
    text.push_str(&format!("\n  {}", request.url));
    text
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_comes_first_and_punycode_is_pointed_out() {
        let plain = UrlElicitation::new(
            "https://mcp.example/accounts/link?ticket=t",
            "Link your GitHub account",
        )
        .unwrap();
        let shown = describe(&plain);
        assert!(shown
            .starts_with("mcp-oauth: the server asks you to open a page at https://mcp.example\n"));
        assert!(shown.contains("\n  Link your GitHub account\n"));
        assert!(shown.ends_with("https://mcp.example/accounts/link?ticket=t"));
        let lookalike = UrlElicitation::new("https://xn--mcp-exmple-6db.example/", "").unwrap();
        assert!(describe(&lookalike).contains("Punycode"));
    }

    #[test]
    fn only_a_plain_yes_opens() {
        for yes in ["y\n", "Y", " yes \r\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yes please", "ja"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}
