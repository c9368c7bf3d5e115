//! Scope-filtered lists: which items of a `tools/list`, `prompts/list` or `resources/list`
//! answer a caller sees, and the scope hint each item carries.

use serde_json::{Map, Value};

use crate::server::mcp::{ListKind, McpCall, McpScopes, SCOPES_META_KEY};

/// How one caller's lists are rewritten.
#[derive(Debug)]
pub(crate) struct ListView<'a> {
    pub(crate) policy: &'a McpScopes,
    /// The scopes the caller's token carries.
    pub(crate) granted: &'a [String],
}

/// Whether a body [`RequireMcpScopes`](crate::server::RequireMcpScopes) read lists anything,
/// handed on so the body is not read twice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListsInBody(pub(crate) bool);

/// Whether any of `calls` lists tools, prompts or resources.
pub(crate) fn lists_anything(calls: &[McpCall]) -> bool {
    calls
        .iter()
        .any(|call| ListKind::of(&call.method).is_some())
}

const KINDS: [ListKind; 3] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources];

/// Whether `bytes` may hold a list answer: a cheap look for the lists' field names before
/// parsing.
pub(crate) fn may_hold_a_list(bytes: &[u8]) -> bool {
    KINDS.iter().any(|kind| {
        let field = kind.field().as_bytes();
        bytes.windows(field.len()).any(|window| window == field)
    })
}

impl ListView<'_> {
    /// Rewrites every answer in `message` (one JSON-RPC message or a batch) whose result holds
    /// a list of tools, prompts or resources. Answers are known by their shape, not by their
    /// id: the client picks ids, and one written back in another form (`1.0` as `1`), repeated,
    /// or routed to another stream must not let a list through. Returns whether any was.
    pub(crate) fn rewrite(&self, message: &mut Value) -> bool {
        match message {
            Value::Array(batch) => {
                let mut rewritten = false;
                for message in batch {
                    rewritten |= self.rewrite_one(message);
                }
                rewritten
            }
            message => self.rewrite_one(message),
        }
    }

    fn rewrite_one(&self, message: &mut Value) -> bool {
        let Value::Object(object) = message else {
            return false;
        };
        // Requests and notifications from the server are not answers.
        if object.contains_key("method") {
            return false;
        }
        let Some(Value::Object(result)) = object.get_mut("result") else {
            return false;
        };
        let mut rewritten = false;
        for kind in KINDS {
            if let Some(Value::Array(items)) = result.get_mut(kind.field()) {
                self.keep_usable(items, kind);
                rewritten = true;
            }
        }
        rewritten
    }

    /// Keeps the items the caller can use (when filtering), in order, and puts the scope hint
    /// on each that needs scopes. The cursor and every other field stay as they are.
    fn keep_usable(&self, items: &mut Vec<Value>, kind: ListKind) {
        items.retain_mut(|item| {
            let name = item.get(kind.key()).and_then(Value::as_str).unwrap_or("");
            let needed = self.policy.item_scopes(kind, name);
            if needed.is_empty() {
                return true;
            }
            if self.policy.filter_lists && !needed.iter().all(|s| self.has(s)) {
                return false;
            }
            hint(item, &needed);
            true
        });
    }

    fn has(&self, scope: &str) -> bool {
        self.granted.iter().any(|granted| granted == scope)
    }
}

/// Puts `needed` under the item's `_meta` [`SCOPES_META_KEY`], replacing what the server put
/// there (the declaration it came from says the same, plus the method's scopes). A `_meta`
/// that is not an object is left alone.
fn hint(item: &mut Value, needed: &[&str]) {
    let Value::Object(item) = item else {
        return;
    };
    let meta = item
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        let list = needed.iter().map(|s| Value::String((*s).to_owned()));
        meta.insert(SCOPES_META_KEY.to_owned(), Value::Array(list.collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> McpScopes {
        McpScopes::new()
            .tool("delete", ["files:write"])
            .tool("admin", ["admin", "files:write"])
            .prompt("secret", ["prompts:secret"])
            .resource("file:///etc", ["files:read"])
            .filter_lists(true)
    }

    fn names(message: &Value, field: &str, key: &str) -> Vec<String> {
        message["result"][field]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[key].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_caller_sees_what_it_can_use_with_each_items_scopes() {
        let policy = policy();
        let granted = ["files:write".to_owned()];
        let view = ListView {
            policy: &policy,
            granted: &granted,
        };
        let mut message = json!({"jsonrpc": "2.0", "id": 7, "result": {
            "tools": [{"name": "read"}, {"name": "delete"}, {"name": "admin"}, {"nameless": true}],
            "nextCursor": "page-2",
        }});
        assert!(view.rewrite(&mut message));
        assert_eq!(message["result"]["nextCursor"], "page-2");
        let tools = message["result"]["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 3);
        assert_eq!(tools[0], json!({"name": "read"}));
        assert_eq!(tools[1]["_meta"][SCOPES_META_KEY], json!(["files:write"]));
        assert_eq!(tools[2], json!({"nameless": true}));
    }

    #[test]
    fn prompts_resources_and_batches_are_filtered_and_other_messages_left_alone() {
        let policy = policy().method("tools/call", ["mcp:call"]);
        let granted = ["files:read".to_owned()];
        let view = ListView {
            policy: &policy,
            granted: &granted,
        };
        let mut batch = json!([
            {"jsonrpc": "2.0", "id": "p", "result": {"prompts": [{"name": "secret"}, {"name": "open"}]}},
            {"jsonrpc": "2.0", "id": "r", "result": {"resources": [{"uri": "file:///etc"}, {"uri": "file:///tmp"}]}},
            {"jsonrpc": "2.0", "id": 1.0, "result": {"tools": [{"name": "read"}]}},
            {"jsonrpc": "2.0", "id": "x", "method": "sampling/createMessage", "params": {"tools": [{"name": "delete"}]}},
            {"jsonrpc": "2.0", "id": "d", "result": {"capabilities": {"tools": {}}, "tools": {"listChanged": true}}},
        ]);
        let untouched = [batch[3].clone(), batch[4].clone()];
        assert!(view.rewrite(&mut batch));
        assert_eq!(names(&batch[0], "prompts", "name"), ["open"]);
        assert_eq!(
            names(&batch[1], "resources", "uri"),
            ["file:///etc", "file:///tmp"]
        );
        // Without `mcp:call`, no tool can be called, so none is listed.
        assert!(names(&batch[2], "tools", "name").is_empty());
        assert_eq!([batch[3].clone(), batch[4].clone()], untouched);
    }

    #[test]
    fn without_filtering_every_item_stays_and_gets_its_hint() {
        let policy = policy().filter_lists(false);
        let view = ListView {
            policy: &policy,
            granted: &[],
        };
        let mut message = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "admin", "_meta": {"other/key": 1}}, {"name": "delete", "_meta": "odd"},
        ]}});
        view.rewrite(&mut message);
        let tools = &message["result"]["tools"];
        assert_eq!(
            tools[0]["_meta"],
            json!({"other/key": 1, (SCOPES_META_KEY): ["admin", "files:write"]})
        );
        assert_eq!(tools[1]["_meta"], "odd");
    }

    #[test]
    fn the_look_before_parsing_finds_every_list() {
        assert!(may_hold_a_list(br#"{"result":{"tools":[]}}"#));
        assert!(may_hold_a_list(br#"{"result":{"resources":[]}}"#));
        assert!(!may_hold_a_list(br#"{"result":{"content":[]}}"#));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const SCOPES: [&str; 4] = ["a", "b", "c", "d"];

        proptest! {
            /// Any tool set, any scopes, any page size: the pages filtered one by one give
            /// exactly the tools the caller may call, each once, in order, and every page
            /// keeps its cursor.
            #[test]
            fn filtered_pages_give_exactly_the_allowed_tools_in_order(
                needs in proptest::collection::vec(proptest::collection::btree_set(0..4usize, 0..3), 0..40),
                granted in proptest::collection::btree_set(0..4usize, 0..5),
                page_size in 1..12usize,
            ) {
                let mut policy = McpScopes::new().filter_lists(true);
                for (i, need) in needs.iter().enumerate() {
                    policy = policy.tool(&format!("t{i}"), need.iter().map(|s| SCOPES[*s]));
                }
                let granted: Vec<String> = granted.iter().map(|s| SCOPES[*s].to_owned()).collect();
                let view = ListView { policy: &policy, granted: &granted };
                let expected: Vec<String> = needs
                    .iter()
                    .enumerate()
                    .filter(|(_, need)| need.iter().all(|s| granted.iter().any(|g| g == SCOPES[*s])))
                    .map(|(i, _)| format!("t{i}"))
                    .collect();
                let all: Vec<Value> = (0..needs.len()).map(|i| json!({"name": format!("t{i}")})).collect();
                let mut seen = Vec::new();
                let pages: Vec<&[Value]> = all.chunks(page_size).collect();
                for (page, tools) in pages.iter().enumerate() {
                    let mut result = json!({"tools": tools});
                    if page + 1 < pages.len() {
                        result["nextCursor"] = json!(page + 1);
                    }
                    let mut message = json!({"jsonrpc": "2.0", "id": page, "result": result});
                    prop_assert!(view.rewrite(&mut message));
                    prop_assert_eq!(
                        message["result"].get("nextCursor").cloned(),
                        (page + 1 < pages.len()).then(|| json!(page + 1))
                    );
                    for tool in message["result"]["tools"].as_array().unwrap() {
                        let name = tool["name"].as_str().unwrap().to_owned();
                        let needed = policy.item_scopes(ListKind::Tools, &name);
                        if !needed.is_empty() {
                            prop_assert_eq!(&tool["_meta"][SCOPES_META_KEY], &json!(needed));
                        }
                        seen.push(name);
                    }
                }
                prop_assert_eq!(seen, expected);
            }

            /// Whatever a list answer holds, rewriting it never panics and never adds an item.
            #[test]
            fn any_answer_is_rewritten_without_panicking(
                items in proptest::collection::vec(prop_oneof![
                    Just(json!(null)), Just(json!(3)), Just(json!({"name": 1})),
                    "[a-d]{0,2}".prop_map(|n| json!({"name": n, "_meta": null})),
                    "[a-d]{0,2}".prop_map(|n| json!({"name": n})),
                ], 0..20),
                granted in proptest::collection::vec("[a-d]", 0..3),
            ) {
                let policy = McpScopes::new().tool("a", ["a"]).tool("b", ["b", "c"]).filter_lists(true);
                let view = ListView { policy: &policy, granted: &granted };
                let count = items.len();
                let mut message = json!({"id": 0, "result": {"tools": items}});
                view.rewrite(&mut message);
                prop_assert!(message["result"]["tools"].as_array().unwrap().len() <= count);
            }
        }
    }
}
