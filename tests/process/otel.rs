//! OpenTelemetry export of request spans, end to end: a `holdfast serve`
//! process and a fake OTLP/HTTP collector on loopback that accepts
//! `POST /v1/traces` and keeps what it got. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans arrive (named after the
//! service in `OTEL_SERVICE_NAME`) and the access log lines carry their
//! trace ids; without it, nothing arrives and the lines have none.
//!
//! A test target of the `holdfast` package (see crates/node/Cargo.toml).

#[path = "../tests/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::within;
use holdfast_test::process::{NodeProcess, free_port, serve_args, temp_dir, wait_until_serving};
use holdfast_test::{FakeOrigin, KeepAlive, Reply};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// What the fake collector was sent: each `POST /v1/traces` body, and the
/// other requests (method and path), which should not come.
#[derive(Default)]
struct Received {
    traces: Vec<Bytes>,
    other: Vec<String>,
}

/// A fake OTLP/HTTP collector: answers 200 to everything, keeps the bodies.
struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let keep = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let keep = Arc::clone(&keep);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let keep = Arc::clone(&keep);
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let mut received = keep.lock().unwrap();
                        if parts.method == Method::POST && parts.uri.path() == "/v1/traces" {
                            received.traces.push(body);
                        } else {
                            received.other.push(format!("{} {}", parts.method, parts.uri));
                        }
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = StatusCode::OK;
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { addr, received, task }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn traces(&self) -> Vec<Bytes> {
        self.received.lock().unwrap().traces.clone()
    }

    fn other(&self) -> Vec<String> {
        self.received.lock().unwrap().other.clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A node whose access log (JSON) goes to a file, with `env` added.
struct Node {
    process: NodeProcess,
    addr: SocketAddr,
    dir: PathBuf,
    access_log: PathBuf,
}

impl Node {
    async fn start(name: &str, origin: &FakeOrigin, env: &[(&str, &str)]) -> Node {
        let dir = temp_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        let access_log = dir.join("access.log");
        let config = dir.join("holdfast.toml");
        let text = format!(
            "[server]\nshutdown_delay = \"0s\"\n\n[log]\naccess = \"{}\"\naccess_format = \"json\"\n",
            access_log.display()
        );
        std::fs::write(&config, text).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut args = serve_args(addr, &origin.url(), &dir.join("cache"), free_port(), &[]);
        args.extend(["--config".to_owned(), config.display().to_string()]);
        let process = NodeProcess::spawn_with_env(Path::new(env!("CARGO_BIN_EXE_holdfast")), &args, env);
        wait_until_serving(addr).await;
        Node { process, addr, dir, access_log }
    }

    /// Sends `n` requests, each answered 200.
    async fn requests(&self, n: usize) {
        let mut client = KeepAlive::new(self.addr);
        for i in 0..n {
            let outcome = client.get(&format!("/asset/{}.js", i % 2)).await;
            assert!(matches!(outcome, holdfast_test::Outcome::Answered { status: 200, .. }), "{outcome:?}");
        }
    }

    /// Stops the node with SIGTERM (spans still batched are sent then),
    /// and returns its access log lines.
    async fn stop(mut self) -> Vec<serde_json::Value> {
        self.process.signal("-TERM");
        assert_eq!(self.process.exit_code().await, Some(0));
        let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&self.dir);
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON access line")).collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_request_spans_reach_the_collector_with_the_log_lines_trace_ids() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/asset/0.js", Reply::ok("zero"));
        origin.route("/asset/1.js", Reply::ok("one"));
        let collector = Collector::start().await;
        let endpoint = collector.endpoint();
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "edge-under-test"),
            // Export batches every 100 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        let node = Node::start("otel-on", &origin, &env).await;
        node.requests(4).await;
        // Spans arrive while the node runs, not only at its exit.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while collector.traces().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no spans reached the collector");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lines = node.stop().await;
        let traces = collector.traces();
        assert!(collector.other().is_empty(), "unexpected requests: {:?}", collector.other());
        // Protobuf keeps strings as they are, and ids as raw bytes.
        let sent: Vec<u8> = traces.iter().flat_map(|b| b.iter().copied()).collect();
        let contains = |needle: &[u8]| sent.windows(needle.len()).any(|w| w == needle);
        assert!(contains(b"edge-under-test"), "the service is named by OTEL_SERVICE_NAME");
        assert!(contains(b"request"), "the request span is exported");
        assert_eq!(lines.len(), 4, "{lines:?}");
        for line in &lines {
            let id = line["trace_id"].as_str().unwrap_or_else(|| panic!("no trace id: {line}"));
            assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            let exported = (0..sent.len().saturating_sub(15)).any(|i| hex(&sent[i..i + 16]) == id);
            assert!(exported, "the trace {id} of {line} was not exported");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_otlp_endpoint_nothing_is_exported_and_lines_have_no_trace_id() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/asset/0.js", Reply::ok("zero"));
        origin.route("/asset/1.js", Reply::ok("one"));
        let collector = Collector::start().await;
        // Everything else a deployment might set, but no endpoint.
        let env = [("OTEL_SERVICE_NAME", "edge-under-test"), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
        let node = Node::start("otel-off", &origin, &env).await;
        node.requests(4).await;
        // Its exit would flush any batched span: after it, nothing can come.
        let lines = node.stop().await;
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines.iter().all(|l| l.get("trace_id").is_none()), "{lines:?}");
        assert!(collector.traces().is_empty() && collector.other().is_empty());
    })
    .await
}
