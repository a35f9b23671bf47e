//! Native TLS for both ports (`TLS_CERT_PATH`, `TLS_KEY_PATH`), so a deployment without a
//! reverse proxy serves `https://` and `wss://`: loading the certificate chain and key into
//! a rustls configuration, and the HTTPS accept loop.
//!
//! warp 0.4 has no TLS of its own (its acceptor trait is sealed), so the HTTPS port runs
//! warp's [`service`](warp::service) on hyper-util over tokio-rustls, as warp's own loop
//! does over plain TCP, with the same graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use warp::Filter;

/// How long a client may take to finish the TLS handshake on the HTTP port.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate chain or key cannot be used, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain (`TLS_CERT_PATH`).
    #[error("{0}")]
    Cert(String),
    /// The private key (`TLS_KEY_PATH`).
    #[error("{0}")]
    Key(String),
}

/// A loaded certificate chain and key, ready to accept connections.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("TlsSettings(..)")
    }
}

impl TlsSettings {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert_path: &str, key_path: &str) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_file_iter(cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Cert(format!("cannot read a PEM certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(TlsError::Cert("holds no PEM certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| TlsError::Key(format!("cannot read a PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Cert(format!("TLS setup failed: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Key(format!("does not match the certificate: {e}")))?;
        // HTTP/1.1 on both ports: the WebSocket upgrade needs it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// An acceptor for either port.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

/// Serves `filter` over HTTPS on `listener` until `shutdown` resolves, then lets open
/// requests finish (at most as long as the caller waits for this future).
pub async fn serve_https<F, R>(
    filter: F,
    listener: TcpListener,
    tls: TlsAcceptor,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (R,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    R: warp::Reply,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let service = hyper_util::service::TowerToHyperService::new(warp::service(filter.clone()));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, %peer, "HTTPS connection error");
            }
        });
    }
    graceful.shutdown().await;
}
