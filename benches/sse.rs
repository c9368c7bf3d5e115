//! SSE decoding throughput, ours against the `sse-stream` crate (what rmcp uses), on the same
//! input in the same run: 20,000 JSON-RPC events of ~300 bytes, CRLF line ends, in 8 KiB body
//! frames, each decoded through its async stream over an `http_body` body.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::StreamBody;

fn input() -> Vec<Bytes> {
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!(
            "id: {i}\r\nevent: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}}}}\r\n\r\n",
            "x".repeat(200)
        ));
    }
    text.into_bytes()
        .chunks(8 * 1024)
        .map(Bytes::copy_from_slice)
        .collect()
}

fn body(
    chunks: &[Bytes],
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin> {
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
        chunks.iter().cloned().map(|c| Ok(Frame::data(c))).collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

fn decode(c: &mut Criterion) {
    let chunks = input();
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("sse_decode");
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("tower_mcp_oauth", |b| {
        b.iter(|| {
            rt.block_on(async {
                let events = tower_mcp_oauth::transport::SseStream::new(body(&chunks), 1 << 20);
                let count = events
                    .filter(|e| std::future::ready(e.is_ok()))
                    .count()
                    .await;
                assert_eq!(count, 20_000);
            })
        })
    });
    group.bench_function("sse_stream_crate", |b| {
        b.iter(|| {
            rt.block_on(async {
                let events = sse_stream::SseStream::new(body(&chunks));
                let count = events
                    .filter(|e| std::future::ready(e.as_ref().is_ok_and(|e| e.data.is_some())))
                    .count()
                    .await;
                assert_eq!(count, 20_000);
            })
        })
    });
    group.finish();
}

criterion_group!(sse, decode);
criterion_main!(sse);
