//! mcp-remote's command lines, read.

use super::*;

fn args(line: &[&str]) -> Vec<String> {
    line.iter().map(|s| (*s).to_owned()).collect()
}

fn parsed(line: &[&str]) -> Compat {
    parse(
        &args(line),
        |_| None,
        |_| Err(std::io::ErrorKind::NotFound.into()),
    )
    .unwrap()
}

#[test]
fn the_default_port_is_mcp_remotes() {
    // Vectors computed with mcp-remote 0.15.1's own algorithm.
    assert_eq!(
        parsed(&["https://example.com/mcp"]).options.callback_port,
        Some(37931)
    );
    assert_eq!(
        parsed(&["https://remote.mcp.server/sse"])
            .options
            .callback_port,
        Some(12704)
    );
    let tenant = parsed(&[
        "https://mcp.atlassian.com/v1/sse",
        "--resource",
        "https://tenant1.atlassian.net/",
    ]);
    assert_eq!(tenant.options.callback_port, Some(12116));
    let with_header = parsed(&[
        "https://remote.mcp.server/sse",
        "--header",
        "Authorization: Bearer ${AUTH_TOKEN}",
    ]);
    assert_eq!(with_header.options.callback_port, Some(33569));
}

#[test]
fn its_command_lines_read_as_it_reads_them() {
    let c = parsed(&[
        "https://example.com/mcp",
        "9696",
        "--allow-http",
        "--transport",
        "sse-only",
        "--debug",
        "--host",
        "127.0.0.1",
        "--ignore-tool",
        "delete*",
        "--ignore-tool",
        "admin_*",
        "--authorize-param",
        "audience=api",
        "--keep-alive",
        "--ping-interval",
        "60",
        "--connect-timeout",
        "30",
        "--body-timeout",
        "0",
        "--ipv4",
        "--disable-cookies",
    ]);
    assert_eq!(c.url, "https://example.com/mcp");
    assert_eq!(c.options.callback_port, Some(9696));
    assert_eq!(c.options.callback_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(c.options.callback_path.as_deref(), Some("/oauth/callback"));
    assert!(matches!(c.transport, Transport::Sse));
    assert_eq!(c.log_filter, Some("debug"));
    assert_eq!(c.options.ignore_tools, ["delete*", "admin_*"]);
    assert_eq!(
        c.options.authorize_params,
        [("audience".into(), "api".into())]
    );
    let network = &c.options.network;
    assert!(network.allow_http && network.ipv4 && network.disable_cookies);
    assert_eq!(
        network.ping_every().unwrap(),
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(network.connect_timeout, Some(30));
    assert_eq!(network.body_timeout, Some(0));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Headers are taken out first, so one may come before the URL.
    let c = parsed(&[
        "--header",
        "X-Key: ${KEY}",
        "https://example.com/mcp",
        "--silent",
    ]);
    assert_eq!(c.url, "https://example.com/mcp");
    assert_eq!(c.options.headers, ["X-Key: ${KEY}"]);
    assert_eq!(c.log_filter, Some("error"));
    // Unknown flags warn; none stops the bridge.
    let c = parsed(&[
        "https://example.com/mcp",
        "--what-is-this",
        "--auth-timeout",
        "60",
    ]);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn configurations_for_one_server_keep_their_own_credentials() {
    let plain = parsed(&["https://example.com/mcp"]);
    assert_eq!(plain.options.credentials_key, None);
    let a = parsed(&[
        "https://example.com/mcp",
        "--resource",
        "https://a.example/",
    ]);
    let b = parsed(&[
        "https://example.com/mcp",
        "--resource",
        "https://b.example/",
    ]);
    assert_ne!(a.options.credentials_key, b.options.credentials_key);
    assert!(a.options.credentials_key.is_some());
    let off = parsed(&["https://example.com/mcp", "--resource", ""]);
    assert!(off.options.no_resource);
}

#[test]
fn bad_lines_are_typed_errors() {
    let fails = |line: &[&str]| {
        parse(
            &args(line),
            |_| None,
            |_| Err(std::io::ErrorKind::NotFound.into()),
        )
        .is_err()
    };
    assert!(fails(&["--debug"]));
    assert!(fails(&["https://x/", "--authorize-param", "state=1"]));
    assert!(fails(&["https://x/", "--authorize-param", "novalue"]));
    assert!(fails(&["https://x/", "--header-file", "/missing"]));
    assert!(fails(&["https://x/", "--resource", "relative/path"]));
    assert!(fails(&[
        "https://x/",
        "--static-oauth-client-info",
        "{not json"
    ]));
}

#[test]
fn variables_expand_in_static_client_info() {
    let env = |name: &str| (name == "ID").then(|| "client-7".to_owned());
    let line = args(&[
        "https://x/",
        "--static-oauth-client-info",
        r#"{"client_id":"${ID}"}"#,
    ]);
    let c = parse(&line, env, |_| Err(std::io::ErrorKind::NotFound.into())).unwrap();
    assert_eq!(c.options.client_id.as_deref(), Some("client-7"));
    assert_eq!(expand("a ${MISSING} b", &env), "a ${MISSING} b");
    assert_eq!(expand("${ID}${", &env), "client-7${");
    assert_eq!(expand("${} ${ID}", &env), "${} client-7");
}

#[test]
fn what_would_stop_mcp_oauth_is_taken_as_mcp_remote_takes_it() {
    let env = |name: &str| (name == "TOKEN").then(|| "t0k".to_owned());
    let line = args(&[
        "https://x/",
        "--header",
        "Authorization: Bearer ${TOKEN}",
        "--header",
        "X-Missing: ${NOT_SET}",
        "--header",
        "Accept: text/plain",
        "--authorize-param",
        "scope=read write",
        "--host",
        "my-laptop",
        "s3cret-value",
    ]);
    let c = parse(&line, env, |_| Err(std::io::ErrorKind::NotFound.into())).unwrap();
    assert!(c.options.headers_expanded);
    assert_eq!(
        c.options.headers,
        ["Authorization: Bearer t0k", "X-Missing: ${NOT_SET}"],
        "an unknown variable stays; a header the bridge sets is left out"
    );
    assert_eq!(c.options.scopes, ["read", "write"]);
    assert_eq!(
        c.options.callback_host.as_deref(),
        Some(default_host().as_str())
    );
    let said = c.warnings.join("\n");
    assert!(
        !said.contains("s3cret-value") && !said.contains("t0k"),
        "{said}"
    );
    assert!(said.contains("NOT") || said.contains("not set"), "{said}");
    // mcp-oauth's own flags belong after `proxy`; --log-file is taken here too.
    let ours = parse(
        &args(&["https://x/", "--client-secret", "abc"]),
        |_| None,
        |_| Err(std::io::ErrorKind::NotFound.into()),
    );
    let error = ours.err().unwrap().to_string();
    assert!(
        error.contains("mcp-oauth proxy") && !error.contains("abc"),
        "{error}"
    );
    let logged = parsed(&["https://x/", "--log-file", "/tmp/b.log"]);
    assert_eq!(
        logged.log_file.as_deref(),
        Some(std::path::Path::new("/tmp/b.log"))
    );
    assert!(!is_mcp_remote_style(&args(&[
        "--log-file=/tmp/b.log",
        "proxy",
        "https://x/"
    ])));
}

#[test]
fn no_two_configurations_share_credentials() {
    let a = parsed(&["https://x/", "--resource", r#"https://r/|{"a":"b"}"#]);
    let b = parsed(&[
        "https://x/",
        "--resource",
        "https://r/",
        "--authorize-param",
        "a=b",
    ]);
    assert_ne!(a.options.credentials_key, b.options.credentials_key);
    let bom = parse(
        &args(&["https://x/", "--header-file", "h"]),
        |_| None,
        |_| Ok("\u{feff}X-Tenant: a\n".into()),
    )
    .unwrap();
    assert_eq!(bom.options.headers, ["X-Tenant: a"]);
}

proptest::proptest! {
    /// Any command line parses or fails with a typed error, never a panic, and a parsed
    /// one always has a callback port in mcp-remote's range or the one given.
    #[test]
    fn any_command_line_parses_or_fails(line in proptest::collection::vec(".{0,20}", 0..8)) {
        if let Ok(c) = parse(&line, |_| None, |_| Ok(String::new())) {
            let port = c.options.callback_port.unwrap();
            proptest::prop_assert!(port > 0);
        }
    }
}

#[test]
fn use_id_token_asks_the_metadatas_scope() {
    let c = parsed(&[
        "https://example.com/mcp",
        "--use-id-token",
        "--static-oauth-client-metadata",
        r#"{ "scope": "openid email" }"#,
    ]);
    assert!(c.options.use_id_token);
    assert_eq!(c.options.scopes, ["openid", "email"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn protocol_auto_bridges_the_eras() {
    let auto = parsed(&["https://example.com/mcp", "--protocol", "auto"]);
    assert!(auto.protocol == Protocol::Auto && auto.warnings.is_empty());
    let legacy = parsed(&["https://example.com/mcp"]);
    assert!(legacy.protocol == Protocol::Legacy);
    let unknown = parsed(&["https://example.com/mcp", "--protocol", "future"]);
    assert!(unknown.protocol == Protocol::Legacy && unknown.warnings.len() == 1);
}
