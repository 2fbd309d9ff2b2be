//! TLS, HTTP/2 over ALPN, HTTP/3 with a client holdfast did not write
//! (h3-quinn), SNI, certificate reload, HTTPS origins.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use common::tls::{certs, client_config, with_tls};
use common::{node_with, within};
use holdfast_test::{FakeOrigin, Reply};
use http_body_util::BodyExt;
use rustls_pki_types::{CertificateDer, ServerName};

type TlsAnswer = (Vec<u8>, u16, String, Option<String>, CertificateDer<'static>, Bytes);

/// One GET over TLS; returns (ALPN, status, x-cache, alt-svc, peer cert, body).
async fn tls_get(
    addr: SocketAddr,
    sni: &str,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    path: &str,
) -> TlsAnswer {
    tls_get_for(addr, sni, sni, roots, alpn, path).await
}

/// [`tls_get`] for `host` over a connection made for `sni`.
async fn tls_get_for(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    path: &str,
) -> TlsAnswer {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(roots, alpn)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp).await.unwrap();
    let (_, session) = tls.get_ref();
    let negotiated = session.alpn_protocol().unwrap_or_default().to_vec();
    let peer = session.peer_certificates().unwrap()[0].clone().into_owned();
    let io = hyper_util::rt::TokioIo::new(tls);
    let request = http::Request::get(format!("https://{host}{path}"))
        .header("host", host)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = if negotiated == b"h2" {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(connection);
        let mut request = request;
        *request.version_mut() = http::Version::HTTP_2;
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let (mut parts, body) = request.into_parts();
        parts.uri = path.parse().unwrap();
        sender.send_request(http::Request::from_parts(parts, body)).await.unwrap()
    };
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (x_cache, alt_svc) = (header("x-cache").unwrap_or_default(), header("alt-svc"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (negotiated, status, x_cache, alt_svc, peer, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_negotiates_h2_and_http1_and_advertises_h3() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/app.js", Reply::ok("tls body"));
        let certs = certs("alpn", &[&["localhost"]]);
        let (node, _) = node_with(&origin, with_tls(&certs, true)).await;
        let addr = node.tls_addrs[0];
        let roots = [certs.pairs[0].2.clone()];
        let (alpn, status, x_cache, alt_svc, _, body) =
            tls_get(addr, "localhost", &roots, &[b"h2", b"http/1.1"], "/app.js").await;
        assert_eq!(
            (alpn.as_slice(), status, x_cache.as_str(), body.as_ref()),
            (&b"h2"[..], 200, "MISS", &b"tls body"[..])
        );
        let port = node.h3_addrs[0].port();
        assert_eq!(alt_svc.as_deref(), Some(format!("h3=\":{port}\"; ma=86400").as_str()));
        let (alpn, status, x_cache, ..) = tls_get(addr, "localhost", &roots, &[b"http/1.1"], "/app.js").await;
        assert_eq!((alpn.as_slice(), status, x_cache.as_str()), (&b"http/1.1"[..], 200, "HIT"));
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// One HTTP/1.1 GET over a new TLS connection made with `config` (whose
/// session cache keeps what the server hands out); how the handshake went.
async fn handshake_and_get(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> rustls::HandshakeKind {
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/").header("host", "localhost").body(http_body_util::Empty::<Bytes>::new());
    // Reading the response also reads the session tickets sent before it.
    let response = sender.send_request(request.unwrap()).await.unwrap();
    response.into_body().collect().await.unwrap();
    kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_client_resumes_its_session_after_many_others() {
    within(async {
        let origin = FakeOrigin::start().await;
        let certs = certs("resume", &[&["localhost"]]);
        let (node, _) = node_with(&origin, with_tls(&certs, false)).await;
        let addr = node.tls_addrs[0];
        let roots = [certs.pairs[0].2.clone()];
        let returning = Arc::new(client_config(&roots, &[b"http/1.1"]));
        assert_eq!(handshake_and_get(addr, &returning).await, rustls::HandshakeKind::Full);
        // More new clients than a stateful server cache of 256 sessions
        // would remember.
        for _ in 0..300 {
            let stranger = Arc::new(client_config(&roots, &[b"http/1.1"]));
            handshake_and_get(addr, &stranger).await;
        }
        assert_eq!(handshake_and_get(addr, &returning).await, rustls::HandshakeKind::Resumed);
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_reload_replaces_it() {
    within(async {
        let origin = FakeOrigin::start().await;
        let certs = certs("sni", &[&["a.example"], &["b.example", "*.b.example"]]);
        let (node, _) = node_with(&origin, with_tls(&certs, false)).await;
        let addr = node.tls_addrs[0];
        let roots: Vec<_> = certs.pairs.iter().map(|p| p.2.clone()).collect();
        let (.., peer, _) = tls_get(addr, "img.b.example", &roots, &[b"h2"], "/").await;
        assert_eq!(peer, certs.pairs[1].2, "SNI chose the b.example certificate");
        let (.., peer, _) = tls_get(addr, "a.example", &roots, &[b"h2"], "/").await;
        assert_eq!(peer, certs.pairs[0].2);
        // Replace a.example's certificate on disk, then reload.
        let fresh = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        std::fs::write(&certs.pairs[0].0, fresh.cert.pem()).unwrap();
        std::fs::write(&certs.pairs[0].1, fresh.signing_key.serialize_pem()).unwrap();
        node.reload_certificates().unwrap();
        let fresh_der = CertificateDer::from(fresh.cert.der().to_vec());
        let (.., peer, _) = tls_get(addr, "a.example", std::slice::from_ref(&fresh_der), &[b"h2"], "/").await;
        assert_eq!(peer, fresh_der, "new handshakes get the reloaded certificate");
        // A broken file is refused and the current certificates stay.
        std::fs::write(&certs.pairs[0].0, "not a certificate").unwrap();
        assert!(node.reload_certificates().is_err());
        let (.., peer, _) = tls_get(addr, "a.example", std::slice::from_ref(&fresh_der), &[b"h2"], "/").await;
        assert_eq!(peer, fresh_der);
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// Catalogue S28: over a connection whose certificate (chosen by SNI) is
/// one tenant's, a request for a host another configured certificate names
/// is a 421, over HTTP/1.1, HTTP/2 and HTTP/3; a host no certificate names
/// is served (an edge asking its shield for a customer's host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_fronted_through_another_tenants_certificate_is_misdirected() {
    within(async {
        let origin = FakeOrigin::start().await;
        let certs = certs("fronting", &[&["a.example"], &["b.example", "*.b.example"]]);
        let (node, _) = node_with(&origin, with_tls(&certs, true)).await;
        let addr = node.tls_addrs[0];
        let roots: Vec<_> = certs.pairs.iter().map(|p| p.2.clone()).collect();
        for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
            for (sni, host, expected) in [
                ("a.example", "a.example", 200),
                ("a.example", "b.example", 421),
                ("a.example", "img.b.example:443", 421),
                ("img.b.example", "b.example", 200),
                ("b.example", "a.example", 421),
                ("a.example", "unnamed.example", 200),
            ] {
                let (_, status, ..) = tls_get_for(addr, sni, host, &roots, &[alpn], "/asset.css").await;
                assert_eq!(status, expected, "SNI {sni}, Host {host}, {}", String::from_utf8_lossy(alpn));
            }
        }
        // HTTP/3: the same rule on a QUIC connection.
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(client_config(&roots, &[b"h3"])).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let connection = endpoint.connect(node.h3_addrs[0], "a.example").unwrap().await.unwrap();
        let (mut driver, mut sender) = h3::client::new(h3_quinn::Connection::new(connection)).await.unwrap();
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        for (host, expected) in [("b.example", 421), ("a.example", 200)] {
            let request = http::Request::get(format!("https://{host}/asset.css")).body(()).unwrap();
            let mut stream = sender.send_request(request).await.unwrap();
            let _ = stream.finish().await;
            let response = stream.recv_response().await.unwrap();
            assert_eq!(response.status().as_u16(), expected, "HTTP/3, Host {host}");
            while stream.recv_data().await.unwrap().is_some() {}
        }
        assert_eq!(origin.hits("/asset.css"), 3, "one per host served (a, b, unnamed); none for a refused one");
        // tls.refuse_misdirected = false (a shield that edges reach by an
        // internal name while it holds customer certificates) serves it.
        let tls = with_tls(&certs, false);
        let (lenient, _) = node_with(&origin, move |c| {
            tls(c);
            c.tls.refuse_misdirected = false;
        })
        .await;
        let (_, status, ..) =
            tls_get_for(lenient.tls_addrs[0], "a.example", "b.example", &roots, &[b"h2"], "/x.css").await;
        assert_eq!(status, 200);
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_serves_from_the_same_cache() {
    within(async {
        let origin = FakeOrigin::start().await;
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        origin.route("/big.js", Reply::ok(body.clone()));
        let certs = certs("h3", &[&["localhost"]]);
        let (node, _) = node_with(&origin, with_tls(&certs, true)).await;
        let h3_addr = node.h3_addrs[0];

        let mut config = client_config(&[certs.pairs[0].2.clone()], &[b"h3"]);
        config.enable_early_data = true;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let connection = endpoint.connect(h3_addr, "localhost").unwrap().await.unwrap();
        let (mut driver, mut sender) = h3::client::new(h3_quinn::Connection::new(connection)).await.unwrap();
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        for expected in ["MISS", "HIT"] {
            let request = http::Request::get("https://localhost/big.js").body(()).unwrap();
            let mut stream = sender.send_request(request).await.unwrap();
            // The node may stop reading once it has the request head, so finishing
            // can fail; the response still comes (RFC 9114 §4.1).
            let _ = stream.finish().await;
            let response = stream.recv_response().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-cache"], expected);
            assert!(response.headers().contains_key("date"), "h3 responses carry date");
            assert_eq!(response.headers()["content-length"], body.len().to_string().as_str());
            let mut received = Vec::new();
            while let Some(mut chunk) = stream.recv_data().await.unwrap() {
                received.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            }
            assert_eq!(received, body);
        }
        assert_eq!(origin.hits("/big.js"), 1, "HTTP/3 and the other protocols share one cache");
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_origins_are_verified_and_pooled() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/asset.css", Reply::ok("through TLS"));
        // A shield node with TLS is the edge's https origin.
        let certs = certs("origin", &[&["localhost"]]);
        let (shield, _) = node_with(&origin, with_tls(&certs, false)).await;
        let shield_url = format!("https://localhost:{}", shield.tls_addrs[0].port());
        let ca_file = certs.pairs[0].0.clone();
        let (_edge, edge) = node_with(&origin, move |c| {
            c.origin.urls = common::urls(&[shield_url]);
            c.origin.ca_file = Some(ca_file);
            c.origin.health_check_path = String::new();
        })
        .await;
        let response = holdfast_test::get(edge, "/asset.css").await;
        assert_eq!((response.status.as_u16(), response.bytes().as_ref()), (200, b"through TLS".as_ref()));
        assert_eq!(origin.hits("/asset.css"), 1);
        // Regression: the edge's HTTP/2 request named the shield's address
        // in :authority and the client's host in Host, so the shield (which
        // refuses a Host that contradicts :authority) answered 400. Both now
        // name the client's host, and the shield passes it on.
        origin.route("/named.css", Reply::ok("for a named host"));
        let mut client = holdfast_test::KeepAlive::with_host(edge, "assets.example");
        let outcome = client.get("/named.css").await;
        assert_eq!(outcome, holdfast_test::Outcome::Answered { status: 200, x_cache: "MISS".into(), complete: true });
        let host = origin.last_headers("/named.css").and_then(|h| h.get("host").cloned());
        assert_eq!(host.as_ref().and_then(|h| h.to_str().ok()), Some("assets.example"));
        // An origin whose certificate is not trusted is refused.
        let untrusted = format!("https://localhost:{}", shield.tls_addrs[0].port());
        let (_edge2, edge2) = node_with(&origin, move |c| {
            c.origin.urls = common::urls(&[untrusted]);
            c.origin.hold_budget = Duration::from_millis(200);
            c.origin.health_check_path = String::new();
        })
        .await;
        let response = holdfast_test::get(edge2, "/other.css").await;
        assert!(response.status.is_server_error(), "{}", response.status);
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// A reloaded config that names other certificate files is served from
/// them (not the started files re-read), and a changed HTTP/3 setting,
/// which only a restart applies, is named in the reload's summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_certificate_files_the_new_config_names() {
    within(async {
        let origin = FakeOrigin::start().await;
        let certs = certs("reload-files", &[&["a.example"], &["a.example"]]);
        let path = certs.dir.join("holdfast.toml");
        let write = |pair: usize, idle: &str| {
            let (cert, key, _) = &certs.pairs[pair];
            let text = format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\nshutdown_delay = \"0s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                 [origin]\nurls = [\"{}\"]\nhealth_check_path = \"\"\n\
                 [tls]\nlisten = [\"127.0.0.1:0\"]\nh3 = true\nh3_idle_timeout = \"{idle}\"\n\
                 [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
                origin.url(),
                cert.display(),
                key.display()
            );
            std::fs::write(&path, text).unwrap();
        };
        write(0, "30s");
        let env = holdfast_node::Environment::default();
        let config = holdfast_node::NodeConfig::load(Some(&path), holdfast_node::Overrides::default(), &env).unwrap();
        let node = holdfast_node::RunningNode::start(config).await.unwrap();
        node.reloader().set_source(path.clone(), holdfast_node::Overrides::default());
        let addr = node.tls_addrs[0];
        let roots: Vec<_> = certs.pairs.iter().map(|p| p.2.clone()).collect();
        let (.., peer, _) = tls_get(addr, "a.example", &roots, &[b"h2"], "/").await;
        assert_eq!(peer, certs.pairs[0].2, "the started config's certificate");

        write(1, "30s");
        let summary = node.reload().unwrap();
        assert!(!summary.contains("not applied"), "{summary}");
        let (.., peer, _) = tls_get(addr, "a.example", &roots, &[b"h2"], "/").await;
        assert_eq!(peer, certs.pairs[1].2, "new handshakes get the certificate the reloaded file names");

        write(0, "45s");
        let summary = node.reload().unwrap();
        assert!(summary.contains("not applied until a restart or --upgrade: tls.h3 and tls.h3_*"), "{summary}");
        let (.., peer, _) = tls_get(addr, "a.example", &roots, &[b"h2"], "/").await;
        assert_eq!(peer, certs.pairs[0].2);

        // A file that names a missing certificate changes nothing.
        std::fs::remove_file(&certs.pairs[1].0).unwrap();
        write(1, "45s");
        let error = format!("{:#}", node.reload().unwrap_err());
        assert!(error.contains(&certs.pairs[1].0.display().to_string()), "{error}");
        let (.., peer, _) = tls_get(addr, "a.example", &roots, &[b"h2"], "/").await;
        assert_eq!(peer, certs.pairs[0].2, "the current certificate stays");
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}
