//! Sending one request to one HTTP origin: the pooled hyper client and
//! its TLS, the allow-listed request, the timeouts.
//!
//! A request's URI names the host it is for (the Host it carries), not the
//! member's address: over HTTP/2 the URI's authority is what `:authority`
//! says, and RFC 9113 §8.3.1 forbids a Host that differs from it (a shield
//! answers such a request 400). Each member therefore has its own client,
//! whose connector dials the member and verifies its certificate for the
//! member's host, whatever host the URI names.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::dns::LastKnownGood;
use super::{Inner, Target};
use crate::stats::Counter;
use crate::timeout::IdleTimeoutBody;
use crate::{Endpoint, OriginBody, OriginConfig, OriginError, OriginErrorKind, OriginRequest, OriginStats};

/// The largest read from an HTTP/1.1 origin connection, hence the largest
/// body chunk a fill gets.
const ORIGIN_READ_BUFFER: usize = 64 * 1024;

pub(super) type HttpClient =
    HyperClient<HttpsConnector<CountingConnector>, BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>>;

/// hyper's TCP connector dialing one member whatever the URI names (the
/// URI names the request's host), counting the connections it opens:
/// requests minus connections is how often the pool was reused.
#[derive(Clone)]
pub(super) struct CountingConnector {
    inner: HttpConnector<LastKnownGood>,
    member: Uri,
    opened: Arc<Counter>,
}

impl tower_service::Service<Uri> for CountingConnector {
    type Response = <HttpConnector<LastKnownGood> as tower_service::Service<Uri>>::Response;
    type Error = <HttpConnector<LastKnownGood> as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _for_host: Uri) -> Self::Future {
        let connecting = self.inner.call(self.member.clone());
        let opened = Arc::clone(&self.opened);
        Box::pin(async move {
            let connection = connecting.await?;
            opened.inc();
            Ok(connection)
        })
    }
}

/// Client TLS for https origins: ring, TLS 1.2 and 1.3, web PKI roots plus
/// the configured ones, ALPN h2 then http/1.1.
fn tls_config(extra_roots: &[rustls_pki_types::CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        // A root that does not parse was already reported when the config was read.
        let _ = roots.add(root.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // Invariant: the ring provider supports rustls' default versions.
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The pooled client for one HTTP member (`authority`, over TLS if `tls`).
pub(super) fn hyper_client(config: &OriginConfig, authority: &Authority, tls: bool, stats: &OriginStats) -> HttpClient {
    let resolver =
        LastKnownGood::new(config.connect_timeout, config.dns_last_good_for, Arc::clone(&stats.dns_last_good_used));
    let opened = Arc::clone(&stats.connections_opened);
    let mut inner = HttpConnector::new_with_resolver(resolver);
    inner.set_connect_timeout(Some(config.connect_timeout));
    inner.set_nodelay(true);
    inner.enforce_http(false);
    let member = Uri::builder()
        .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        // Invariant: a scheme, a parsed authority and "/" make a URI.
        .expect("a member's URI builds from its parts");
    let http = CountingConnector { inner, member, opened };
    // The member's own name, not the request's host, is what its
    // certificate must name (as before requests named their host).
    let member_name = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(&config.extra_roots))
        .https_or_http()
        .with_server_name_resolver(move |_: &Uri| rustls_pki_types::ServerName::try_from(member_name.clone()))
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    HyperClient::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        // Body chunks of at most 64 KiB: what a fill holds per chunk
        // (and counts in its budget) stays small.
        .http1_max_buf_size(ORIGIN_READ_BUFFER)
        .build(connector)
}

impl Inner {
    pub(super) async fn check(&self, index: usize, path: &str) {
        let target = &self.targets[index];
        let Endpoint::Http { authority, .. } = &target.endpoint else { return };
        let mut request = OriginRequest {
            method: Method::GET,
            path_and_query: path.to_owned(),
            host: self.config.host.clone().unwrap_or_else(|| authority.host().to_owned()),
            accept_encoding: "identity",
            if_none_match: None,
            if_modified_since: None,
            body: None,
            hold: false,
            affinity: None,
            via: HeaderValue::from_static("1.1 holdfast-health-check"),
            headers: http::HeaderMap::new(),
        };
        let outcome = self.send_http(target, &mut request).await;
        let healthy = match &outcome {
            Ok(response) => !response.status().is_server_error(),
            Err(_) => false,
        };
        if healthy {
            target.health.success();
        } else {
            self.record_failure(index);
            // A refused check tells holding requests the origin is down, not failing.
            let answering = outcome.as_ref().err().is_none_or(OriginErrorKind::is_answer);
            target.answering.store(answering, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(super) async fn send_http(
        &self,
        target: &Target,
        request: &mut OriginRequest,
    ) -> Result<Response<OriginBody>, OriginErrorKind> {
        let config = &self.config;
        let (Endpoint::Http { authority, tls }, Some(http)) = (&target.endpoint, &target.http) else {
            return Err(OriginErrorKind::NoOrigin);
        };
        let host = config.host.as_deref().unwrap_or(&request.host);
        let uri = Uri::builder()
            .scheme(if *tls { Scheme::HTTPS } else { Scheme::HTTP })
            .authority(request_authority(host).unwrap_or_else(|| authority.clone()))
            .path_and_query(request.path_and_query.as_str())
            .build()
            .map_err(|e| OriginErrorKind::BadRequest(Arc::new(e)))?;
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(uri)
            .header(header::HOST, host)
            .header(header::ACCEPT_ENCODING, request.accept_encoding)
            .header(header::VIA, request.via.clone());
        if let Some(v) = &request.if_none_match {
            builder = builder.header(header::IF_NONE_MATCH, v);
        }
        if let Some(v) = &request.if_modified_since {
            builder = builder.header(header::IF_MODIFIED_SINCE, v);
        }
        if let Some(headers) = builder.headers_mut() {
            for (name, value) in &request.headers {
                headers.append(name, value.clone());
            }
        }
        let body = match request.body.take() {
            Some(pass) => {
                if let Some(v) = pass.content_type {
                    builder = builder.header(header::CONTENT_TYPE, v);
                }
                if let Some(v) = pass.content_length {
                    builder = builder.header(header::CONTENT_LENGTH, v);
                }
                pass.body
            }
            None => http_body_util::Empty::new().map_err(|never| match never {}).boxed(),
        };
        let outgoing = builder.body(body).map_err(|e| OriginErrorKind::BadRequest(Arc::new(e)))?;
        let response = match tokio::time::timeout(config.header_timeout, http.request(outgoing)).await {
            Err(_) => return Err(OriginErrorKind::HeaderTimeout(config.header_timeout)),
            Ok(Err(e)) if e.is_connect() => return Err(OriginErrorKind::Connect(Arc::new(e))),
            Ok(Err(e)) => return Err(OriginErrorKind::Protocol(Arc::new(e))),
            Ok(Ok(response)) => response,
        };
        let idle = config.body_idle_timeout;
        Ok(response.map(|body| {
            IdleTimeoutBody::new(body.map_err(|e| OriginErrorKind::Body(Arc::new(e))), idle)
                .map_err(|kind| OriginError::new(kind, String::new()))
                .boxed()
        }))
    }
}

/// The authority a request for `host` names (HTTP/2's `:authority`), when
/// the Host can be one: without userinfo, which `:authority` must not carry.
/// A Host that cannot is sent as it is, with the member's authority.
fn request_authority(host: &str) -> Option<Authority> {
    if host.contains('@') {
        return None;
    }
    Authority::try_from(host).ok()
}

#[cfg(test)]
mod tests {
    use super::request_authority;

    #[test]
    fn a_host_names_the_authority_unless_it_cannot() {
        assert_eq!(request_authority("assets.example").unwrap().as_str(), "assets.example");
        assert_eq!(request_authority("assets.example:8443").unwrap().as_str(), "assets.example:8443");
        assert_eq!(request_authority("[::1]:9000").unwrap().as_str(), "[::1]:9000");
        assert!(request_authority("user@assets.example").is_none());
        assert!(request_authority("bad host").is_none());
        assert!(request_authority("").is_none());
    }
}
