//! Scope-filtered discovery's costs, each beside its baseline in the same run:
//!
//! - `tools_list_500`: a `tools/list` answer of 500 tools (each with an input schema, one in
//!   five needing a scope) from a service that answers at once, through `FilterMcpLists`
//!   (answered as JSON, and as an SSE event), beside the same service without the layer;
//! - `not_a_list`: a `tools/call` through `RequireMcpScopes`, with and without `FilterMcpLists`
//!   behind it: what the filter adds to requests that list nothing.
//!
//! The loopback throughput with and without the filter under load is in
//! `benches/bearer_load.rs` (wrk).

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_mcp_oauth::server::{
    AuthData, AuthInfo, FilterMcpListsLayer, McpScopes, RequireMcpScopesLayer,
};

const TOOLS: usize = 500;

/// The answer to `tools/list` id 1: 500 tools, each with a small input schema.
fn answer() -> String {
    let tools: Vec<_> = (0..TOOLS)
        .map(|i| {
            json!({
                "name": format!("tool_{i}"),
                "description": "Does one thing to a file, and says what it did",
                "inputSchema": {"type": "object", "properties": {
                    "path": {"type": "string", "description": "The file"},
                    "mode": {"type": "string", "enum": ["read", "write", "append"]},
                }, "required": ["path"]},
            })
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}).to_string()
}

fn scopes() -> McpScopes {
    (0..TOOLS)
        .step_by(5)
        .fold(McpScopes::new().filter_lists(true), |scopes, i| {
            scopes.tool(&format!("tool_{i}"), ["files:write"])
        })
}

fn request(body: &'static str) -> Request<Full<Bytes>> {
    let mut request = Request::post("/mcp")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    request.extensions_mut().insert(AuthInfo::from(AuthData {
        scopes: vec!["mcp".into()],
        ..Default::default()
    }));
    request
}

/// A service that answers every request with `body` as `media`.
fn answering(
    body: Bytes,
    media: &'static str,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |_request: Request<Full<Bytes>>| {
        let body = body.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", media)
                    .body(Full::new(body))
                    .unwrap(),
            )
        }
    })
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let json_answer = Bytes::from(answer());
    let sse_answer = Bytes::from(format!("id: 1\ndata: {}\n\n", answer()));
    const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    const CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"tool_3","arguments":{"path":"/tmp/x"}}}"#;

    let mut group = c.benchmark_group("tools_list_500");
    let bare = answering(json_answer.clone(), "application/json");
    group.bench_function("without the filter", |b| {
        b.to_async(&rt).iter(|| async {
            let response = bare.clone().oneshot(request(LIST)).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    });
    let filtered = ServiceBuilder::new()
        .layer(FilterMcpListsLayer::new(scopes()))
        .service(answering(json_answer.clone(), "application/json"));
    group.bench_function("filtered, JSON", |b| {
        b.to_async(&rt).iter(|| async {
            let response = filtered.clone().oneshot(request(LIST)).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    });
    let filtered_sse = ServiceBuilder::new()
        .layer(FilterMcpListsLayer::new(scopes()))
        .service(answering(sse_answer, "text/event-stream"));
    group.bench_function("filtered, SSE", |b| {
        b.to_async(&rt).iter(|| async {
            let response = filtered_sse.clone().oneshot(request(LIST)).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("not_a_list");
    let enforced = ServiceBuilder::new()
        .layer(RequireMcpScopesLayer::new(scopes()))
        .service(answering(Bytes::from_static(b"{}"), "application/json"));
    group.bench_function("RequireMcpScopes", |b| {
        b.to_async(&rt).iter(|| async {
            let response = enforced.clone().oneshot(request(CALL)).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    });
    let both = ServiceBuilder::new()
        .layer(RequireMcpScopesLayer::new(scopes()))
        .layer(FilterMcpListsLayer::new(scopes()))
        .service(answering(Bytes::from_static(b"{}"), "application/json"));
    group.bench_function("RequireMcpScopes + FilterMcpLists", |b| {
        b.to_async(&rt).iter(|| async {
            let response = both.clone().oneshot(request(CALL)).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    });
    group.finish();
}

criterion_group!(list_filter, benches);
criterion_main!(list_filter);
