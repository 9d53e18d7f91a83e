//! The HTTP endpoint: `/metrics`, `/healthz` and `/readyz` on hyper's HTTP/1.1 server.
//!
//! Every connection is bounded twice so that clients which connect and then stall (never send
//! a request, or never read the answer) cannot pile up file descriptors: at most
//! [`Limits::max_connections`] are served at once (the excess is closed on accept), and each
//! one gets [`Limits::header_timeout`] to send its request head and
//! [`Limits::connection_timeout`] in all. One request per connection, as before: a scrape is
//! a few KiB every 15 s, so keep-alive would only hold descriptors open.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Health flags served by the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    /// State restored and sources started.
    pub ready: AtomicBool,
}

/// Bounds on the connections the endpoint serves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once; a connection accepted beyond this is closed at once.
    pub max_connections: usize,
    /// Time a client has to send its request head.
    pub header_timeout: Duration,
    /// Time a connection may take in all, answer included (a client that never reads the
    /// answer is dropped after this).
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Prometheus, a kubelet and a curl or two: 64 is far above honest use and far
            // below any descriptor limit.
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
        }
    }
}

/// How long an answer under way may still take once the endpoint is stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The largest request head read (a scrape's is a few hundred bytes).
const MAX_REQUEST_HEAD: usize = 16 << 10;

/// Serves `/metrics`, `/healthz` and `/readyz` on an already bound listener until `stop`.
///
/// On `stop` the listener is closed, answers under way get up to a second to finish, and
/// the call returns.
pub async fn serve(listener: TcpListener, health: Arc<Health>, stop: CancellationToken) {
    serve_with(listener, health, stop, Limits::default()).await;
}

/// [`serve`] with explicit [`Limits`] (tests shorten them).
pub(crate) async fn serve_with(
    listener: TcpListener,
    health: Arc<Health>,
    stop: CancellationToken,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let conn = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            c = listener.accept() => c,
        };
        let stream = match conn {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE) or a connection reset before accept: retrying at
                // once would spin, so wait a little for descriptors to be released.
                tracing::debug!(error = %e, "Metrics endpoint accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Closing the excess at once (rather than queueing it) keeps the bound on descriptors
        // hard; the stalled connections holding the slots expire within `connection_timeout`.
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        tracker.spawn(connection(
            stream,
            permit,
            Arc::clone(&health),
            stop.clone(),
            limits,
        ));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Serves one connection (one request), holding `_permit` until it is closed.
async fn connection(
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    health: Arc<Health>,
    stop: CancellationToken,
    limits: Limits,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let health = Arc::clone(&health);
        async move { Ok::<_, Infallible>(respond(&req, &health)) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_REQUEST_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let deadline = tokio::time::sleep(limits.connection_timeout);
    tokio::pin!(deadline);
    tokio::select! {
        // Errors are the client's (bad request, reset, timeout): nothing to report.
        _ = conn.as_mut() => {}
        () = &mut deadline => {}
        () = stop.cancelled() => {
            // Finish an answer already started (an idle connection closes at once), but do
            // not let a client that stopped reading hold up the job's exit.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
        }
    }
}

/// The answer to one request.
fn respond(req: &Request<Incoming>, health: &Health) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain";
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(super::get().render()),
        ),
        (&Method::GET, "/healthz") => (StatusCode::OK, TEXT, Bytes::from_static(b"ok\n")),
        (&Method::GET, "/readyz") if health.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, TEXT, Bytes::from_static(b"ready\n"))
        }
        (&Method::GET, "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            Bytes::from_static(b"starting\n"),
        ),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            Bytes::from_static(b"method not allowed\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    resp
}

#[cfg(test)]
mod tests;
