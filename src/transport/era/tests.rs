//! The era bridge, message by message.

use super::*;
use proptest::prelude::*;

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "desktop", "version": "1"}}})
}

fn to_server(routes: &[Route]) -> Vec<&Value> {
    routes
        .iter()
        .filter_map(|r| match r {
            Route::ToServer(m) => Some(m),
            Route::ToClient(_) => None,
        })
        .collect()
}

fn to_client(routes: &[Route]) -> Vec<&Value> {
    routes
        .iter()
        .filter_map(|r| match r {
            Route::ToClient(m) => Some(m),
            Route::ToServer(_) => None,
        })
        .collect()
}

/// A bridge past its handshake with a server that speaks `versions`; the routes of the
/// discovery answer.
fn discovered(versions: Value, held: &[Value]) -> (EraBridge, Vec<Route>) {
    let mut bridge = EraBridge::new();
    let routes = bridge.from_client(initialize());
    let discover = to_server(&routes)[0].clone();
    assert_eq!(discover["method"], "server/discover");
    assert_eq!(
        discover["params"]["_meta"][META_PROTOCOL_VERSION],
        MODERN_VERSION
    );
    assert_eq!(
        discover["params"]["_meta"][META_CLIENT_CAPABILITIES],
        json!({"elicitation": {}})
    );
    for message in held {
        assert!(bridge.from_client(message.clone()).is_empty(), "held");
    }
    let answer = json!({"jsonrpc": "2.0", "id": discover["id"], "result": {
        "resultType": "complete", "supportedVersions": versions,
        "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true}},
        "instructions": "be nice", "ttlMs": 0, "cacheScope": "private",
        "_meta": {META_SERVER_INFO: {"name": "modern", "version": "2"}}}});
    let routes = bridge.from_server(answer);
    (bridge, routes)
}

fn tools_list(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

#[test]
fn a_server_speaking_the_clients_revision_gets_its_handshake_unchanged() {
    let (bridge, routes) = discovered(json!(["2025-11-25", MODERN_VERSION]), &[tools_list(1)]);
    assert!(bridge.is_passing_through());
    assert_eq!(to_server(&routes), [&initialize(), &tools_list(1)]);
    assert!(to_client(&routes).is_empty());
}

#[test]
fn a_client_asking_for_2026_07_28_through_initialize_is_bridged_at_2025_11_25() {
    let mut bridge = EraBridge::new();
    let mut asking = initialize();
    asking["params"]["protocolVersion"] = json!(MODERN_VERSION);
    let discover = to_server(&bridge.from_client(asking))[0].clone();
    let answer = json!({"jsonrpc": "2.0", "id": discover["id"], "result": {
        "resultType": "complete", "supportedVersions": [MODERN_VERSION], "capabilities": {}}});
    let routes = bridge.from_server(answer);
    assert!(!bridge.is_passing_through());
    assert!(
        to_server(&routes).is_empty(),
        "no initialize for a 2026-07-28 server"
    );
    assert_eq!(
        to_client(&routes)[0]["result"]["protocolVersion"],
        "2025-11-25"
    );
}

#[test]
fn a_server_without_discovery_gets_the_handshake_too() {
    let mut bridge = EraBridge::new();
    let discover = to_server(&bridge.from_client(initialize()))[0].clone();
    let refused = json!({"jsonrpc": "2.0", "id": discover["id"],
        "error": {"code": -32601, "message": "Method not found"}});
    let routes = bridge.from_server(refused);
    assert_eq!(to_server(&routes), [&initialize()]);
    assert!(bridge.is_passing_through());
    // From then on, everything both ways as it is.
    let answer = json!({"jsonrpc": "2.0", "id": 0, "result": {"resultType": "complete"}});
    assert_eq!(
        bridge.from_server(answer.clone()),
        [Route::ToClient(answer)]
    );
}

#[test]
fn a_modern_only_server_is_answered_for_and_requests_carry_the_meta() {
    let (mut bridge, routes) = discovered(json!([MODERN_VERSION]), &[tools_list(1)]);
    assert!(bridge.is_bridging());
    let answered = to_client(&routes)[0];
    assert_eq!(answered["id"], 0);
    assert_eq!(answered["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(answered["result"]["serverInfo"]["name"], "modern");
    assert_eq!(answered["result"]["instructions"], "be nice");
    assert_eq!(
        answered["result"]["capabilities"]["tools"]["listChanged"],
        true
    );
    let held = to_server(&routes)[0];
    assert_eq!(held["method"], "tools/list");
    assert_eq!(
        held["params"]["_meta"][META_PROTOCOL_VERSION],
        MODERN_VERSION
    );
    assert_eq!(held["params"]["_meta"][META_CLIENT_INFO]["name"], "desktop");

    // ping and setLevel are the bridge's; the level goes into later requests.
    let ping = bridge.from_client(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert_eq!(
        ping,
        [Route::ToClient(
            json!({"jsonrpc": "2.0", "id": 2, "result": {}})
        )]
    );
    let _ = bridge.from_client(
        json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel",
        "params": {"level": "debug"}}),
    );
    let routes = bridge.from_client(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list",
        "params": {"_meta": {"progressToken": 9}}}));
    let meta = &to_server(&routes)[0]["params"]["_meta"];
    assert_eq!(
        (meta["progressToken"].clone(), meta[META_LOG_LEVEL].clone()),
        (json!(9), json!("debug"))
    );

    // After the handshake, the list changes the server offers are listened for.
    let routes =
        bridge.from_client(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let listen = to_server(&routes)[0];
    assert_eq!(listen["method"], "subscriptions/listen");
    assert_eq!(
        listen["params"]["notifications"],
        json!({"toolsListChanged": true})
    );
    // Its end stays with the bridge, which listens again, five times at most.
    let mut ended = listen["id"].clone();
    for _ in 0..5 {
        let routes = bridge.from_server(json!({"jsonrpc": "2.0", "id": ended, "result": {}}));
        assert!(to_client(&routes).is_empty());
        let again = to_server(&routes)[0];
        assert_eq!(again["method"], "subscriptions/listen");
        assert_ne!(again["id"], ended);
        ended = again["id"].clone();
    }
    assert!(bridge
        .from_server(json!({"jsonrpc": "2.0", "id": ended, "result": {}}))
        .is_empty());
    // The notifications on it reach the client.
    let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
    assert_eq!(
        bridge.from_server(changed.clone()),
        [Route::ToClient(changed)]
    );
}

fn confirm_needed(id: Value, state: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"resultType": "input_required",
        "requestState": state,
        "inputRequests": {"confirm": {"method": "elicitation/create", "params": {
            "mode": "form", "message": "Sure?", "requestedSchema": {"type": "object"}}}}}})
}

#[test]
fn input_required_becomes_server_requests_and_the_call_goes_again() {
    let (mut bridge, _) = discovered(json!([MODERN_VERSION]), &[]);
    let call = json!({"jsonrpc": "2.0", "id": "c1", "method": "tools/call",
        "params": {"name": "delete", "arguments": {"what": "x"}}});
    let _ = bridge.from_client(call);
    let routes = bridge.from_server(confirm_needed(json!("c1"), "s-1"));
    let asked = to_client(&routes)[0].clone();
    assert_eq!(asked["method"], "elicitation/create");
    assert_eq!(asked["params"]["message"], "Sure?");
    let accepted = json!({"action": "accept", "content": {"ok": true}});
    let routes =
        bridge.from_client(json!({"jsonrpc": "2.0", "id": asked["id"], "result": accepted}));
    let again = to_server(&routes)[0];
    assert_eq!(again["id"], "c1");
    assert_eq!(again["params"]["name"], "delete");
    assert_eq!(again["params"]["arguments"]["what"], "x");
    assert_eq!(again["params"]["inputResponses"]["confirm"], accepted);
    assert_eq!(again["params"]["requestState"], "s-1");
    assert_eq!(
        again["params"]["_meta"][META_PROTOCOL_VERSION],
        MODERN_VERSION
    );
    let done = json!({"jsonrpc": "2.0", "id": "c1", "result": {"resultType": "complete",
        "content": [{"type": "text", "text": "deleted"}]}});
    let routes = bridge.from_server(done);
    assert_eq!(
        to_client(&routes)[0],
        &json!({"jsonrpc": "2.0", "id": "c1", "result": {"content": [{"type": "text", "text": "deleted"}]}})
    );
    assert!(bridge.pending.is_empty() && bridge.asked.is_empty());
}

#[test]
fn rounds_are_bounded_and_a_refusal_answers_the_call() {
    let mut bridge_rounds = EraBridge::new().max_rounds(2);
    bridge_rounds.mode = Mode::Bridging;
    bridge_rounds.client_capabilities = json!({"elicitation": {}});
    let call = |id: i64| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "t"}});
    let _ = bridge_rounds.from_client(call(1));
    for round in 0..3 {
        let routes = bridge_rounds.from_server(confirm_needed(json!(1), "s"));
        if round < 2 {
            let asked = to_client(&routes)[0].clone();
            let _ = bridge_rounds.from_client(
                json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept"}}),
            );
        } else {
            let failed = to_client(&routes)[0];
            assert_eq!(failed["id"], 1);
            assert!(failed["error"]["message"]
                .as_str()
                .unwrap()
                .contains("more than 2"));
        }
    }
    let _ = bridge_rounds.from_client(call(2));
    let asked = to_client(&bridge_rounds.from_server(confirm_needed(json!(2), "s")))[0].clone();
    let refused = json!({"code": -1, "message": "user closed the dialog"});
    let routes =
        bridge_rounds.from_client(json!({"jsonrpc": "2.0", "id": asked["id"], "error": refused}));
    assert_eq!(
        to_client(&routes)[0],
        &json!({"jsonrpc": "2.0", "id": 2, "error": refused})
    );
    assert!(bridge_rounds.pending.is_empty());
}

fn any_message() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        Just(json!(1)),
        Just(json!("a")),
        Just(Value::Null),
        Just(json!(2.5))
    ];
    let method = prop_oneof![
        Just("initialize"),
        Just("tools/call"),
        Just("ping"),
        Just("notifications/initialized"),
        Just("notifications/cancelled"),
        Just("logging/setLevel"),
        Just("x")
    ];
    let result = prop_oneof![
        Just(
            json!({"resultType": "input_required", "inputRequests": {"k": {"method": "roots/list"}}})
        ),
        Just(json!({"resultType": "input_required"})),
        Just(json!({"resultType": "complete"})),
        Just(json!({"supportedVersions": [MODERN_VERSION]})),
        Just(json!(null)),
    ];
    prop_oneof![
        (id.clone(), method).prop_map(
            |(id, m)| json!({"jsonrpc": "2.0", "id": id, "method": m, "params": {"requestId": 1}})
        ),
        (id, result).prop_map(|(id, r)| json!({"jsonrpc": "2.0", "id": id, "result": r})),
        Just(json!([])),
        Just(json!("not an object")),
    ]
}

proptest! {
    #[test]
    fn any_exchange_routes_without_panicking_and_within_bounds(
        steps in proptest::collection::vec((any::<bool>(), any_message()), 0..60),
    ) {
        let mut bridge = EraBridge::new().max_rounds(3);
        let mut own_ids = Vec::new();
        for (from_client, message) in steps {
            let routes = if from_client {
                bridge.from_client(message)
            } else {
                bridge.from_server(message)
            };
            for route in &routes {
                let (Route::ToServer(m) | Route::ToClient(m)) = route;
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    if id.starts_with(&bridge.prefix) {
                        own_ids.push(id.to_owned());
                    }
                }
            }
            // A server answering for the bridge's own ids too.
            if let Some(id) = own_ids.pop() {
                let _ = bridge.from_server(json!({"jsonrpc": "2.0", "id": id, "result": {"supportedVersions": [MODERN_VERSION]}}));
                let _ = bridge.from_client(json!({"jsonrpc": "2.0", "id": id, "result": {}}));
            }
            prop_assert!(bridge.pending.values().all(|p| p.rounds <= 3));
            prop_assert!(bridge.pending.len() <= 60 && bridge.asked.len() <= 60);
        }
    }
}

#[test]
fn a_question_the_client_did_not_declare_ends_the_call_with_an_error() {
    let (mut bridge, _) = discovered(json!([MODERN_VERSION]), &[]);
    let _ = bridge.from_client(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}}),
    );
    let sampling = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required",
        "inputRequests": {"s": {"method": "sampling/createMessage", "params": {}}}}});
    let routes = bridge.from_server(sampling);
    let failed = to_client(&routes)[0];
    assert_eq!(failed["id"], 1);
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sampling/createMessage"));
    assert!(to_server(&routes).is_empty() && bridge.pending.is_empty());
}

#[test]
fn an_undelivered_probe_sends_the_clients_own_handshake() {
    let mut bridge = EraBridge::new();
    let discover = to_server(&bridge.from_client(initialize()))[0].clone();
    assert!(bridge.from_client(tools_list(1)).is_empty());
    let routes = bridge.undelivered(&discover["id"]);
    assert_eq!(to_server(&routes), [&initialize(), &tools_list(1)]);
    assert!(bridge.is_passing_through());
}

#[test]
fn ids_of_other_types_and_stale_answers_do_not_mix() {
    let (mut bridge, _) = discovered(json!([MODERN_VERSION]), &[]);
    for id in [json!(1), json!("1"), json!("n1"), json!("s1")] {
        let _ = bridge.from_client(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "t"}}),
        );
    }
    assert_eq!(bridge.pending.len(), 4);
    // A question left open by a cancelled call is not an answer for the call's next use.
    let asked = to_client(&bridge.from_server(confirm_needed(json!(1), "s")))[0].clone();
    let _ = bridge.from_client(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 1}}),
    );
    assert!(bridge.asked.is_empty());
    let stale = bridge
        .from_client(json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept"}}));
    assert!(stale.is_empty(), "{stale:?}");
    // A second round replaces the first's open questions.
    let first = to_client(&bridge.from_server(confirm_needed(json!("1"), "a")))[0].clone();
    let second = to_client(&bridge.from_server(confirm_needed(json!("1"), "b")))[0].clone();
    let late = bridge
        .from_client(json!({"jsonrpc": "2.0", "id": first["id"], "result": {"action": "accept"}}));
    assert!(late.is_empty());
    let routes = bridge
        .from_client(json!({"jsonrpc": "2.0", "id": second["id"], "result": {"action": "accept"}}));
    let again = to_server(&routes)[0];
    assert_eq!(
        (again["id"].clone(), again["params"]["requestState"].clone()),
        (json!("1"), json!("b"))
    );
}

#[test]
fn a_modern_servers_own_requests_and_bad_levels_are_refused() {
    let (mut bridge, routes) = discovered(json!([MODERN_VERSION]), &[]);
    let sneaked =
        json!({"jsonrpc": "2.0", "id": "x", "method": "sampling/createMessage", "params": {}});
    let refused = bridge.from_server(sneaked);
    assert_eq!(to_server(&refused)[0]["error"]["code"], -32601);
    assert!(to_client(&refused).is_empty());
    let level = bridge.from_client(
        json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel",
        "params": {"level": "verbose"}}),
    );
    assert_eq!(to_client(&level)[0]["error"]["code"], -32602);
    // A second initialize gets the first answer.
    let again = bridge.from_client(initialize());
    assert_eq!(
        to_client(&again)[0]["result"],
        to_client(&routes)[0]["result"]
    );
}
