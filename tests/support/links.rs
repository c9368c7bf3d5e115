//! A user's browser on the link of a linked account: it follows the redirects, reads the page
//! that names who links what, and continues.

use super::upstream_idp::Browser;
use super::Answer;

/// Follows redirects from `answer` (which came from `url`) to the first page that is not one.
pub async fn browse(
    browser: &mut Browser,
    mut answer: Answer,
    mut url: String,
) -> (Answer, String) {
    for _ in 0..10 {
        let Some(location) = answer.headers.get("location") else {
            return (answer, url);
        };
        let next = url::Url::parse(&url)
            .unwrap()
            .join(location.to_str().unwrap())
            .unwrap()
            .to_string();
        answer = browser.get(&next).await;
        url = next;
    }
    panic!("too many redirects");
}

/// Opens `link` in `browser`; on the page naming the third party and `user`, continues. The
/// last page (the one saying the account is linked, or why not).
pub async fn complete_link(browser: &mut Browser, link: &str, user: &str) -> Answer {
    let opened = browser.get(link).await;
    let (page, url) = browse(browser, opened, link.to_owned()).await;
    if page.status != http::StatusCode::OK {
        return page;
    }
    let html = page.text();
    assert!(html.contains("<h1>Link your "), "{html}");
    assert!(
        html.contains(&format!("<strong id=\"user\">{user}</strong>")),
        "{html}"
    );
    let handle = super::auth_server::hidden_field(&page, "handle");
    let base = url::Url::parse(&url)
        .unwrap()
        .origin()
        .ascii_serialization();
    let continue_url = format!("{base}/accounts/continue");
    let continued = browser
        .post_form(&continue_url, &[("handle", &handle)])
        .await;
    browse(browser, continued, continue_url).await.0
}
