//! Server-side TLS for every podnet listener: the Collector's `tls` block (`cert_file`,
//! `key_file`, `client_ca_file` for mTLS, `min_version`) read into a rustls config, and the
//! accept loops that serve an axum router or hand TLS streams to tonic.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// A listener's `tls` block, as in the Collector's `configtls.ServerConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerSetting {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients must present a certificate signed by this CA (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// "1.2" (default) or "1.3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
}

/// Whether and how clients show certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Verified when given (Prometheus' `VerifyClientCertIfGiven`).
    IfGiven,
    Required,
}

/// The parts of a server config; a failure names the key it comes from.
pub struct ServerFiles<'a> {
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
    pub client_ca_file: Option<&'a Path>,
    pub client_auth: ClientAuth,
    pub min_tls13: bool,
}

impl TlsServerSetting {
    /// Reads the files now, so a bad `tls` block fails the (re)load with the key named.
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let min_tls13 = match self.min_version.as_deref() {
            None | Some("1.2") => false,
            Some("1.3") => true,
            Some(other) => return Err(format!("tls::min_version: \"{other}\" is not supported (\"1.2\" or \"1.3\")")),
        };
        let files = ServerFiles {
            cert_file: &self.cert_file,
            key_file: &self.key_file,
            client_ca_file: self.client_ca_file.as_deref(),
            client_auth: if self.client_ca_file.is_some() { ClientAuth::Required } else { ClientAuth::None },
            min_tls13,
        };
        server_config(&files).map(Arc::new).map_err(|(key, e)| format!("tls::{key}: {e}"))
    }
}

/// A rustls server config (HTTP/2 and HTTP/1.1 offered by ALPN).
pub fn server_config(f: &ServerFiles<'_>) -> Result<rustls::ServerConfig, (&'static str, String)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f.cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ("cert_file", format!("{}: {e}", f.cert_file.display())))?;
    if certs.is_empty() {
        return Err(("cert_file", format!("{}: no PEM certificate", f.cert_file.display())));
    }
    let key = PrivateKeyDer::from_pem_file(f.key_file).map_err(|e| ("key_file", format!("{}: {e}", f.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] =
        if f.min_tls13 { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS13, &rustls::version::TLS12] };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ("min_version", e.to_string()))?;
    let builder = match f.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        required => {
            let ca = f.client_ca_file.ok_or(("client_ca_file", "needed to verify client certificates".to_string()))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| ("client_ca_file", format!("{}: {e}", ca.display())))? {
                let c = c.map_err(|e| ("client_ca_file", format!("{}: {e}", ca.display())))?;
                roots.add(c).map_err(|e| ("client_ca_file", format!("{}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if required == ClientAuth::Required { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| ("client_ca_file", e.to_string()))?)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| ("key_file", format!("does not match cert_file: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who called, and at which of our addresses: every request served by [`serve_http`] carries
/// it as `axum::extract::ConnectInfo<Caller>`.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub peer: std::net::SocketAddr,
    pub local: Option<std::net::SocketAddr>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for Caller {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Caller {
        Caller { peer: *stream.remote_addr(), local: stream.io().local_addr().ok() }
    }
}

impl Caller {
    /// On this node: loopback, or from the address it called (the kernel routes a
    /// connection from one of our own addresses locally; no other host has it).
    pub fn is_local(&self) -> bool {
        self.peer.ip().is_loopback() || self.local.is_some_and(|l| l.ip() == self.peer.ip())
    }
}

/// Serves `app` on `listener`, over TLS when `tls` is set, until `shutdown`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app.into_make_service_with_connect_info::<Caller>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // A connection the kernel could not hand over (e.g. out of descriptors).
                Err(_) => continue,
            },
        };
        let caller = Caller { peer, local: tcp.local_addr().ok() };
        let (acceptor, app) = (acceptor.clone(), app.clone().layer(axum::Extension(axum::extract::ConnectInfo(caller))));
        tokio::spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else { return };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Accepted connections after their TLS handshake, for a server that takes a stream of
/// them (tonic's `serve_with_incoming`). Failed handshakes are dropped, not yielded.
pub fn tls_incoming(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> tokio::sync::mpsc::Receiver<std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => continue,
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    rx
}
