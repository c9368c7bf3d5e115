//! `--ignore-tool`: tools hidden from the MCP client, as mcp-remote hides them. A pattern
//! matches a whole tool name, `*` standing for any run of characters, case ignored. Hidden
//! tools are left out of `tools/list` answers, and a call to one is answered here with an
//! error, never sent.

use std::collections::HashSet;

use serde_json::{json, Value};

#[derive(Debug, Default)]
pub(crate) struct IgnoredTools {
    /// Each pattern, lowercased, split at its `*`s.
    patterns: Vec<Vec<String>>,
    /// The ids of the `tools/list` requests on their way, whose answers are filtered.
    lists: HashSet<String>,
}

impl IgnoredTools {
    pub(crate) fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns
                .iter()
                .map(|p| p.to_lowercase().split('*').map(str::to_owned).collect())
                .collect(),
            lists: HashSet::new(),
        }
    }

    pub(crate) fn hides(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.patterns.iter().any(|pieces| matches(pieces, &name))
    }

    /// Looks at a message from the client: the answer to give it here for a call to a
    /// hidden tool (the message then goes nowhere); notes a `tools/list` to filter.
    pub(crate) fn on_client_message(&mut self, message: &Value) -> Option<Value> {
        if self.patterns.is_empty() {
            return None;
        }
        let id = message.get("id")?;
        match message.get("method").and_then(Value::as_str)? {
            "tools/list" => {
                self.lists.insert(id.to_string());
                None
            }
            "tools/call" => {
                let name = message.pointer("/params/name").and_then(Value::as_str)?;
                self.hides(name).then(|| {
                    json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32603,
                        "message": format!("Tool \"{name}\" is not available"),
                    }})
                })
            }
            _ => None,
        }
    }

    /// Takes hidden tools out of a message from the server that answers a `tools/list`.
    pub(crate) fn on_server_message(&mut self, message: &mut Value) {
        if self.patterns.is_empty() || message.get("method").is_some() {
            return;
        }
        let Some(id) = message.get("id").map(Value::to_string) else {
            return;
        };
        if !self.lists.remove(&id) {
            return;
        }
        let patterns = std::mem::take(&mut self.patterns);
        if let Some(tools) = message
            .pointer_mut("/result/tools")
            .and_then(Value::as_array_mut)
        {
            tools.retain(|tool| {
                let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
                let name = name.to_lowercase();
                !patterns.iter().any(|pieces| matches(pieces, &name))
            });
        }
        self.patterns = patterns;
    }
}

/// Whether `name` is the pieces of a pattern with anything between them.
fn matches(pieces: &[String], name: &str) -> bool {
    let [first, middle @ .., last] = pieces else {
        return pieces.first().is_some_and(|only| only == name);
    };
    let Some(rest) = name.strip_prefix(first.as_str()) else {
        return false;
    };
    let mut rest = rest;
    for piece in middle {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_with_stars_and_any_case() {
        let ignored = IgnoredTools::new(&["delete*".into(), "*_admin".into(), "Exact".into()]);
        for hidden in ["delete", "deleteFile", "DELETE_ALL", "user_admin", "exact"] {
            assert!(ignored.hides(hidden), "{hidden}");
        }
        for shown in ["undelete", "admin_user", "exactly", "inexact"] {
            assert!(!ignored.hides(shown), "{shown}");
        }
        let middle = IgnoredTools::new(&["a*b*c".into()]);
        assert!(middle.hides("abc") && middle.hides("axxbyyc"));
        assert!(!middle.hides("acb") && !middle.hides("ab"));
    }

    #[test]
    fn a_list_is_filtered_and_a_call_answered_here() {
        let mut ignored = IgnoredTools::new(&["secret*".into()]);
        let list = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
        assert!(ignored.on_client_message(&list).is_none());
        let mut answer = json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": [
            {"name": "echo"}, {"name": "secretSauce"}]}});
        ignored.on_server_message(&mut answer);
        assert_eq!(answer["result"]["tools"], json!([{"name": "echo"}]));
        let call = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
            "params": {"name": "SecretSauce", "arguments": {}}});
        let refusal = ignored.on_client_message(&call).expect("answered here");
        assert_eq!(refusal["id"], 8);
        assert_eq!(refusal["error"]["code"], -32603);
        let allowed = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "echo"}});
        assert!(ignored.on_client_message(&allowed).is_none());
    }

    proptest::proptest! {
        /// A star matches anything: the pattern `*` hides every name, and a name always
        /// matches itself with a star anywhere spliced in.
        #[test]
        fn a_star_matches_any_run(name in "[a-zA-Z_]{0,12}", at in 0usize..13) {
            proptest::prop_assert!(IgnoredTools::new(&["*".into()]).hides(&name));
            let at = at.min(name.len());
            let pattern = format!("{}*{}", &name[..at], &name[at..]);
            proptest::prop_assert!(IgnoredTools::new(&[pattern]).hides(&name));
        }
    }
}
