//! `WWW-Authenticate` challenges: parsing (RFC 7235 §4.1, RFC 9110 §11) and the Bearer challenge
//! of RFC 6750 §3 with the `resource_metadata` parameter of RFC 9728 §5.1.
//!
//! ```
//! use tower_mcp_oauth::challenge::{parse_challenges, BearerChallenge};
//!
//! let header = concat!(
//!     r#"Basic realm="x, y", Bearer error="insufficient_scope", scope="files:read files:write", "#,
//!     r#"resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource""#,
//! );
//! let challenges = parse_challenges(header).unwrap();
//! assert_eq!(challenges.len(), 2);
//! let bearer = BearerChallenge::from_challenge(&challenges[1]).unwrap();
//! assert_eq!(bearer.error.as_deref(), Some("insufficient_scope"));
//! assert_eq!(bearer.scopes(), vec!["files:read", "files:write"]);
//! ```

use std::fmt;

use http::header::{HeaderMap, WWW_AUTHENTICATE};

use crate::error::{Error, ErrorKind, Result};

/// One challenge: an auth scheme with either a token68 or a list of parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (compare it case-insensitively).
    pub scheme: String,
    /// The token68 form of the credentials, when the challenge uses it instead of parameters.
    pub token68: Option<String>,
    /// Parameters in order, names lowercased (they are case-insensitive), values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Whether the scheme is `scheme`, ignoring case.
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The first parameter named `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, pos: usize) -> Option<u8> {
        self.bytes.get(pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn ows_end(&self, mut pos: usize) -> usize {
        while matches!(self.peek_at(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        pos
    }

    fn skip_ows_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    fn token_end(&self, mut pos: usize) -> usize {
        while self.peek_at(pos).is_some_and(is_tchar) {
            pos += 1;
        }
        pos
    }

    fn text(&self, from: usize, to: usize) -> String {
        String::from_utf8_lossy(&self.bytes[from..to]).into_owned()
    }

    fn quoted_string(&mut self) -> Result<String> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(invalid("a quoted string is not terminated")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&value).into_owned());
                }
                Some(b'\\') => {
                    let escaped = self
                        .peek_at(self.pos + 1)
                        .ok_or_else(|| invalid("a quoted string ends with a lone backslash"))?;
                    value.push(escaped);
                    self.pos += 2;
                }
                Some(b) => {
                    value.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    /// At `pos` stands `token OWS "="` that is a parameter (not token68 padding).
    fn param_starts_at(&self, pos: usize) -> bool {
        let end = self.token_end(pos);
        if end == pos {
            return false;
        }
        let eq = self.ows_end(end);
        self.peek_at(eq) == Some(b'=') && {
            // `abc==` or `abc=` followed by a list end is token68, not a parameter.
            let after = self.ows_end(eq + 1);
            !matches!(self.peek_at(after), None | Some(b',' | b'='))
        }
    }

    /// At `pos` stands a token68 that fills the whole list element.
    fn token68_at(&self, pos: usize) -> Option<usize> {
        let mut end = pos;
        while self.peek_at(end).is_some_and(is_token68_char) {
            end += 1;
        }
        if end == pos {
            return None;
        }
        while self.peek_at(end) == Some(b'=') {
            end += 1;
        }
        let after = self.ows_end(end);
        matches!(self.peek_at(after), None | Some(b',')).then_some(end)
    }
}

fn invalid(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        format!("malformed WWW-Authenticate header: {what}"),
    )
}

/// Parses the value of one `WWW-Authenticate` header into its challenges.
///
/// Handles several challenges in one value, quoted strings with escapes and commas, empty list
/// elements, token68 credentials, and case-insensitive parameter names.
///
/// # Errors
/// [`ErrorKind::InvalidResponse`] when the value does not follow the grammar.
pub fn parse_challenges(value: &str) -> Result<Vec<Challenge>> {
    let mut cursor = Cursor {
        bytes: value.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        cursor.skip_ows_and_commas();
        if cursor.peek().is_none() {
            break;
        }
        let start = cursor.pos;
        let end = cursor.token_end(start);
        if end == start {
            return Err(invalid("expected an auth scheme"));
        }
        let mut challenge = Challenge {
            scheme: cursor.text(start, end),
            token68: None,
            params: Vec::new(),
        };
        cursor.pos = end;
        match cursor.peek() {
            None | Some(b',') => {
                challenges.push(challenge);
                continue;
            }
            Some(b' ' | b'\t') => cursor.skip_ows(),
            Some(_) => return Err(invalid("expected a space after the auth scheme")),
        }
        if !cursor.param_starts_at(cursor.pos) {
            if let Some(end) = cursor.token68_at(cursor.pos) {
                challenge.token68 = Some(cursor.text(cursor.pos, end));
                cursor.pos = end;
                challenges.push(challenge);
                continue;
            }
        }
        // auth-param list: stops at a list element that starts a new challenge.
        loop {
            cursor.skip_ows_and_commas();
            if cursor.peek().is_none() || !cursor.param_starts_at(cursor.pos) {
                break;
            }
            let name_end = cursor.token_end(cursor.pos);
            let name = cursor.text(cursor.pos, name_end).to_ascii_lowercase();
            cursor.pos = cursor.ows_end(name_end) + 1; // past '='
            cursor.skip_ows();
            let value = match cursor.peek() {
                Some(b'"') => cursor.quoted_string()?,
                _ => {
                    let value_end = cursor.token_end(cursor.pos);
                    if value_end == cursor.pos {
                        return Err(invalid("a parameter has no value"));
                    }
                    let value = cursor.text(cursor.pos, value_end);
                    cursor.pos = value_end;
                    value
                }
            };
            challenge.params.push((name, value));
            cursor.skip_ows();
            match cursor.peek() {
                None | Some(b',') => {}
                Some(_) => return Err(invalid("expected a comma between parameters")),
            }
        }
        challenges.push(challenge);
    }
    Ok(challenges)
}

/// The Bearer challenge of RFC 6750 with RFC 9728's `resource_metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `realm`.
    pub realm: Option<String>,
    /// `error`: `invalid_request`, `invalid_token`, `insufficient_scope`, …
    pub error: Option<String>,
    /// `error_description`, human-readable.
    pub error_description: Option<String>,
    /// `error_uri`.
    pub error_uri: Option<String>,
    /// `scope`: space-separated scopes the resource asks for.
    pub scope: Option<String>,
    /// `resource_metadata`: URL of the protected resource metadata (RFC 9728).
    pub resource_metadata: Option<String>,
}

impl BearerChallenge {
    /// Reads the Bearer challenge from a parsed challenge, or `None` for another scheme.
    pub fn from_challenge(challenge: &Challenge) -> Option<Self> {
        challenge
            .is_scheme("bearer")
            .then(|| Self::parameters_of(challenge))
    }

    /// Reads a DPoP challenge (RFC 9449 §7.1), which carries the same parameters, or `None`
    /// for another scheme.
    pub fn from_dpop_challenge(challenge: &Challenge) -> Option<Self> {
        challenge
            .is_scheme("dpop")
            .then(|| Self::parameters_of(challenge))
    }

    fn parameters_of(challenge: &Challenge) -> Self {
        let get = |name: &str| challenge.param(name).map(str::to_owned);
        Self {
            realm: get("realm"),
            error: get("error"),
            error_description: get("error_description"),
            error_uri: get("error_uri"),
            scope: get("scope"),
            resource_metadata: get("resource_metadata"),
        }
    }

    /// The first Bearer challenge across every `WWW-Authenticate` header, or when there is
    /// none, the first DPoP challenge (a resource that takes DPoP tokens only may send no
    /// Bearer challenge). Headers that do not parse are skipped, so one broken header does not
    /// hide a good one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let challenges = all_challenges(headers);
        challenges
            .iter()
            .find_map(Self::from_challenge)
            .or_else(|| challenges.iter().find_map(Self::from_dpop_challenge))
    }

    /// The first DPoP challenge, or else the Bearer one: what a client that sent a DPoP token
    /// reads, since the error about it is in the DPoP challenge.
    pub fn from_headers_dpop_first(headers: &HeaderMap) -> Option<Self> {
        let challenges = all_challenges(headers);
        challenges
            .iter()
            .find_map(Self::from_dpop_challenge)
            .or_else(|| challenges.iter().find_map(Self::from_challenge))
    }

    /// The challenge rendered for `scheme` (`Bearer`, `DPoP`) with extra parameters first (a
    /// DPoP challenge's `algs`), every value quoted.
    pub fn render(&self, scheme: &str, extra: &[(&str, &str)]) -> String {
        let params = [
            ("realm", self.realm.as_deref()),
            ("error", self.error.as_deref()),
            ("error_description", self.error_description.as_deref()),
            ("error_uri", self.error_uri.as_deref()),
            ("scope", self.scope.as_deref()),
            ("resource_metadata", self.resource_metadata.as_deref()),
        ];
        let mut out = String::from(scheme);
        let present = extra
            .iter()
            .map(|(name, value)| (*name, Some(*value)))
            .chain(params)
            .filter_map(|(name, value)| Some((name, value?)));
        for (index, (name, value)) in present.enumerate() {
            out.push_str(if index == 0 { " " } else { ", " });
            out.push_str(name);
            out.push_str("=\"");
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out
    }

    /// The `scope` parameter split into scopes.
    pub fn scopes(&self) -> Vec<&str> {
        self.scope
            .as_deref()
            .map(|s| s.split_ascii_whitespace().collect())
            .unwrap_or_default()
    }
}

/// Renders the challenge as a `Bearer` header value, quoting every parameter.
impl fmt::Display for BearerChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("Bearer", &[]))
    }
}

/// Every challenge of every `WWW-Authenticate` header, skipping headers that do not parse.
fn all_challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        // Quoted strings may carry obs-text (RFC 9110 §5.6.4): parse the bytes, not ASCII only.
        .filter_map(|value| parse_challenges(&String::from_utf8_lossy(value.as_bytes())).ok())
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn single_bearer_with_params() {
        let c = parse_challenges(r#"Bearer realm="example", error="invalid_token""#).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "Bearer");
        assert_eq!(
            params(&c[0]),
            vec![("realm", "example"), ("error", "invalid_token")]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let c = parse_challenges(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple", Bearer scope="a b""#,
        )
        .unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].param("title"), Some(r#"Login to "apps""#));
        assert_eq!(c[0].param("type"), Some("1"));
        assert_eq!(c[1].param("realm"), Some("simple"));
        assert_eq!(c[2].param("scope"), Some("a b"));
    }

    #[test]
    fn commas_inside_quotes_do_not_split() {
        let c =
            parse_challenges(r#"Bearer error_description="a, b, Basic c=d", scope="x""#).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("error_description"), Some("a, b, Basic c=d"));
        assert_eq!(c[0].param("scope"), Some("x"));
    }

    #[test]
    fn case_insensitive_scheme_and_names() {
        let c =
            parse_challenges(r#"bEaReR ERROR="invalid_token", Resource_Metadata="https://x/y""#)
                .unwrap();
        let b = BearerChallenge::from_challenge(&c[0]).unwrap();
        assert_eq!(b.error.as_deref(), Some("invalid_token"));
        assert_eq!(b.resource_metadata.as_deref(), Some("https://x/y"));
    }

    #[test]
    fn token68_and_bare_schemes() {
        let c = parse_challenges("Basic dXNlcjpwYXNz==, Negotiate, Bearer").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].token68.as_deref(), Some("dXNlcjpwYXNz=="));
        assert!(c[1].params.is_empty() && c[1].token68.is_none());
        assert!(c[2].is_scheme("bearer"));
    }

    #[test]
    fn whitespace_around_equals_and_empty_elements() {
        let c = parse_challenges(r#" , Bearer  realm = "a" ,, error = invalid_token , "#).unwrap();
        assert_eq!(
            params(&c[0]),
            vec![("realm", "a"), ("error", "invalid_token")]
        );
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for bad in [
            r#"Bearer realm="unterminated"#,
            r#"Bearer realm="x" junk"#,
            "=x",
            r#"Bearer realm="ends with \"#,
        ] {
            let err = parse_challenges(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{bad}");
        }
    }

    #[test]
    fn bearer_across_several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, "Basic realm=\"x\"".parse().unwrap());
        headers.append(WWW_AUTHENTICATE, "\"broken".parse().unwrap());
        headers.append(
            WWW_AUTHENTICATE,
            http::HeaderValue::from_bytes(b"Newauth realm=\"caf\xc3\xa9\"").unwrap(),
        );
        headers.append(
            WWW_AUTHENTICATE,
            r#"Bearer resource_metadata="http://127.0.0.1/prm", scope="mcp""#
                .parse()
                .unwrap(),
        );
        let b = BearerChallenge::from_headers(&headers).unwrap();
        assert_eq!(b.resource_metadata.as_deref(), Some("http://127.0.0.1/prm"));
        assert_eq!(b.scopes(), vec!["mcp"]);
    }

    #[test]
    fn render_round_trips() {
        let b = BearerChallenge {
            error: Some("insufficient_scope".into()),
            error_description: Some(r#"needs "files:write" \ now"#.into()),
            scope: Some("files:read files:write".into()),
            resource_metadata: Some("https://x/.well-known/oauth-protected-resource".into()),
            ..Default::default()
        };
        let rendered = b.to_string();
        let parsed = parse_challenges(&rendered).unwrap();
        assert_eq!(BearerChallenge::from_challenge(&parsed[0]).unwrap(), b);
        assert_eq!(BearerChallenge::default().to_string(), "Bearer");
    }

    #[test]
    fn dpop_challenges_are_read_and_rendered_beside_bearer() {
        let only_dpop = headers_of(&[r#"DPoP resource_metadata="https://r/.well-known/x""#]);
        let read = BearerChallenge::from_headers(&only_dpop).unwrap();
        assert_eq!(
            read.resource_metadata.as_deref(),
            Some("https://r/.well-known/x")
        );

        let both = headers_of(&[
            r#"Bearer resource_metadata="https://r/m""#,
            r#"DPoP algs="ES256 PS256", error="use_dpop_nonce""#,
        ]);
        assert_eq!(BearerChallenge::from_headers(&both).unwrap().error, None);
        assert_eq!(
            BearerChallenge::from_headers_dpop_first(&both)
                .unwrap()
                .error
                .as_deref(),
            Some("use_dpop_nonce")
        );
        let challenge = BearerChallenge {
            error: Some("invalid_dpop_proof".into()),
            ..Default::default()
        };
        let rendered = challenge.render("DPoP", &[("algs", "ES256 EdDSA")]);
        assert_eq!(
            rendered,
            r#"DPoP algs="ES256 EdDSA", error="invalid_dpop_proof""#
        );
        let parsed = parse_challenges(&rendered).unwrap();
        assert_eq!(parsed[0].param("algs"), Some("ES256 EdDSA"));
    }

    fn headers_of(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(WWW_AUTHENTICATE, value.parse().unwrap());
        }
        map
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Parameter values as servers send them: printable text with quotes and backslashes.
        fn value() -> impl Strategy<Value = Option<String>> {
            proptest::option::of("[ -~]{0,40}")
        }

        proptest! {
            #[test]
            fn a_rendered_challenge_parses_back_to_itself(
                realm in value(), error in value(), error_description in value(),
                error_uri in value(), scope in value(), resource_metadata in value(),
            ) {
                let challenge = BearerChallenge {
                    realm, error, error_description, error_uri, scope, resource_metadata,
                };
                let rendered = challenge.to_string();
                let parsed = parse_challenges(&rendered).unwrap();
                prop_assert_eq!(parsed.len(), 1);
                prop_assert_eq!(BearerChallenge::from_challenge(&parsed[0]), Some(challenge));
            }

            #[test]
            fn any_header_value_parses_or_fails_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let text = String::from_utf8_lossy(&bytes);
                if let Ok(challenges) = parse_challenges(&text) {
                    for challenge in &challenges {
                        prop_assert!(!challenge.scheme.is_empty());
                    }
                }
                if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                    let mut headers = HeaderMap::new();
                    headers.append(WWW_AUTHENTICATE, value);
                    let _ = BearerChallenge::from_headers(&headers);
                }
            }

            #[test]
            fn challenge_shaped_input_never_panics(
                pieces in proptest::collection::vec(prop_oneof![
                    Just("Bearer".to_owned()), Just("Basic".to_owned()), Just(" ".to_owned()),
                    Just(",".to_owned()), Just("=".to_owned()), Just("\"".to_owned()),
                    Just("\\".to_owned()), Just("realm".to_owned()), Just("error".to_owned()),
                    Just("abc==".to_owned()), "[ -~]{0,6}",
                ], 0..24)
            ) {
                let _ = parse_challenges(&pieces.concat());
            }
        }
    }
}
