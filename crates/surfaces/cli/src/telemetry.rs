//! `[telemetry]`: Airlock's own spans exported to an OpenTelemetry collector over
//! OTLP/HTTP (protobuf), for `airlock serve`.
//!
//! What is exported is deliberately narrow. A `tracing-opentelemetry` layer sees only
//! the adapters' session and request spans (`pg`, `http`) and the PostgreSQL relay's
//! `statements` spans, never log events; and before a batch leaves, every span is cut
//! down to an allowlist of attributes (target, protocol, principal name, session id,
//! statement count and decision), so that a field added to those spans later cannot
//! carry a token, a statement or a parameter to the collector by accident.
//!
//! An agent's W3C `traceparent` makes Airlock's span a child of the agent's span (the
//! adapters call `airlock_session::join_trace`, which this module installs), so the
//! agent's trace shows Airlock.
//!
//! The collector is never in the data path: spans are queued and sent by the SDK's
//! batch thread; a collector that is down or slow costs dropped spans and a warning
//! now and then, never a statement. Requests go out on the gateway's tokio runtime with
//! the workspace's reqwest client (rustls, Mozilla roots, no redirects). Header values
//! that are secret references are resolved after the secret store is opened, and again
//! on every reload (a rotated collector key is picked up without a restart).

/// Why telemetry cannot be set up. Never contains a header value.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub enum TelemetryError {
    /// The binary was built without the `otel` cargo feature.
    #[cfg_attr(feature = "otel", allow(dead_code))]
    #[error(
        "[telemetry]: this airlock was built without OpenTelemetry support (cargo feature `otel`); remove the section or use a build with it"
    )]
    NotBuilt,
    /// `airlock serve` runs outside a tokio runtime (a bug).
    #[error("[telemetry]: no async runtime to send spans from")]
    NoRuntime,
    /// The HTTP client or the exporter could not be built.
    #[error("[telemetry]: the OTLP exporter cannot be set up: {0}")]
    Exporter(String),
    /// A header's secret reference does not resolve.
    #[error("[telemetry] headers: `{header}`: {source}")]
    Secret {
        /// The header's name.
        header: String,
        /// Why (names the reference, never the value).
        source: airlock_vault::VaultError,
    },
    /// A header's value (resolved) cannot be sent in a header.
    #[error(
        "[telemetry] headers: the value of `{header}` is not a valid header value (control characters or non-ASCII; it is not shown)"
    )]
    HeaderValue {
        /// The header's name.
        header: String,
    },
    /// A header's name is not a header name (the configuration checks this first).
    #[error("[telemetry] headers: `{header}` is not a valid header name")]
    HeaderName {
        /// The header's name.
        header: String,
    },
}

#[cfg(feature = "otel")]
pub use otel::{Telemetry, check};

#[cfg(not(feature = "otel"))]
pub use off::{Telemetry, check};

#[cfg(feature = "otel")]
mod otel {
    use std::collections::HashMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use airlock_config::{EnvValue, TelemetryConfig};
    use arc_swap::ArcSwap;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
    use opentelemetry::{Key, KeyValue};
    use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{
        Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanEvents, SpanExporter, SpanLinks,
    };
    use reqwest::header::{HeaderName, HeaderValue};
    use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterFn, Filtered};
    use tracing_subscriber::registry::Registry;

    use super::TelemetryError;

    /// The spans that are exported: (tracing span name, exported name; an `http` span
    /// is named by its protocol, see [`scrub`]).
    const SPANS: &[(&str, &str)] = &[
        ("pg", "airlock postgresql session"),
        ("http", "airlock http request"),
        ("statements", "airlock statements"),
    ];

    /// The attributes that are exported: (span field, attribute key). Anything else a
    /// span carries is dropped before export.
    const ATTRIBUTES: &[(&str, &str)] = &[
        ("target", "airlock.target"),
        ("protocol", "airlock.protocol"),
        ("principal", "airlock.principal"),
        ("session", "airlock.session"),
        ("count", "airlock.statements"),
        ("decision", "airlock.decision"),
    ];

    /// How long the final flush at shutdown may take.
    const FLUSH_LIMIT: Duration = Duration::from_secs(5);
    /// At most one warning about failing exports in this long.
    const WARN_EVERY: Duration = Duration::from_secs(60);
    /// The largest collector answer read (an OTLP answer is a few bytes).
    const MAX_ANSWER: usize = 64 * 1024;

    /// The layer that turns the exported spans into OpenTelemetry spans.
    pub type SpanLayer = Filtered<
        OpenTelemetryLayer<Registry, SdkTracer>,
        FilterFn<fn(&tracing::Metadata<'_>) -> bool>,
        Registry,
    >;

    /// The running exporter: flushed by [`Telemetry::shutdown`].
    pub struct Telemetry {
        provider: SdkTracerProvider,
        headers: Arc<ArcSwap<Vec<(HeaderName, HeaderValue)>>>,
    }

    impl Telemetry {
        /// Sets up the exporter for `config` and the layer that feeds it, and installs
        /// how adapters' spans join agents' traces. Headers are sent once
        /// [`Telemetry::set_headers`] resolved them (before any session can start).
        pub fn start(config: &TelemetryConfig) -> Result<(Telemetry, SpanLayer), TelemetryError> {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
            let headers = Arc::new(ArcSwap::from_pointee(Vec::new()));
            let transport = Transport {
                http: http_client(config.timeout)?,
                runtime,
                headers: headers.clone(),
                timeout: config.timeout,
            };
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(transport)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(config.traces_url())
                .with_timeout(config.timeout)
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            let resource = Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(Guarded::new(exporter))
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    config.sample_ratio,
                ))))
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("airlock");
            let filter: fn(&tracing::Metadata<'_>) -> bool = exported;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // A session span is joined to the agent's trace after it is entered
                // (PostgreSQL's traceparent arrives with the startup packet).
                .with_context_activation(false)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_filter(FilterFn::new(filter));
            // Only fails if already installed, which a second start would be.
            let _ = airlock_session::set_trace_joiner(join);
            Ok((Telemetry { provider, headers }, layer))
        }

        /// Resolves the headers' secret references and sends them from now on; on
        /// error the headers in force stay.
        pub fn set_headers(&self, config: &TelemetryConfig) -> Result<(), TelemetryError> {
            self.headers.store(Arc::new(resolve_headers(config)?));
            Ok(())
        }

        /// Exports what is still queued (bounded by [`FLUSH_LIMIT`]) and stops.
        pub async fn shutdown(self) {
            let provider = self.provider;
            let flushed =
                tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_LIMIT))
                    .await;
            match flushed {
                Ok(Ok(())) => tracing::debug!("telemetry: the last spans were handed over"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "telemetry: the last spans may not all be exported")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry: the last spans may not all be exported")
                }
            }
        }
    }

    /// Checks that the headers' references resolve to values a header can carry.
    pub fn check(config: &TelemetryConfig) -> Result<(), TelemetryError> {
        resolve_headers(config).map(|_| ())
    }

    fn resolve_headers(
        config: &TelemetryConfig,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, TelemetryError> {
        config
            .headers
            .iter()
            .map(|(name, value)| {
                let header = || name.clone();
                let key = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| TelemetryError::HeaderName { header: header() })?;
                let invalid = |_| TelemetryError::HeaderValue { header: header() };
                let value = match value {
                    EnvValue::Plain(text) => HeaderValue::from_str(text).map_err(invalid)?,
                    EnvValue::Secret(reference) => {
                        let secret = airlock_vault::resolve(reference).map_err(|source| {
                            TelemetryError::Secret {
                                header: header(),
                                source,
                            }
                        })?;
                        let mut value = HeaderValue::from_str(secret.expose()).map_err(invalid)?;
                        // Printed as "Sensitive" should anything debug-print a request.
                        value.set_sensitive(true);
                        value
                    }
                };
                Ok((key, value))
            })
            .collect()
    }

    /// Whether the layer sees a span (or event): only the spans in [`SPANS`], made by
    /// Airlock's own crates, and no events.
    fn exported(meta: &tracing::Metadata<'_>) -> bool {
        meta.is_span()
            && meta.target().starts_with("airlock_")
            && SPANS.iter().any(|(name, _)| *name == meta.name())
    }

    /// Makes `span` a child of the agent's span in `traceparent` (W3C propagator).
    fn join(span: &tracing::Span, traceparent: &str) {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if let Err(e) = span.set_parent(parent) {
            tracing::debug!(error = %e, "telemetry: the span could not join the agent's trace");
        }
    }

    /// The HTTP client: TLS is rustls with the aws-lc-rs provider and the Mozilla roots;
    /// redirects are not followed (they would take the headers elsewhere).
    fn http_client(timeout: Duration) -> Result<reqwest::Client, TelemetryError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TelemetryError::Exporter(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TelemetryError::Exporter(format!("HTTP client setup failed: {e}")))
    }

    /// Sends the exporter's requests on the gateway's runtime (the SDK's batch thread
    /// has none), with the configured headers.
    struct Transport {
        http: reqwest::Client,
        runtime: tokio::runtime::Handle,
        headers: Arc<ArcSwap<Vec<(HeaderName, HeaderValue)>>>,
        timeout: Duration,
    }

    impl fmt::Debug for Transport {
        // Never the headers' values.
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Transport")
                .field("headers", &self.headers.load().len())
                .field("timeout", &self.timeout)
                .finish()
        }
    }

    #[async_trait::async_trait]
    impl HttpClient for Transport {
        async fn send_bytes(
            &self,
            mut request: Request<Bytes>,
        ) -> Result<Response<Bytes>, HttpError> {
            for (name, value) in self.headers.load().iter() {
                request.headers_mut().insert(name.clone(), value.clone());
            }
            let http = self.http.clone();
            let timeout = self.timeout;
            let sent = self.runtime.spawn(async move {
                match tokio::time::timeout(timeout, send(http, request)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(HttpError::from("the collector did not answer in time")),
                }
            });
            sent.await.map_err(HttpError::from)?
        }
    }

    async fn send(
        http: reqwest::Client,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let mut answer = http.execute(request).await?;
        let mut response = Response::builder().status(answer.status());
        // Retry-After matters to the exporter's backoff.
        if let Some(v) = answer.headers().get(reqwest::header::RETRY_AFTER) {
            response = response.header(reqwest::header::RETRY_AFTER, v.clone());
        }
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(HttpError::from("the collector's answer is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(response.body(Bytes::from(body))?)
    }

    /// The exporter between the SDK and OTLP: cuts every span down to what may leave
    /// (see [`scrub`]), and turns export failures into a warning now and then (the SDK
    /// would log an error per batch) while the spans are dropped.
    struct Guarded<E> {
        inner: E,
        failures: Mutex<Failures>,
    }

    #[derive(Default)]
    struct Failures {
        /// When the last warning was logged.
        warned: Option<Instant>,
        /// Failed exports and their spans since then.
        exports: u64,
        spans: u64,
        /// The last export failed.
        failing: bool,
    }

    impl<E> Guarded<E> {
        fn new(inner: E) -> Self {
            Guarded {
                inner,
                failures: Mutex::new(Failures::default()),
            }
        }

        fn failed(&self, spans: usize, error: &dyn fmt::Display) {
            let Ok(mut f) = self.failures.lock() else {
                return;
            };
            f.failing = true;
            f.exports += 1;
            f.spans += spans as u64;
            if f.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    error = %error,
                    failed_exports = f.exports,
                    dropped_spans = f.spans,
                    "telemetry: spans cannot be exported to the collector and are dropped (statements are not affected); next warning in a minute at the earliest"
                );
                f.warned = Some(Instant::now());
                f.exports = 0;
                f.spans = 0;
            }
        }

        fn exported(&self) {
            let Ok(mut f) = self.failures.lock() else {
                return;
            };
            if f.failing {
                tracing::info!(
                    dropped_spans = f.spans,
                    "telemetry: spans are exported again"
                );
                *f = Failures::default();
            }
        }
    }

    impl<E: fmt::Debug> fmt::Debug for Guarded<E> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Guarded")
                .field("inner", &self.inner)
                .finish()
        }
    }

    impl<E: SpanExporter> SpanExporter for Guarded<E> {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let batch: Vec<SpanData> = batch.into_iter().filter_map(scrub).collect();
            if batch.is_empty() {
                return Ok(());
            }
            let spans = batch.len();
            match self.inner.export(batch).await {
                Ok(()) => self.exported(),
                Err(e) => self.failed(spans, &e),
            }
            Ok(())
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            if let Ok(f) = self.failures.lock()
                && f.spans > 0
            {
                tracing::warn!(
                    failed_exports = f.exports,
                    dropped_spans = f.spans,
                    "telemetry: spans were dropped since the last warning"
                );
            }
            self.inner.shutdown_with_timeout(timeout)
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.inner.force_flush()
        }

        fn set_resource(&mut self, resource: &Resource) {
            self.inner.set_resource(resource);
        }
    }

    /// What of a span may leave: the attributes in [`ATTRIBUTES`] (renamed), no events,
    /// links or status text. A session or request span whose client never authenticated
    /// (no principal: a probe, a bad token, a client that left during the handshake) is
    /// not exported at all: an unauthenticated client cannot write into the collector.
    fn scrub(mut span: SpanData) -> Option<SpanData> {
        let attributes = std::mem::take(&mut span.attributes);
        span.attributes = attributes
            .into_iter()
            .filter_map(|kv| {
                let (_, key) = ATTRIBUTES
                    .iter()
                    .find(|(field, _)| *field == kv.key.as_str())?;
                Some(KeyValue::new(Key::from_static_str(key), kv.value))
            })
            .collect();
        let text = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.as_str().into_owned())
        };
        let session_span = matches!(span.name.as_ref(), "pg" | "http");
        let named = |key: &str| text(key).is_some_and(|t| !t.is_empty());
        if session_span && !(named("airlock.target") && named("airlock.principal")) {
            return None;
        }
        span.name = match span.name.as_ref() {
            "http" => format!(
                "airlock {} request",
                text("airlock.protocol").unwrap_or_else(|| "http".into())
            )
            .into(),
            name => SPANS
                .iter()
                .find(|(from, _)| *from == name)
                .map(|(_, to)| (*to).into())
                .unwrap_or_else(|| name.to_owned().into()),
        };
        span.span_kind = if session_span {
            SpanKind::Server
        } else {
            SpanKind::Internal
        };
        span.events = SpanEvents::default();
        span.links = SpanLinks::default();
        span.status = Status::Unset;
        span.dropped_attributes_count = 0;
        Some(span)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use opentelemetry::InstrumentationScope;
        use opentelemetry::trace::{SpanContext, SpanId};
        use std::time::SystemTime;

        fn span(name: &'static str, attributes: Vec<KeyValue>) -> SpanData {
            SpanData {
                span_context: SpanContext::empty_context(),
                parent_span_id: SpanId::INVALID,
                parent_span_is_remote: false,
                span_kind: SpanKind::Internal,
                name: name.into(),
                start_time: SystemTime::UNIX_EPOCH,
                end_time: SystemTime::UNIX_EPOCH,
                attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: Status::error("select password from users"),
                instrumentation_scope: InstrumentationScope::builder("airlock").build(),
            }
        }

        fn keys(span: &SpanData) -> Vec<String> {
            span.attributes
                .iter()
                .map(|kv| kv.key.to_string())
                .collect()
        }

        #[test]
        fn only_allowlisted_attributes_leave_renamed() {
            let s = scrub(span(
                "pg",
                vec![
                    KeyValue::new("client", "127.0.0.1:5555"),
                    KeyValue::new("protocol", "postgresql"),
                    KeyValue::new("target", "shop"),
                    KeyValue::new("principal", "agent"),
                    KeyValue::new("session", "0190-…"),
                    KeyValue::new("statement", "select secret"),
                    KeyValue::new("token", "ak_live_123"),
                    KeyValue::new("code.file.path", "session.rs"),
                ],
            ))
            .unwrap();
            assert_eq!(
                keys(&s),
                [
                    "airlock.protocol",
                    "airlock.target",
                    "airlock.principal",
                    "airlock.session"
                ]
            );
            assert_eq!(s.name, "airlock postgresql session");
            assert_eq!(s.span_kind, SpanKind::Server);
            assert_eq!(s.status, Status::Unset);
        }

        #[test]
        fn a_session_span_without_a_target_or_principal_is_not_exported() {
            assert!(scrub(span("pg", vec![KeyValue::new("client", "x")])).is_none());
            assert!(scrub(span("pg", vec![KeyValue::new("target", "shop")])).is_none());
            let unnamed = vec![
                KeyValue::new("target", ""),
                KeyValue::new("principal", "agent"),
            ];
            assert!(scrub(span("http", unnamed)).is_none());
            let s = scrub(span(
                "http",
                vec![
                    KeyValue::new("target", "tools"),
                    KeyValue::new("protocol", "mcp"),
                    KeyValue::new("principal", "agent"),
                ],
            ))
            .unwrap();
            assert_eq!(s.name, "airlock mcp request");
            let s = scrub(span(
                "statements",
                vec![
                    KeyValue::new("count", 2_i64),
                    KeyValue::new("decision", "deny"),
                ],
            ))
            .unwrap();
            assert_eq!(keys(&s), ["airlock.statements", "airlock.decision"]);
            assert_eq!(s.span_kind, SpanKind::Internal);
            assert_eq!(s.name, "airlock statements");
        }
    }
}

#[cfg(not(feature = "otel"))]
mod off {
    use airlock_config::TelemetryConfig;

    use super::TelemetryError;

    /// No layer: nothing is exported.
    pub type SpanLayer = tracing_subscriber::layer::Identity;

    /// Never made: a build without the `otel` feature refuses `[telemetry]`.
    pub struct Telemetry {
        _never: std::convert::Infallible,
    }

    impl Telemetry {
        pub fn start(_config: &TelemetryConfig) -> Result<(Telemetry, SpanLayer), TelemetryError> {
            Err(TelemetryError::NotBuilt)
        }

        pub fn set_headers(&self, _config: &TelemetryConfig) -> Result<(), TelemetryError> {
            Ok(())
        }

        pub async fn shutdown(self) {}
    }

    pub fn check(_config: &TelemetryConfig) -> Result<(), TelemetryError> {
        Err(TelemetryError::NotBuilt)
    }
}
