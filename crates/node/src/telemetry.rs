//! Logs on stderr, and, when the standard `OTEL_*` variables ask for it,
//! the per-request spans exported to an OpenTelemetry collector over
//! OTLP/HTTP (protobuf).
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and not with
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The exporter
//! reads the other `OTEL_*` variables itself (headers, timeout,
//! compression, batch sizes and delay, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`); the service name is `holdfast` when
//! neither names one. Plain `http://` endpoints only: the collector is
//! expected next to the node (agent or sidecar).
//!
//! Spans are batched on the SDK's own thread, which sends them with a
//! one-thread runtime of its own: exports never take time on the workers
//! that serve requests, and a slow or absent collector only drops spans.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
#[cfg(feature = "otel")]
use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::Environment;

/// Keeps the exporter for the process's life: [`Telemetry::shutdown`]
/// sends the spans still batched.
#[must_use = "dropping it does not flush; call shutdown at exit"]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// Set once by [`init`] when spans are exported: like the subscriber it
/// goes with, global to the process.
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Whether request spans are exported, so access records carry trace ids.
pub fn traces_on() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

impl Telemetry {
    /// Sends what is batched (bounded by the exporter's timeout) and stops.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("holdfast: traces not all sent: {error}");
        }
    }
}

/// Sets up the global subscriber: logs filtered by `HOLDFAST_LOG` (default
/// `info`) on stderr, and with `traces` and the environment asking for
/// it, the OTLP exporter of request spans.
pub fn init(env: &Environment, traces: bool) -> anyhow::Result<Telemetry> {
    let filter = || EnvFilter::try_from_env("HOLDFAST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    #[cfg(feature = "otel")]
    if traces && env.otel_traces {
        let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter());
        let (layer, provider) = otel::layer(env)?;
        tracing_subscriber::registry().with(logs).with(layer).try_init()?;
        TRACES_ON.store(true, Ordering::Relaxed);
        return Ok(Telemetry { provider: Some(provider) });
    }
    let _ = (env, traces);
    // Without an exporter, one global filter: a disabled span or event
    // costs a level check on the request path, not a per-layer filter call.
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|error| anyhow::anyhow!(error))?;
    Ok(Telemetry {
        #[cfg(feature = "otel")]
        provider: None,
    })
}

/// The trace id of `span` as 32 hex digits, when it is exported.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| span_context.trace_id().to_string())
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}

#[cfg(feature = "otel")]
mod otel {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, Limited};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_http::{HttpClient, HttpError, Request, Response};
    use opentelemetry_otlp::{SpanExporter, WithHttpConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::Subscriber;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::registry::LookupSpan;

    use crate::Environment;

    /// A collector's answer is read up to this many bytes.
    const MAX_ANSWER: usize = 64 * 1024;
    /// The longest one export may take (OTLP's default timeout): the
    /// batch thread waits no longer for a collector.
    const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The layer that exports holdfast's spans (the request span and those
    /// inside it, at debug level and above), and its provider.
    pub(super) fn layer<S>(env: &Environment) -> anyhow::Result<(impl Layer<S>, SdkTracerProvider)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let exporter = SpanExporter::builder().with_http().with_http_client(Exporting::new()?).build()?;
        let mut resource = Resource::builder();
        if !env.otel_service_named {
            resource = resource.with_service_name("holdfast");
        }
        let provider =
            SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
        let tracer = provider.tracer("holdfast");
        let spans = Targets::new()
            .with_target("holdfast_frontend", LevelFilter::DEBUG)
            .with_target("holdfast_origin", LevelFilter::DEBUG)
            .with_target("holdfast_cache", LevelFilter::DEBUG);
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans);
        Ok((layer, provider))
    }

    /// The exporter's HTTP client: hyper (already in the build, unlike
    /// reqwest) on a one-thread runtime of its own, driven by the SDK's
    /// batch thread that calls it.
    #[derive(Debug)]
    struct Exporting {
        runtime: tokio::runtime::Runtime,
        client: Client<HttpConnector, Full<Bytes>>,
    }

    impl Exporting {
        fn new() -> anyhow::Result<Exporting> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(Duration::from_secs(3)));
            let client = Client::builder(TokioExecutor::new()).build(connector);
            Ok(Exporting { runtime, client })
        }

        async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let (parts, body) = request.into_parts();
            let answer = self.client.request(Request::from_parts(parts, Full::new(body))).await?;
            let (parts, body) = answer.into_parts();
            let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
            Ok(Response::from_parts(parts, body))
        }
    }

    impl HttpClient for Exporting {
        fn send_bytes<'a, 'f>(
            &'a self,
            request: Request<Bytes>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'f>>
        where
            'a: 'f,
            Self: 'f,
        {
            // Called on the SDK's batch thread, never on a runtime's.
            let result = self
                .runtime
                .block_on(async { tokio::time::timeout(EXPORT_TIMEOUT, self.send(request)).await })
                .unwrap_or_else(|_| Err("the collector took too long".into()));
            Box::pin(std::future::ready(result))
        }
    }
}
