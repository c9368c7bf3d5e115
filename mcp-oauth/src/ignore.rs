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

    /// Looks at what the client sent (a message or a batch): what goes on to the server, if
    /// anything, and the answers given here to calls of hidden tools (a call without an id is
    /// dropped). Notes each `tools/list` whose answer is to be filtered.
    pub(crate) fn on_client_message(&mut self, message: Value) -> (Option<Value>, Vec<Value>) {
        if self.patterns.is_empty() {
            return (Some(message), Vec::new());
        }
        let mut refusals = Vec::new();
        match message {
            Value::Array(batch) => {
                let kept: Vec<Value> = batch
                    .into_iter()
                    .filter(|one| self.keeps(one, &mut refusals))
                    .collect();
                ((!kept.is_empty()).then_some(Value::Array(kept)), refusals)
            }
            one => {
                let keep = self.keeps(&one, &mut refusals);
                (keep.then_some(one), refusals)
            }
        }
    }

    fn keeps(&mut self, message: &Value, refusals: &mut Vec<Value>) -> bool {
        let id = message.get("id");
        match message.get("method").and_then(Value::as_str) {
            Some("tools/list") => {
                if let Some(id) = id {
                    self.lists.insert(id_key(id));
                }
                true
            }
            Some("tools/call") => {
                let name = message
                    .pointer("/params/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !self.hides(name) {
                    return true;
                }
                if let Some(id) = id {
                    refusals.push(json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32603,
                        "message": format!("Tool \"{name}\" is not available"),
                    }}));
                }
                false
            }
            _ => true,
        }
    }

    /// Takes hidden tools out of what the server sent (a message or a batch) that answers a
    /// `tools/list`.
    pub(crate) fn on_server_message(&mut self, message: &mut Value) {
        if self.patterns.is_empty() {
            return;
        }
        match message {
            Value::Array(batch) => batch.iter_mut().for_each(|one| self.filter_answer(one)),
            one => self.filter_answer(one),
        }
    }

    fn filter_answer(&mut self, message: &mut Value) {
        if message.get("method").is_some() {
            return;
        }
        let Some(id) = message.get("id").map(id_key) else {
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

/// A request id as JSON-RPC compares it: `7` and `7.0` are one number.
fn id_key(id: &Value) -> String {
    match id.as_f64() {
        Some(number) => format!("n{number}"),
        None => format!("s{id}"),
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
        let (sent, refusals) = ignored.on_client_message(list.clone());
        assert_eq!((sent, refusals.len()), (Some(list), 0));
        // The server's id written as 7.0 is the same request.
        let mut answer = json!({"jsonrpc": "2.0", "id": 7.0, "result": {"tools": [
            {"name": "echo"}, {"name": "secretSauce"}]}});
        ignored.on_server_message(&mut answer);
        assert_eq!(answer["result"]["tools"], json!([{"name": "echo"}]));
        let call = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
            "params": {"name": "SecretSauce", "arguments": {}}});
        let (sent, refusals) = ignored.on_client_message(call);
        assert!(sent.is_none());
        assert_eq!(refusals[0]["id"], 8);
        assert_eq!(refusals[0]["error"]["code"], -32603);
        let allowed = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "echo"}});
        assert!(ignored.on_client_message(allowed).0.is_some());
    }

    #[test]
    fn batches_and_notifications_do_not_get_past() {
        let mut ignored = IgnoredTools::new(&["delete*".into()]);
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "deleteAll"}},
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_one"}},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo"}}
        ]);
        let (sent, refusals) = ignored.on_client_message(batch);
        let sent = sent.unwrap();
        assert_eq!(sent.as_array().unwrap().len(), 2, "{sent}");
        assert_eq!(refusals.len(), 1);
        let mut answers = json!([{"jsonrpc": "2.0", "id": 2, "result": {"tools": [
            {"name": "delete_all"}, {"name": "echo"}]}}]);
        ignored.on_server_message(&mut answers);
        assert_eq!(answers[0]["result"]["tools"], json!([{"name": "echo"}]));
        let only_hidden = json!([{"jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "delete"}}]);
        assert!(ignored.on_client_message(only_hidden).0.is_none());
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
