//! Outbound server-to-server HTTPS: server name resolution (IP literal or name with a port,
//! `.well-known` delegation, else port 8448), TLS trusting the system roots plus the optional
//! `federation_ca` file, and `X-Matrix` request signing.
//!
//! A name is resolved once and only addresses [`PeerPolicy`] allows are connected to (internal
//! ones only with `federation_private_addresses`), so the server never connects where a forged
//! origin, an alias or a `.well-known` delegation points into its own network. What went
//! wrong is kept in the error for the log and the admin's delivery status; what callers of
//! federation (another server, a user joining by alias) are told is generic ([`public`]).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::addrs::PeerPolicy;
use crate::error::{Error, Result};
use crate::keys::{SigningKey, to_canonical};

/// Largest response body read from another server.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Port of a server name without one and without delegation.
const DEFAULT_PORT: u16 = 8448;

/// The HTTPS client for other servers: one TLS connection per request (rustls with the ring
/// provider, HTTP/1.1 through hyper), with connect, handshake and response deadlines.
pub struct FedClient {
    tls: tokio_rustls::TlsConnector,
    policy: PeerPolicy,
    request_timeout: Duration,
}

/// Time to connect and finish the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the whole exchange once connected, unless set (`with_request_timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl FedClient {
    /// A client trusting the system's roots and, if given, the CA certificates in `ca_file`,
    /// connecting only to addresses `policy` allows.
    pub fn new(ca_file: Option<&std::path::Path>, policy: PeerPolicy) -> std::result::Result<FedClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = ca_file {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("federation_ca {}: {e}", path.display()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| format!("federation_ca {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("federation_ca {}: no certificate in it", path.display()));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("federation_ca {}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(FedClient { tls: tokio_rustls::TlsConnector::from(Arc::new(tls)), policy, request_timeout: REQUEST_TIMEOUT })
    }

    /// The same client with another deadline for an exchange once connected
    /// (`limits.federation_request_timeout_secs`).
    pub fn with_request_timeout(mut self, timeout: Duration) -> FedClient {
        self.request_timeout = timeout;
        self
    }

    /// `host:port` to connect to for a server name: an explicit port or IP literal is used as
    /// is; otherwise `https://NAME/.well-known/matrix/server` may delegate; else port 8448.
    pub async fn authority(&self, server: &str) -> Result<String> {
        let name = crate::ids::ServerName::parse(server)?;
        let (host, port) = split_host_port(name.as_str());
        if port.is_some() || host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return Ok(format!("{host}:{}", port.unwrap_or(DEFAULT_PORT)));
        }
        let delegated = async {
            let (status, v) = self
                .exchange(&format!("{host}:443"), host, Method::GET, "/.well-known/matrix/server", None, None)
                .await
                .ok()?;
            if !status.is_success() {
                return None;
            }
            let to = crate::ids::ServerName::parse(v.get("m.server")?.as_str()?).ok()?;
            let (h, p) = split_host_port(to.as_str());
            Some(format!("{h}:{}", p.unwrap_or(DEFAULT_PORT)))
        };
        Ok(match delegated.await {
            Some(to) => to,
            None => format!("{host}:{DEFAULT_PORT}"),
        })
    }

    /// An unsigned GET (key documents).
    pub async fn get(&self, server: &str, path: &str) -> Result<(StatusCode, Value)> {
        let authority = self.authority(server).await?;
        self.exchange(&authority, server, Method::GET, path, None, None).await
    }

    /// A request signed as `origin` with `key`, to `destination`.
    pub async fn signed(
        &self,
        key: &SigningKey,
        origin: &str,
        destination: &str,
        method: Method,
        path: &str,
        content: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let sig = SignedRequest { origin, destination, method: method.as_str(), uri: path, content: content.as_ref() }
            .sign(key)?;
        let auth =
            format!("X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{}\",sig=\"{sig}\"", key.id);
        let authority = self.authority(destination).await?;
        self.exchange(&authority, destination, method, path, content, Some(auth)).await
    }

    /// One HTTPS request on a new connection to `authority`, the certificate checked for the
    /// host of `server`.
    async fn exchange(
        &self,
        authority: &str,
        server: &str,
        method: Method,
        path: &str,
        content: Option<Value>,
        auth: Option<String>,
    ) -> Result<(StatusCode, Value)> {
        let (host, _) = split_host_port(server);
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let sni = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|_| Error::bad(format!("{server} is not a host name")))?;
        let connect = async {
            let tcp = self.connect(authority).await?;
            let _ = tcp.set_nodelay(true);
            self.tls.connect(sni, tcp).await
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| Error::Unavailable(format!("cannot reach {server}: timed out")))?
            .map_err(|e| Error::Unavailable(format!("cannot reach {server}: {e}")))?;
        let work = async {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| Error::Unavailable(format!("cannot reach {server}: {e}")))?;
            tokio::spawn(conn);
            let body = match &content {
                Some(c) => axum::body::Body::from(serde_json::to_vec(c)?),
                None => axum::body::Body::empty(),
            };
            let mut req = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", authority)
                .header("user-agent", concat!("chat/", env!("CARGO_PKG_VERSION")));
            if content.is_some() {
                req = req.header("content-type", "application/json");
            }
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let req = req.body(body).map_err(|e| Error::bad(format!("request: {e}")))?;
            let res = sender.send_request(req).await.map_err(|e| Error::Unavailable(format!("{server}: {e}")))?;
            let status = res.status();
            let bytes = axum::body::to_bytes(axum::body::Body::new(res.into_body()), MAX_RESPONSE)
                .await
                .map_err(|_| Error::bad(format!("{server}: response too large or cut off")))?;
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|_| Error::bad(format!("{server}: response is not JSON")))?
            };
            Ok((status, value))
        };
        tokio::time::timeout(self.request_timeout, work)
            .await
            .map_err(|_| Error::Unavailable(format!("{server}: no answer in time")))?
    }
}

impl FedClient {
    /// A TCP connection to `authority`, resolved once; each address the policy allows is tried
    /// in turn, and none other is ever connected to (no second lookup to rebind).
    async fn connect(&self, authority: &str) -> std::io::Result<tokio::net::TcpStream> {
        use std::io::{Error as IoError, ErrorKind};
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(authority).await?.collect();
        let allowed: Vec<_> = addrs.iter().filter(|a| self.policy.allows(a.ip())).collect();
        if allowed.is_empty() {
            return Err(IoError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{authority} resolves to {} only, which federation_private_addresses does not allow",
                    addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let mut last = None;
        for addr in allowed {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| IoError::new(ErrorKind::NotFound, "no address")))
    }
}

/// What a caller of federation is told when `server` could not be reached or answered nothing
/// usable: the same words whether the port was closed, filtered, spoke no TLS, showed a wrong
/// certificate or the address was refused, so that the answer reveals nothing about the network
/// around this server. The detail goes to the log.
pub fn public(server: &str, e: &Error) -> Error {
    tracing::info!(server, error = %e, "federation request failed");
    Error::Unavailable(format!("cannot reach {server}"))
}

/// `host:port` / `[v6]:port` / `host` -> (host, port).
fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (&s[..h.len() + 2], tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse().ok()),
        _ => (s, None),
    }
}

/// What an `X-Matrix` signature covers, as the Matrix server-server API's request
/// authentication says: the canonical JSON of `method`, `uri`, `origin`, `destination` and, if
/// the request has a body, `content`. No time is signed, so the same request signs the same
/// way every time: replays are kept out by TLS, and repeating a request changes nothing (a
/// transaction is remembered by its id, a join or invite by its event id).
pub struct SignedRequest<'a> {
    /// Sending server.
    pub origin: &'a str,
    /// Receiving server.
    pub destination: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path and query, as sent.
    pub uri: &'a str,
    /// The JSON body, if any.
    pub content: Option<&'a Value>,
}

impl SignedRequest<'_> {
    /// The canonical JSON text that is signed.
    pub fn canonical(&self) -> Result<String> {
        let mut o = json!({
            "method": self.method, "uri": self.uri, "origin": self.origin, "destination": self.destination,
        });
        if let Some(c) = self.content {
            o["content"] = c.clone();
        }
        ruma_signatures::to_canonical_json_string_for_signing(&to_canonical(o)?)
            .map_err(|e| Error::Internal(format!("canonical JSON: {e}")))
    }

    /// Our signature of it (unpadded base64).
    pub fn sign(&self, key: &SigningKey) -> Result<String> {
        Ok(key.sign_bytes(self.canonical()?.as_bytes()))
    }
}
