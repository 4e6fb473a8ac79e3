//! In-process HTTP to this listener, for `http_request` and `kubernetes`: an in-memory
//! stream served by the very handler an agent's HTTPS connection is (minus TLS), so the
//! request meets the same routing, authentication, decision, hold, masking and
//! recording. The connection and its sessions end when the agent's connection does.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::AdapterState;
use crate::body::{ResponseBody, ResponseBodyExt};
use crate::conn::Conn;
use crate::handler;

/// One in-process HTTP/1.1 connection.
pub struct LocalHttp {
    send: hyper::client::conn::http1::SendRequest<ResponseBody>,
}

impl LocalHttp {
    /// Opens a connection whose sessions are recorded as coming from `peer`.
    pub async fn open(state: &Arc<AdapterState>, peer: SocketAddr) -> Result<LocalHttp, String> {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let state = state.clone();
        tokio::spawn(async move {
            let conn = Arc::new(Conn::new(peer));
            let service = {
                let conn = conn.clone();
                hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let conn = conn.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            handler::handle_boxed(state, conn, req).await,
                        )
                    }
                })
            };
            let served = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(server), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "an in-process HTTP connection ended with an error");
            }
            conn.close("mcp_connection_closed").await;
        });
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(LocalHttp { send })
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.send.is_closed()
    }

    /// Sends one request with the agent's token.
    pub async fn send(
        &mut self,
        method: hyper::Method,
        path_and_query: &str,
        token: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Response<Incoming>, String> {
        self.send.ready().await.map_err(|e| e.to_string())?;
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, "airlock.internal")
            .header(header::USER_AGENT, "airlock-mcp")
            .header(header::ACCEPT, "application/json, */*;q=0.5");
        let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        req = req.header(header::AUTHORIZATION, auth);
        let body = match body {
            Some((bytes, content_type)) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                ResponseBody::full(bytes)
            }
            None => ResponseBody::empty(),
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
        self.send.send_request(req).await.map_err(|e| e.to_string())
    }
}
