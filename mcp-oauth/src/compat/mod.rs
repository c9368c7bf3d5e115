//! mcp-remote's command line (0.15.1): `mcp-oauth URL [PORT] [flags]`, read the way mcp-remote
//! reads it, so a desktop configuration copied from it starts as it did. Its defaults come
//! along where users depend on them: the callback port derived from the arguments (an MD5, as
//! mcp-remote computes it), `http://localhost:PORT/oauth/callback`, and credentials kept apart
//! per resource, headers and authorization parameters. A flag with no meaning here is taken
//! with a warning; none stops the bridge from starting.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use super::cli_error::CliError;
use super::network::Network;
use super::{GrantChoice, Options, Protocol, StoreChoice, StoreOptions, Transport};

/// What mcp-remote's arguments ask for, in mcp-oauth's terms.
pub(crate) struct Compat {
    pub(crate) url: String,
    pub(crate) options: Options,
    pub(crate) transport: Transport,
    pub(crate) protocol: Protocol,
    /// The log filter `--debug` or `--silent` chose.
    pub(crate) log_filter: Option<&'static str>,
    /// What was taken without effect, to say on standard error.
    pub(crate) warnings: Vec<String>,
    /// `--log-file`, mcp-oauth's own, taken here too: clients that drop standard error need it.
    pub(crate) log_file: Option<std::path::PathBuf>,
}

/// Our own commands and top-level flags: anything else first is mcp-remote's command line.
const OURS: &[&str] = &[
    "proxy",
    "login",
    "logout",
    "status",
    "call",
    "help",
    "-h",
    "--help",
    "-V",
    "--version",
    "--log-file",
];

/// Whether `args` (without the program's name) are an mcp-remote command line.
pub(crate) fn is_mcp_remote_style(args: &[String]) -> bool {
    args.first()
        .is_some_and(|first| !OURS.contains(&first.as_str()) && !first.starts_with("--log-file="))
}

/// mcp-oauth's own flags, which mean something only after `proxy`.
const OUR_FLAGS: &[&str] = &[
    "--client-id",
    "--client-secret",
    "--issuer",
    "--grant",
    "--assertion-file",
    "--scope",
    "--no-resource",
    "--callback-port",
    "--callback-host",
    "--no-browser",
    "--ca-file",
    "--store",
    "--store-file",
];

/// Flags that take no value.
const SWITCHES: &[&str] = &[
    "--allow-http",
    "--debug",
    "--silent",
    "--ipv4",
    "--enable-proxy",
    "--keep-alive",
    "--disable-cookies",
    "--device-code",
    "--client-credentials",
    "--use-id-token",
    "--disable-resource-parameter",
];

/// Flags that take a value; those marked may be repeated, the others count once (the first,
/// as mcp-remote reads them).
const VALUED: &[(&str, bool)] = &[
    ("--connect-timeout", false),
    ("--headers-timeout", false),
    ("--body-timeout", false),
    ("--ping-interval", false),
    ("--transport", false),
    ("--protocol", false),
    ("--host", false),
    ("--callback-path", false),
    ("--auth-success-url", false),
    ("--auth-timeout", false),
    ("--static-oauth-client-metadata", false),
    ("--static-oauth-client-info", false),
    ("--client-metadata-url", false),
    ("--token-endpoint", false),
    ("--resource", false),
    ("--authorize-param", true),
    ("--ignore-tool", true),
];

/// Authorization parameters the flow sets itself.
const RESERVED_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// Reads an mcp-remote command line; `env` gives environment variables, `read` files.
pub(crate) fn parse(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<Compat, CliError> {
    let mut warnings = Vec::new();
    // Headers first, wherever they are, as mcp-remote takes them out before anything else.
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut rest = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--header" | "--header-file" => {
                let Some(value) = iter.next() else {
                    warnings.push(format!("{arg} without a value: ignored"));
                    continue;
                };
                if arg == "--header" {
                    add_header(&mut headers, value, &mut warnings);
                } else {
                    let text = read(value).map_err(|e| {
                        CliError::new(format!("cannot read --header-file {value}: {e}"))
                    })?;
                    // A byte-order mark (Notepad, PowerShell) is not part of the first header.
                    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
                    for line in text.lines().map(str::trim) {
                        if !line.is_empty() && !line.starts_with('#') {
                            add_header(&mut headers, line, &mut warnings);
                        }
                    }
                }
            }
            _ => rest.push(arg.clone()),
        }
    }
    let url = match rest.first() {
        Some(url) if !url.starts_with("--") => url.clone(),
        _ => return Err(CliError::new(
            "usage: mcp-oauth <https://server-url> [callback-port] [flags] (or mcp-oauth --help)",
        )),
    };
    let port = rest
        .get(1)
        .and_then(|p| leading_number(p))
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0);
    let mut switches = Vec::new();
    let mut values: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut log_file = None;
    let mut i = if port.is_some() { 2 } else { 1 };
    while i < rest.len() {
        let arg = rest[i].as_str();
        if let Some(switch) = SWITCHES.iter().find(|s| **s == arg) {
            switches.push(*switch);
        } else if let Some((flag, repeatable)) = VALUED.iter().find(|(f, _)| *f == arg) {
            match rest.get(i + 1) {
                Some(value) => {
                    let seen = values.entry(flag).or_default();
                    if *repeatable || seen.is_empty() {
                        seen.push(value.clone());
                    }
                    i += 1;
                }
                None => warnings.push(format!("{flag} without a value: ignored")),
            }
        } else if arg == "--log-file" || arg.starts_with("--log-file=") {
            let value = match arg.strip_prefix("--log-file=") {
                Some(value) => Some(value.to_owned()),
                None => {
                    i += 1;
                    rest.get(i).cloned()
                }
            };
            log_file = value.map(std::path::PathBuf::from);
        } else if let Some(flag) = OUR_FLAGS
            .iter()
            .find(|flag| arg.split('=').next() == Some(**flag))
        {
            return Err(CliError::new(format!(
                "{flag} is mcp-oauth's own flag: use `mcp-oauth proxy URL {flag} ...`"
            )));
        } else {
            // Not quoted: a value given without its flag may be a secret.
            warnings.push(format!(
                "an unknown argument ({} characters) was ignored",
                arg.chars().count()
            ));
        }
        i += 1;
    }
    let on = |switch: &str| switches.contains(&switch);
    let value = |flag: &str| values.get(flag).and_then(|v| v.first()).cloned();
    let all = |flag: &str| values.get(flag).cloned().unwrap_or_default();
    // Seconds as mcp-remote reads them (a leading number); anything else is ignored, said.
    let mut seconds = |flag: &str| {
        let given = value(flag)?;
        let parsed = leading_number(&given);
        if parsed.is_none() {
            warnings.push(format!("{flag}: not a number of seconds, ignored"));
        }
        parsed
    };
    let network = Network {
        allow_http: on("--allow-http"),
        connect_timeout: seconds("--connect-timeout"),
        headers_timeout: seconds("--headers-timeout"),
        body_timeout: seconds("--body-timeout"),
        ipv4: on("--ipv4"),
        keep_alive: on("--keep-alive"),
        ping_interval: seconds("--ping-interval").filter(|s| *s > 0),
        disable_cookies: on("--disable-cookies"),
    };

    // Variables expanded as mcp-remote expands them (an unknown one stays as written); the
    // headers the bridge sets itself are left out rather than stopping it.
    let mut expanded = Vec::new();
    for (name, value) in &headers {
        if super::setup::is_bridge_header(name) {
            warnings.push(format!(
                "--header {name}: the bridge sets it itself, ignored"
            ));
            continue;
        }
        let value = expand(value, &env);
        if value.contains("${") {
            warnings.push(format!("--header {name}: a ${{VARIABLE}} in it is not set"));
        }
        expanded.push(format!("{name}: {value}"));
    }
    let mut options = Options {
        headers: expanded,
        headers_expanded: true,
        callback_port_flexible: false,
        client_id: None,
        client_secret: None,
        issuer: None,
        grant: GrantChoice::AuthorizationCode,
        assertion_file: None,
        client_metadata_url: value("--client-metadata-url").map(|u| u.trim().to_owned()),
        scopes: Vec::new(),
        authorize_params: Vec::new(),
        no_resource: on("--disable-resource-parameter"),
        use_id_token: on("--use-id-token"),
        resource: None,
        ignore_tools: all("--ignore-tool"),
        callback_port: None,
        callback_host: None,
        callback_path: None,
        credentials_key: None,
        no_browser: on("--device-code"),
        ca_file: None,
        network,
        store: StoreOptions {
            store: StoreChoice::Auto,
            store_file: None,
        },
    };
    // The resource: `--resource ""` switches it off, as --disable-resource-parameter does.
    let resource = value("--resource").map(|r| r.trim().to_owned());
    match resource.as_deref() {
        Some("") => options.no_resource = true,
        Some(resource) if !options.no_resource => {
            url::Url::parse(resource).map_err(|_| {
                CliError::new(format!("--resource {resource} is not an absolute URI"))
            })?;
            options.resource = Some(resource.to_owned());
        }
        Some(_) => warnings.push("--resource ignored: --disable-resource-parameter".into()),
        None => {}
    }
    let mut params = BTreeMap::new();
    for pair in all("--authorize-param") {
        let Some((key, val)) = pair.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(CliError::new(format!(
                "--authorize-param {pair}: expected key=value"
            )));
        };
        let key = key.trim();
        if RESERVED_PARAMS.contains(&key) {
            return Err(CliError::new(format!(
                "--authorize-param {key}: the flow sets it itself"
            )));
        }
        params.insert(key.to_owned(), val.to_owned());
    }
    for (key, val) in &params {
        match key.as_str() {
            "scope" => options.scopes = val.split_whitespace().map(str::to_owned).collect(),
            "resource" => warnings.push("--authorize-param resource: use --resource".into()),
            _ => options.authorize_params.push((key.clone(), val.clone())),
        }
    }
    if let Some(info) = value("--static-oauth-client-info") {
        let text = match info.strip_prefix('@') {
            Some(path) => read(path).map_err(|e| {
                CliError::new(format!(
                    "cannot read --static-oauth-client-info {path}: {e}"
                ))
            })?,
            None => info,
        };
        let info: serde_json::Value = serde_json::from_str(&expand(&text, &env))
            .map_err(|_| CliError::new("--static-oauth-client-info is not JSON"))?;
        options.client_id = info
            .get("client_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        if info.get("client_secret").is_some() {
            // The secret is sent only to an authorization server named ahead of time.
            warnings.push(
                "--static-oauth-client-info: client_secret ignored (give it with --client-id, \
                 --client-secret and --issuer under `mcp-oauth proxy`, so it goes only to that \
                 server)"
                    .into(),
            );
        }
    }
    if on("--client-credentials") {
        warnings.push(
            "--client-credentials: use `mcp-oauth proxy --grant client-credentials --client-id \
             --client-secret --issuer`; signing in as a person instead"
                .into(),
        );
    }
    let transport = match value("--transport").as_deref() {
        None | Some("http-first") => Transport::Auto,
        Some("http-only") => Transport::Streamable,
        Some("sse-only") => Transport::Sse,
        Some("sse-first") => {
            warnings.push("--transport sse-first: trying Streamable HTTP first".into());
            Transport::Auto
        }
        Some(other) => {
            warnings.push(format!("--transport {other}: unknown, using http-first"));
            Transport::Auto
        }
    };
    let protocol = match value("--protocol").as_deref() {
        None | Some("legacy") => Protocol::Legacy,
        Some("auto") => Protocol::Auto,
        Some(other) => {
            warnings.push(format!("--protocol {other}: unknown, using legacy"));
            Protocol::Legacy
        }
    };
    // The client metadata's scope is what mcp-remote asks for (`openid email` for an ID
    // token); the rest of the document is this client's own.
    if let Some(text) = value("--static-oauth-client-metadata") {
        let metadata: Option<serde_json::Value> = serde_json::from_str(&expand(&text, &env)).ok();
        match metadata.as_ref().map(|m| m.get("scope")) {
            None => warnings.push("--static-oauth-client-metadata is not JSON, ignored".into()),
            Some(Some(serde_json::Value::String(scope))) if options.scopes.is_empty() => {
                options.scopes = scope.split_whitespace().map(str::to_owned).collect();
            }
            Some(_) => {
                warnings.push("--static-oauth-client-metadata: only its scope is used here".into())
            }
        }
    }
    for ignored in ["--auth-success-url", "--auth-timeout", "--token-endpoint"] {
        if values.contains_key(ignored) {
            warnings.push(format!("{ignored}: not supported here, ignored"));
        }
    }
    // Where the browser comes back: mcp-remote's port, host and path, so a client registered
    // for it works unchanged.
    let hash = config_hash(
        &url,
        &options,
        &params,
        &headers,
        &value("--token-endpoint"),
    );
    options.callback_port = Some(port.unwrap_or_else(|| default_port(&hash)));
    // A port the user gave, or one a registration names, stays; a derived one may move.
    options.callback_port_flexible = port.is_none()
        && value("--static-oauth-client-info").is_none()
        && options.client_metadata_url.is_none();
    options.callback_host = Some(match value("--host") {
        Some(host) if host == "localhost" || host == "127.0.0.1" => host,
        Some(_) => {
            warnings
                .push("--host: the callback listens on this machine only; using localhost".into());
            default_host()
        }
        None => default_host(),
    });
    options.callback_path = Some(match value("--callback-path") {
        Some(path) if path.starts_with('/') => path,
        Some(path) => {
            warnings.push(format!(
                "--callback-path {path}: must start with /, using the default"
            ));
            "/oauth/callback".into()
        }
        None => "/oauth/callback".into(),
    });
    // Configurations for one server that differ in resource, headers or parameters keep
    // their own credentials; a plain URL shares them with `mcp-oauth proxy URL`.
    let plain = options.resource.is_none()
        && params.is_empty()
        && headers.is_empty()
        && options.client_metadata_url.is_none();
    if !plain {
        options.credentials_key = Some(format!(
            "{url}#mcp-remote-{}",
            isolation_key(&url, &options, &params, &headers)
        ));
    }
    let log_filter = if on("--debug") {
        Some("debug")
    } else if on("--silent") {
        Some("error")
    } else {
        None
    };
    Ok(Compat {
        url,
        options,
        transport,
        protocol,
        log_filter,
        warnings,
        log_file,
    })
}

/// `Name: value` as mcp-remote takes it (no space before the colon); a later one of the same
/// name replaces an earlier one.
fn add_header(headers: &mut Vec<(String, String)>, text: &str, warnings: &mut Vec<String>) {
    let parsed = text.split_once(':').filter(|(name, _)| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    match parsed {
        Some((name, value)) => {
            headers.retain(|(n, _)| n != name);
            headers.push((name.to_owned(), value.trim_start().to_owned()));
        }
        None => warnings.push(format!(
            "a header that is not `Name: value` was ignored ({} characters)",
            text.chars().count()
        )),
    }
}

/// The number a string starts with, as JavaScript's `parseInt` reads it.
fn leading_number(text: &str) -> Option<u64> {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `${NAME}` replaced by the variable; an unknown one is left as written.
fn expand(text: &str, env: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if end > 0 => {
                let name = &after[..end];
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            // `${}` stays as written, and what follows is still expanded.
            Some(_) => {
                out.push_str("${}");
                rest = &after[1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// mcp-remote's hash of a configuration: MD5, in hex, of its parts joined by `|`.
fn config_hash(
    url: &str,
    options: &Options,
    params: &BTreeMap<String, String>,
    headers: &[(String, String)],
    token_endpoint: &Option<String>,
) -> String {
    let mut parts = vec![url.to_owned()];
    if let Some(resource) = &options.resource {
        parts.push(resource.clone());
    }
    if !params.is_empty() {
        parts.push(serde_json::to_string(params).unwrap_or_default());
    }
    if !headers.is_empty() {
        let sorted: BTreeMap<&str, &str> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        parts.push(serde_json::to_string(&sorted).unwrap_or_default());
    }
    if let Some(url) = &options.client_metadata_url {
        parts.push(url.clone());
    }
    if let Some(endpoint) = token_endpoint
        .as_deref()
        .and_then(|e| url::Url::parse(e).ok())
    {
        parts.push(endpoint.to_string());
    }
    let digest = Md5::digest(parts.join("|").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What keeps a configuration's credentials apart: SHA-256 over its parts, each preceded by
/// its length, so no two configurations share a key (mcp-remote's MD5 over `|`-joined parts
/// only names its port).
fn isolation_key(
    url: &str,
    options: &Options,
    params: &BTreeMap<String, String>,
    headers: &[(String, String)],
) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    let mut part = |text: &str| {
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    };
    part(url);
    part(options.resource.as_deref().unwrap_or(""));
    part(&params.len().to_string());
    for (key, value) in params {
        part(key);
        part(value);
    }
    let sorted: BTreeMap<&str, &str> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    part(&sorted.len().to_string());
    for (name, value) in sorted {
        part(name);
        part(value);
    }
    part(options.client_metadata_url.as_deref().unwrap_or(""));
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// mcp-remote's default callback port: 3335 plus the hash's first two bytes modulo 45,816.
fn default_port(hash: &str) -> u16 {
    let first = u32::from_str_radix(hash.get(..4).unwrap_or("0"), 16).unwrap_or(0);
    u16::try_from(3335 + first % 45_816).unwrap_or(3335)
}

fn default_host() -> String {
    if cfg!(windows) {
        "127.0.0.1"
    } else {
        "localhost"
    }
    .into()
}

#[cfg(test)]
mod tests;
