//! The PostgreSQL adapter: a listener that speaks the PostgreSQL wire protocol to agents'
//! ordinary clients (psql, psycopg, JDBC...), authenticates them with Airlock tokens,
//! and relays their sessions to targets through `airlock-session`.
//!
//! The adapter holds no policy: it translates frames to actions and events and asks the
//! session API what to do. See `README.md` beside this crate for protocol corners.

mod cancel;
mod capture;
pub mod catalog;
/// The wire codec, a crate of its own so that it builds (and fuzzes) without the rest.
pub use airlock_postgres_codec as codec;
pub mod discover;
mod error;
mod masking;
mod pool;
mod relay;
pub mod reply;
mod session;
pub mod stream;
mod syntax;
pub mod tls;
mod translate;
mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use airlock_config::PostgresListenerConfig;
use airlock_session::Gateway;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use error::{PostgresError, UpstreamError};

/// Loads a target's function catalog over a connection of its own (for
/// `airlock policy explain`).
pub async fn load_catalog(
    target: &airlock_session::Target,
) -> Result<catalog::PgCatalog, UpstreamError> {
    let mut up = upstream::connect(target, &[]).await?;
    catalog::load(&mut up.io, &mut up.leftover).await
}

/// What every connection of this listener shares.
pub(crate) struct AdapterState {
    gateway: Arc<Gateway>,
    listener: PostgresListenerConfig,
    tls: TlsAcceptor,
    cancels: Arc<cancel::CancelRegistry>,
    classifier: airlock_engine::sql::Classifier,
    catalogs: catalog::CatalogCache,
    tables: masking::columns::TableCache,
    pool: pool::Pool,
    /// In-process sessions (Airlock's own MCP server), waited for at shutdown like the
    /// listener's own.
    local: tokio_util::task::TaskTracker,
}

/// Opens in-process PostgreSQL connections through the relay (see
/// [`PostgresAdapter::local_connector`]).
#[derive(Clone)]
pub struct LocalConnector {
    state: Arc<AdapterState>,
    shutdown: watch::Receiver<bool>,
}

impl LocalConnector {
    /// A new connection: the client's end of an in-memory stream whose other end is a
    /// session of this listener, recorded with `peer` as the client's address.
    pub fn connect(&self, peer: SocketAddr) -> tokio::io::DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.state.local.spawn(session::handle(
            self.state.clone(),
            session::Origin::Local(Box::new(server)),
            peer,
            self.shutdown.clone(),
        ));
        client
    }
}

/// A bound PostgreSQL listener.
pub struct PostgresAdapter {
    listener: TcpListener,
    state: Arc<AdapterState>,
}

impl PostgresAdapter {
    /// Binds the listener and prepares TLS (generating a certificate into `data_dir` if
    /// none is configured).
    pub async fn bind(
        config: &PostgresListenerConfig,
        data_dir: &Path,
        gateway: Arc<Gateway>,
    ) -> Result<Self, PostgresError> {
        let tls = TlsAcceptor::from(tls::server_config(config, data_dir)?);
        let listener = TcpListener::bind(config.listen).await?;
        Ok(PostgresAdapter {
            listener,
            state: Arc::new(AdapterState {
                gateway,
                listener: config.clone(),
                tls,
                cancels: Arc::default(),
                classifier: airlock_engine::sql::Classifier::new(),
                catalogs: catalog::CatalogCache::default(),
                tables: masking::columns::TableCache::default(),
                pool: pool::Pool::default(),
                local: tokio_util::task::TaskTracker::new(),
            }),
        })
    }

    /// Opens in-process connections to this listener (for Airlock's own MCP server):
    /// each is served exactly like an agent's connection, minus the network and TLS.
    pub fn local_connector(&self, shutdown: watch::Receiver<bool>) -> LocalConnector {
        LocalConnector {
            state: self.state.clone(),
            shutdown,
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` turns true, then tells open sessions to end
    /// and waits for them to record their end.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let sessions_shutdown = shutdown.clone();
        let mut sweep = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let state = self.state.clone();
                        tasks.spawn(session::handle(state, session::Origin::Tcp(tcp), peer, sessions_shutdown.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = sweep.tick() => {
                    let runtime = self.state.gateway.runtime();
                    self.state.pool.sweep(|name| runtime.target(name));
                }
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            }
        }
        drop(self.listener);
        self.state.local.close();
        let local = self.state.local.clone();
        let drain = async {
            while tasks.join_next().await.is_some() {}
            local.wait().await;
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!("some sessions did not end within 10 s of shutdown");
        }
    }
}
