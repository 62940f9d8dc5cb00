//! HTTPS: rustls (ring) in front of the same axum app, with certificates that reload without
//! dropping connections, or a self-signed certificate kept in the data directory.
//!
//! - [`Certs`] resolves the certificate for every new handshake from a slot that
//!   [`Certs::reload_if_changed`] swaps when the files change (checked every 2 s) or on SIGHUP.
//!   Connections already open keep the session they have; a certificate that fails to load is
//!   logged and the old one stays.
//! - [`TlsListener`] accepts TCP, runs each handshake in its own task (bounded in number and in
//!   time, so a slow or silent client cannot hold up others), and hands finished streams to
//!   axum.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait.
pub const MAX_HANDSHAKES: usize = 256;
/// TLS handshakes in progress from one client address (an IPv6 /64) at once. More connections
/// from it wait for one of its slots (never for a slot another address needs), up to
/// [`MAX_WAITING_PER_IP`]; beyond that they are closed at once.
pub const MAX_HANDSHAKES_PER_IP: usize = 8;
/// Connections of one address waiting for a handshake slot.
pub const MAX_WAITING_PER_IP: usize = 64;
/// How long a new connection may stay silent before its first byte (the ClientHello).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often certificate files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Loads a PEM certificate chain and private key into a signing-ready pair.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls_cert: cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert: {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tls_cert: {} holds no PEM certificate", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key: {}: {e}", key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("tls_key: {}: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signer);
    pair.keys_match().map_err(|e| format!("tls_key: {} does not belong to {}: {e}", key.display(), cert.display()))?;
    Ok(pair)
}

fn mtimes(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

/// The server's current certificate, swapped in place on reload.
#[derive(Debug)]
pub struct Certs {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
    stamp: Mutex<Option<(SystemTime, SystemTime)>>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl Certs {
    /// Loads the pair at `cert` and `key`.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, String> {
        let pair = load_pair(&cert, &key)?;
        let stamp = mtimes(&cert, &key);
        Ok(Arc::new(Certs {
            current: RwLock::new(Arc::new(pair)),
            cert,
            key,
            stamp: Mutex::new(stamp),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// Certificates reloaded since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reload attempts that failed (the old certificate stayed), since start.
    pub fn reload_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Reloads when either file changed since the last load (or `force`). Returns whether a new
    /// certificate is in use; a pair that fails to load leaves the old one in place.
    pub fn reload_if_changed(&self, force: bool) -> Result<bool, String> {
        let now = mtimes(&self.cert, &self.key);
        {
            let stamp = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if !force && (now.is_none() || *stamp == now) {
                return Ok(false);
            }
        }
        let pair = load_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Ok(true)
    }

    /// Watches the files (and SIGHUP) until `stop`, as one of `tasks`.
    pub fn watch(self: Arc<Self>, tasks: &TaskTracker, stop: CancellationToken) {
        tasks.spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            loop {
                let force = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => false,
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                match self.reload_if_changed(force) {
                    Ok(true) => {
                        self.reloads.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "TLS certificate not reloaded; keeping the old one")
                    }
                }
            }
        });
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// A rustls server config resolving through `certs`, offering HTTP/2 and HTTP/1.1 (ALPN; a
/// WebSocket comes over HTTP/1.1, which browsers use for it when the server does not offer
/// WebSockets over HTTP/2).
pub fn acceptor(certs: Arc<Certs>) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client connector for HTTPS to others' servers: the system's roots and `extra` CA
/// certificates trusted, ring's crypto. It offers HTTP/1.1, and HTTP/2 first with `h2` (the
/// caller then speaks what [`is_h2`] says was chosen).
pub fn client_connector(extra: Vec<CertificateDer<'static>>, h2: bool) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for c in extra {
        roots.add(c).map_err(|e| format!("CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = if h2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
}

/// Whether a client connection's TLS handshake chose HTTP/2 (ALPN `h2`).
pub fn is_h2(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// What a served connection speaks: HTTP/2 when its TLS handshake chose it (ALPN `h2`), else
/// HTTP/1.1.
pub trait Negotiated {
    /// HTTP/2 was chosen.
    fn is_h2(&self) -> bool {
        false
    }
}

impl Negotiated for TcpStream {}

impl Negotiated for TlsStream<TcpStream> {
    fn is_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}

/// Where a self-signed certificate is kept in the data directory.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("tls").join("self-signed.crt"), data_dir.join("tls").join("self-signed.key"))
}

/// Creates (once) a self-signed certificate for `names` in the data directory and returns its
/// paths. An existing one is reused, so browsers that accepted it keep accepting it.
pub fn ensure_self_signed(data_dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = self_signed_paths(data_dir);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let dir = cert.parent().unwrap_or(data_dir);
    crate::files::private_dir(dir)?;
    let made =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| format!("self-signed certificate: {e}"))?;
    crate::files::write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem()).map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    tracing::info!(cert = %cert.display(), names = ?names, "created a self-signed TLS certificate");
    Ok((cert, key))
}

/// The names a self-signed certificate should cover: localhost, the server name's host, the
/// listen address and, for a wildcard listen address, the machine's name.
pub fn self_signed_names(server_host: &str, listen: IpAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let mut add = |n: String| {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    };
    add(server_host.trim_start_matches('[').trim_end_matches(']').to_string());
    if listen.is_unspecified() {
        if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
            add(h.trim().to_string());
        }
    } else {
        add(listen.to_string());
    }
    names
}

/// TLS connections ready for axum.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` until `stop`, running handshakes concurrently: at most
    /// [`MAX_HANDSHAKES`] in all and [`MAX_HANDSHAKES_PER_IP`] per client address; more from
    /// one address wait for that address's slots ([`MAX_WAITING_PER_IP`] at most, then they are
    /// closed at once). A connection must send its first byte within [`FIRST_BYTE_TIMEOUT`]
    /// once it has its slots and finish within [`HANDSHAKE_TIMEOUT`].
    pub fn start(tcp: TcpListener, acceptor: TlsAcceptor, stop: CancellationToken) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let per_ip = crate::addrs::PerClient::new(|| Arc::new(Semaphore::new(MAX_HANDSHAKES_PER_IP)));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tcp.accept() => match r {
                        Ok(v) => v,
                        Err(_) => {
                            // Out of file descriptors, most likely: wait instead of spinning.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let Some(claim) = per_ip.claim(peer.ip(), MAX_HANDSHAKES_PER_IP + MAX_WAITING_PER_IP) else {
                    tracing::debug!(%peer, "TLS connection refused: too many from this address");
                    continue; // dropping the stream closes it
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx, slots) = (acceptor.clone(), tx.clone(), slots.clone());
                tokio::spawn(async move {
                    // This address's slot first, then one of all: a crowd from one address waits
                    // on its own slots and never holds those of others.
                    let Ok(Ok(ip_permit)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, claim.value.clone().acquire_owned()).await
                    else {
                        return;
                    };
                    let Ok(Ok(permit)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, slots.acquire_owned()).await else {
                        return;
                    };
                    let mut first = [0u8; 1];
                    if !matches!(tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await, Ok(Ok(1))) {
                        tracing::debug!(%peer, "TLS connection silent or closed before its ClientHello");
                        return;
                    }
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop((permit, ip_permit, claim));
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop stopped (shutdown): never yield another connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
