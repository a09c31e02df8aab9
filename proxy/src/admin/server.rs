//! The admin HTTP/1.1 listener (Istio's sidecars use 127.0.0.1:15000). Each request is
//! answered on a blocking thread: a config dump of a large mesh takes a while to
//! render and must not stall the runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::handler::{Admin, AdminResponse};

/// The default admin address of an Istio sidecar.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:15000";

/// A running admin server; stops when [`AdminServer::shutdown`] is called or dropped.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `address` and serves `admin` on the current runtime.
    pub async fn start(admin: Arc<Admin>, address: SocketAddr) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(address).await?;
        let local_addr = listener.local_addr()?;
        info!(address = %local_addr, "admin address");
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let (stream, peer) = match accepted {
                            Ok(a) => a,
                            Err(e) => {
                                // Out of descriptors and the like: back off, do not spin.
                                debug!(error = %e, "admin accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        let admin = admin.clone();
                        let mut conn_stopped = stopped.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |req| serve(admin.clone(), req));
                            let conn = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service);
                            tokio::pin!(conn);
                            tokio::select! {
                                result = conn.as_mut() => {
                                    if let Err(e) = result {
                                        debug!(%peer, error = %e, "admin connection ended");
                                    }
                                }
                                _ = conn_stopped.changed() => {}
                            }
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
        });
        Ok(AdminServer {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes open admin connections.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn serve(
    admin: Arc<Admin>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let answer = tokio::task::spawn_blocking(move || admin.handle(&method, &path))
        .await
        .unwrap_or_else(|_| AdminResponse {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            content_type: super::handler::TEXT,
            body: "admin handler failed\n".into(),
        });
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
