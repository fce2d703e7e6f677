//! The metrics endpoint: `GET /metrics` over HTTP/1.1 (hyper), on the trace's single-threaded
//! runtime, between the loop's steps: a scrape waits for the step under way, and the loop
//! for the scrape. What a client can take from the loop is bounded: 16 connections, each at
//! most 30 s, and the registry encoded at most once a second per format (a client asking
//! faster gets the same text).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ACCEPT, ALLOW, CONTENT_TYPE},
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::Exposition;
use crate::error::Error;

/// Connections served at once; more are closed at accept. A scraper needs one.
const MAX_CONNECTIONS: usize = 16;
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection's whole life: one that reads nothing back cannot hold a slot longer.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// How old an encoded exposition may be served again.
const REENCODE_AFTER: Duration = Duration::from_secs(1);

/// The last encoding of each format, with when it was made.
type Encoded = Mutex<[Option<(Instant, Bytes)>; 2]>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `addr` now (before the probes load), so that a taken port is bad input.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::BadInput(format!(
            "--metrics {addr}: cannot listen there: {e} (choose another address or port)"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("the metrics socket", e))?;
    Ok(listener)
}

/// Serves until the runtime ends; runs as a task of it.
pub(crate) async fn serve(listener: std::net::TcpListener, registry: Arc<Registry>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("sigtrace: warning: the metrics endpoint stopped: {e}");
            return;
        }
    };
    let open = Arc::new(AtomicUsize::new(0));
    let encoded: Arc<Encoded> = Arc::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of fds, a reset before accept: the next connection may fare better.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let registry = registry.clone();
        let open = open.clone();
        let encoded = encoded.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (registry, encoded) = (registry.clone(), encoded.clone());
                async move { Ok::<_, Infallible>(respond(&request, &registry, &encoded)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The registry in `format`, encoded again only when the last encoding is a second old.
fn exposition(
    registry: &Registry,
    encoded: &Encoded,
    format: Exposition,
) -> Result<Bytes, std::fmt::Error> {
    let mut slots = encoded.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = &mut slots[format as usize];
    if let Some((at, body)) = slot
        && at.elapsed() < REENCODE_AFTER
    {
        return Ok(body.clone());
    }
    let body = Bytes::from(super::encode(registry, format)?);
    *slot = Some((Instant::now(), body.clone()));
    Ok(body)
}

fn respond(
    request: &Request<Incoming>,
    registry: &Registry,
    encoded: &Encoded,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: Bytes| {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"GET /metrics\n"),
        );
        if let Ok(value) = "GET, HEAD".parse() {
            response.headers_mut().insert(ALLOW, value);
        }
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            // Prometheus asks for OpenMetrics first; curl, promtool and others get the
            // classic format.
            let openmetrics = request
                .headers()
                .get_all(ACCEPT)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .any(|value| value.contains("application/openmetrics-text"));
            let (format, content_type) = if openmetrics {
                (Exposition::OpenMetrics, OPENMETRICS)
            } else {
                (Exposition::PrometheusText, PROMETHEUS_TEXT)
            };
            match exposition(registry, encoded, format) {
                Ok(text) => reply(StatusCode::OK, content_type, text),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    Bytes::from_static(b"encoding the metrics failed\n"),
                ),
            }
        }
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"sigtrace: the metrics are at /metrics\n"),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: the metrics are at /metrics\n"),
        ),
    }
}
