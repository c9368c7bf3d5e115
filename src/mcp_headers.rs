//! The MCP 2026-07-28 standard request headers (SEP-2243), for both sides: `Mcp-Method` and
//! `Mcp-Name` mirror the JSON-RPC body, and `Mcp-Param-<Name>` mirrors the tool arguments a
//! tool's input schema marks with `x-mcp-header`.
//!
//! A value that is not plain visible ASCII without surrounding whitespace travels as
//! `=?base64?<base64 of its UTF-8>?=`, as does a plain value that would read as that form.
//!
//! ```
//! use serde_json::json;
//! use tower_mcp_oauth::mcp_headers::{decode_value, encode_value, ToolHeaders};
//!
//! assert_eq!(encode_value("us-west1"), "us-west1");
//! assert_eq!(encode_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
//! assert_eq!(decode_value("=?base64?IHBhZGRlZCA=?=").unwrap(), " padded ");
//!
//! let schema = json!({"type": "object", "properties": {
//!     "region": {"type": "string", "x-mcp-header": "Region"},
//!     "query": {"type": "string"},
//! }});
//! let headers = ToolHeaders::from_input_schema(&schema).unwrap();
//! let sent = headers.for_arguments(&json!({"region": "eu", "query": "SELECT 1"}));
//! assert_eq!(sent.len(), 1);
//! assert_eq!(sent[0].0, "mcp-param-region");
//! assert_eq!(sent[0].1, "eu");
//! ```

use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use serde_json::Value;

/// The header that names the JSON-RPC method.
pub const MCP_METHOD: &str = "mcp-method";
/// The header that names what a call targets: the tool or prompt name, or the resource URI.
pub const MCP_NAME: &str = "mcp-name";
/// The prefix of the headers that mirror annotated tool arguments.
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";
/// The schema keyword that marks an argument to mirror.
pub const X_MCP_HEADER: &str = "x-mcp-header";

const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// The largest integer a header may carry: JSON numbers beyond it are not exact everywhere.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Whether `value` can travel as it is: visible ASCII and spaces, no space at either end, and
/// not already looking like the base64 form.
fn is_plain(value: &str) -> bool {
    let looks_encoded = value.starts_with(BASE64_PREFIX) && value.ends_with(BASE64_SUFFIX);
    value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !looks_encoded
}

/// The header value for `value`: as it is when plain, else in the base64 form. Always a valid
/// header value.
pub fn encode_value(value: &str) -> HeaderValue {
    if is_plain(value) {
        if let Ok(header) = HeaderValue::from_str(value) {
            return header;
        }
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
    HeaderValue::from_str(&format!("{BASE64_PREFIX}{encoded}{BASE64_SUFFIX}"))
        .expect("base64 is visible ASCII")
}

/// Why a header value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeaderValue;

impl std::fmt::Display for InvalidHeaderValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an MCP header value is neither visible ASCII nor valid base64 UTF-8")
    }
}

impl std::error::Error for InvalidHeaderValue {}

/// The value a header carries, decoding the base64 form.
///
/// # Errors
/// [`InvalidHeaderValue`] for bytes outside visible ASCII, or a base64 form that is not valid
/// base64 of UTF-8.
pub fn decode_value(header: &str) -> Result<String, InvalidHeaderValue> {
    match header
        .strip_prefix(BASE64_PREFIX)
        .and_then(|v| v.strip_suffix(BASE64_SUFFIX))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(InvalidHeaderValue),
        None if header.bytes().all(|b| (0x20..=0x7e).contains(&b)) => Ok(header.to_owned()),
        None => Err(InvalidHeaderValue),
    }
}

/// `Mcp-Method`, and `Mcp-Name` where the method targets something, for one JSON-RPC message.
/// A response (no `method`) gets none.
pub fn standard_headers(message: &Value) -> Vec<(HeaderName, HeaderValue)> {
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut headers = vec![(HeaderName::from_static(MCP_METHOD), encode_value(method))];
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return headers,
    };
    if let Some(name) = message
        .pointer(&format!("/params/{field}"))
        .and_then(Value::as_str)
    {
        headers.push((HeaderName::from_static(MCP_NAME), encode_value(name)));
    }
    headers
}

/// Why a tool's `x-mcp-header` annotations are refused; a client drops such a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToolHeader {
    /// An annotation is not a non-empty HTTP token (RFC 9110 `tchar`s only).
    Name(String),
    /// Two annotations name the same header, ignoring case.
    Duplicate(String),
    /// An annotation sits on a property that is not a string, integer or boolean.
    Type(String),
    /// An annotation's value is not a string.
    NotAString,
}

impl std::fmt::Display for InvalidToolHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(name) => write!(f, "x-mcp-header {name:?} is not a header name"),
            Self::Duplicate(name) => write!(f, "x-mcp-header {name:?} is used twice"),
            Self::Type(name) => write!(
                f,
                "x-mcp-header {name:?} is on a property that is not a string, integer or boolean"
            ),
            Self::NotAString => f.write_str("an x-mcp-header value is not a string"),
        }
    }
}

impl std::error::Error for InvalidToolHeader {}

/// One mirrored argument: its header and where it sits in the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParamHeader {
    header: HeaderName,
    path: Vec<String>,
}

/// The `Mcp-Param-*` headers one tool's calls carry, read from its input schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolHeaders {
    params: Vec<ParamHeader>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl ToolHeaders {
    /// Reads the annotations of `input_schema`: on properties reached through `properties`
    /// alone, from the root (annotations elsewhere do not count, as the spec says).
    ///
    /// # Errors
    /// [`InvalidToolHeader`] when an annotation is not a header name, repeats one, or sits on a
    /// property of another type than string, integer or boolean.
    pub fn from_input_schema(input_schema: &Value) -> Result<Self, InvalidToolHeader> {
        let mut params = Vec::new();
        let mut path = Vec::new();
        collect(input_schema, &mut path, &mut params)?;
        Ok(Self { params })
    }

    /// Whether the tool mirrors no argument.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The headers for one call's `arguments`: one per annotated argument that is present and
    /// not null, integers in decimal, booleans as `true` / `false`.
    pub fn for_arguments(&self, arguments: &Value) -> Vec<(HeaderName, HeaderValue)> {
        self.params
            .iter()
            .filter_map(|param| {
                let value = param
                    .path
                    .iter()
                    .try_fold(arguments, |value, key| value.get(key))?;
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Bool(flag) => flag.to_string(),
                    Value::Number(number) => number
                        .as_i64()
                        .filter(|n| n.abs() <= MAX_SAFE_INTEGER)
                        .map(|n| n.to_string())?,
                    _ => return None,
                };
                Some((param.header.clone(), encode_value(&text)))
            })
            .collect()
    }
}

fn collect(
    schema: &Value,
    path: &mut Vec<String>,
    params: &mut Vec<ParamHeader>,
) -> Result<(), InvalidToolHeader> {
    if let Some(annotation) = schema.get(X_MCP_HEADER) {
        if !path.is_empty() {
            let name = annotation.as_str().ok_or(InvalidToolHeader::NotAString)?;
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(InvalidToolHeader::Name(name.to_owned()));
            }
            let primitive = matches!(
                schema.get("type").and_then(Value::as_str),
                Some("string" | "integer" | "boolean")
            );
            if !primitive {
                return Err(InvalidToolHeader::Type(name.to_owned()));
            }
            let header = HeaderName::from_bytes(
                format!("{MCP_PARAM_PREFIX}{}", name.to_ascii_lowercase()).as_bytes(),
            )
            .map_err(|_| InvalidToolHeader::Name(name.to_owned()))?;
            if params.iter().any(|p| p.header == header) {
                return Err(InvalidToolHeader::Duplicate(name.to_owned()));
            }
            params.push(ParamHeader {
                header,
                path: path.clone(),
            });
        }
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (key, property) in properties {
            path.push(key.clone());
            let result = collect(property, path, params);
            path.pop();
            result?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn values_needing_it_are_sent_in_base64() {
        for (value, plain) in [
            ("us-west1", true),
            ("us west 1", true),
            ("", true),
            (" us-west1", false),
            ("us-west1 ", false),
            ("Hello, 世界", false),
            ("line1\nline2", false),
            ("\tindented", false),
            ("=?base64?abc?=", false),
        ] {
            let header = encode_value(value);
            assert_eq!(header.to_str().unwrap() == value, plain, "{value:?}");
            assert_eq!(decode_value(header.to_str().unwrap()).unwrap(), value);
        }
    }

    #[test]
    fn the_standard_headers_mirror_the_body() {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "my-hyphenated-tool", "arguments": {}}});
        let headers = standard_headers(&call);
        assert_eq!(
            headers[0],
            (
                HeaderName::from_static(MCP_METHOD),
                HeaderValue::from_static("tools/call")
            )
        );
        assert_eq!(headers[1].1, "my-hyphenated-tool");
        let read = json!({"method": "resources/read", "params": {"uri": "file:///a%20b.txt"}});
        assert_eq!(standard_headers(&read)[1].1, "file:///a%20b.txt");
        let list = json!({"method": "tools/list", "params": {}});
        assert_eq!(standard_headers(&list).len(), 1);
        assert!(standard_headers(&json!({"id": 1, "result": {}})).is_empty());
    }

    #[test]
    fn annotations_are_mirrored_with_their_encodings() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "priority": {"type": "integer", "x-mcp-header": "Priority"},
            "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
            "method_val": {"type": "string", "x-mcp-header": "Method"},
            "empty_val": {"type": "string", "x-mcp-header": "EmptyVal"},
            "float_val": {"type": "number"},
        }});
        let tool = ToolHeaders::from_input_schema(&schema).unwrap();
        let sent = tool.for_arguments(&json!({"region": " eu", "priority": 42, "verbose": false,
            "method_val": "m", "empty_val": "", "float_val": 3.5}));
        let find = |name: &str| {
            sent.iter()
                .find(|(h, _)| h == name)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        assert_eq!(find("mcp-param-region").as_deref(), Some("=?base64?IGV1?="));
        assert_eq!(find("mcp-param-priority").as_deref(), Some("42"));
        assert_eq!(find("mcp-param-verbose").as_deref(), Some("false"));
        assert_eq!(find("mcp-param-method").as_deref(), Some("m"));
        assert_eq!(find("mcp-param-emptyval").as_deref(), Some(""));
        assert_eq!(sent.len(), 5);
        let null = tool.for_arguments(&json!({"region": "eu", "verbose": null}));
        assert_eq!(null.len(), 1, "null and absent arguments send nothing");
    }

    #[test]
    fn invalid_annotations_refuse_the_tool() {
        let with = |property: Value| json!({"type": "object", "properties": {"p": property}});
        for (property, expected) in [
            (json!({"type": "string", "x-mcp-header": ""}), "Name"),
            (
                json!({"type": "string", "x-mcp-header": "My Region"}),
                "Name",
            ),
            (
                json!({"type": "string", "x-mcp-header": "Region:Primary"}),
                "Name",
            ),
            (json!({"type": "string", "x-mcp-header": "Région"}), "Name"),
            (
                json!({"type": "string", "x-mcp-header": "Region\t1"}),
                "Name",
            ),
            (json!({"type": "number", "x-mcp-header": "N"}), "Type"),
            (json!({"type": "object", "x-mcp-header": "O"}), "Type"),
            (json!({"type": "array", "x-mcp-header": "A"}), "Type"),
            (json!({"type": "null", "x-mcp-header": "Z"}), "Type"),
            (json!({"type": "string", "x-mcp-header": 7}), "NotAString"),
        ] {
            let error = ToolHeaders::from_input_schema(&with(property.clone())).unwrap_err();
            assert!(
                format!("{error:?}").starts_with(expected),
                "{property}: {error:?}"
            );
        }
        let twice = json!({"type": "object", "properties": {
            "a": {"type": "string", "x-mcp-header": "MyField"},
            "b": {"type": "string", "x-mcp-header": "myfield"},
        }});
        assert!(matches!(
            ToolHeaders::from_input_schema(&twice),
            Err(InvalidToolHeader::Duplicate(_))
        ));
    }

    proptest! {
        /// Whatever the value, its header is valid and decodes back to it.
        #[test]
        fn any_value_round_trips(value in any::<String>()) {
            let header = encode_value(&value);
            prop_assert_eq!(decode_value(header.to_str().unwrap()).unwrap(), value);
        }

        /// Header text from a peer is decoded or refused, never a panic.
        #[test]
        fn any_header_text_is_decoded_or_refused(text in any::<String>()) {
            let _ = decode_value(&text);
        }

        /// Any schema is read or refused, never a panic; a read one only names valid headers.
        #[test]
        fn any_schema_is_read_or_refused(
            names in proptest::collection::vec(any::<String>(), 0..4),
            types in proptest::collection::vec(prop_oneof![Just("string"), Just("integer"), Just("number"), Just("object")], 4),
        ) {
            let properties: serde_json::Map<String, Value> = names.iter().enumerate()
                .map(|(i, name)| (format!("p{i}"), json!({"type": types[i % 4], "x-mcp-header": name})))
                .collect();
            if let Ok(tool) = ToolHeaders::from_input_schema(&json!({"properties": properties})) {
                for (header, _) in tool.for_arguments(&json!({"p0": "x", "p1": 1, "p2": true})) {
                    prop_assert!(header.as_str().starts_with(MCP_PARAM_PREFIX));
                }
            }
        }
    }
}
