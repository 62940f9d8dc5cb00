//! Posting encrypted pushes to browser vendors' push services (RFC 8030). Endpoints are URLs
//! users give us, so they are treated like any address the server reaches for someone else:
//! HTTPS only, and never an internal address unless `push_private_endpoints` allows it (a LAN
//! or a test); the address is resolved once and only an allowed one is connected to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, Uri};
use hyper::client::conn::http1::SendRequest;

use crate::addrs::PeerPolicy;

/// Time to connect and finish the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the push service to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Most bytes of an answer read (the rest is dropped with the connection).
const MAX_ANSWER: usize = 64 * 1024;
/// Idle connections kept per push service.
const IDLE_PER_ORIGIN: usize = 16;
/// Push services with idle connections kept.
const MAX_ORIGINS: usize = 64;
/// Longest endpoint URL accepted.
pub const MAX_ENDPOINT_CHARS: usize = 2048;

/// What became of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The push service took it (2xx).
    Delivered,
    /// The subscription is gone (404, 410) or does not take our key (401, 403): remove it.
    Gone,
    /// The push service refused this push (another 4xx): dropped.
    Refused(String),
    /// Try again later: the service could not be reached, was busy (429) or failed (5xx).
    Retry(String),
}

/// One push to send.
pub struct Push {
    /// Where to (the subscription's endpoint).
    pub endpoint: String,
    /// `vapid t=…, k=…`.
    pub authorization: String,
    /// Seconds the push service should keep it for an offline device.
    pub ttl_secs: u64,
    /// `high` for what a person is waiting for (calls, direct chats, mentions), else `normal`.
    pub urgency: &'static str,
    /// The encrypted body (aes128gcm).
    pub body: Vec<u8>,
}

/// Sends pushes, keeping connections to push services open between them.
pub struct PushClient {
    tls: tokio_rustls::TlsConnector,
    policy: PeerPolicy,
    idle: Mutex<HashMap<String, Vec<SendRequest<Body>>>>,
}

/// Why an endpoint is not acceptable, if it is not: an absolute `https` URL with a host
/// (`http` too when `private` allows internal addresses).
pub fn check_endpoint(endpoint: &str, private: bool) -> Result<Uri, String> {
    if endpoint.len() > MAX_ENDPOINT_CHARS {
        return Err(format!("the endpoint is longer than {MAX_ENDPOINT_CHARS} characters"));
    }
    let uri: Uri = endpoint.parse().map_err(|_| "the endpoint is not a URL".to_string())?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if private => {}
        _ => return Err("the endpoint must be an https URL".into()),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => {}
        _ => return Err("the endpoint has no host".into()),
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("the endpoint may not carry credentials".into());
    }
    Ok(uri)
}

/// The origin of an endpoint (`https://host[:port]`), the audience of its VAPID JWT.
pub fn origin(uri: &Uri) -> String {
    format!("{}://{}", uri.scheme_str().unwrap_or("https"), uri.authority().map(|a| a.as_str()).unwrap_or_default())
}

impl PushClient {
    /// A client trusting the system's roots, reaching only addresses `policy` allows.
    pub fn new(policy: PeerPolicy) -> Result<PushClient, String> {
        Ok(PushClient { tls: crate::tls::client_connector(Vec::new(), false)?, policy, idle: Mutex::default() })
    }

    /// Sends one push and says what became of it.
    pub async fn send(&self, push: Push) -> Outcome {
        let uri = match check_endpoint(&push.endpoint, self.policy.allow_private) {
            Ok(u) => u,
            Err(e) => return Outcome::Refused(e),
        };
        let key = origin(&uri);
        let request = || {
            Request::post(uri.clone())
                .header("host", uri.authority().map(|a| a.as_str()).unwrap_or_default())
                .header("ttl", push.ttl_secs.to_string())
                .header("urgency", push.urgency)
                .header("content-encoding", "aes128gcm")
                .header("content-type", "application/octet-stream")
                .header("authorization", push.authorization.as_str())
                .body(Body::from(push.body.clone()))
        };
        // An idle connection may have been closed by the service meanwhile: then a new one.
        if let Some(mut sender) = self.take_idle(&key)
            && sender.ready().await.is_ok()
        {
            let Ok(req) = request() else { return Outcome::Refused("bad request".into()) };
            match tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req)).await {
                Ok(Ok(res)) => return self.answer(key, sender, res).await,
                Ok(Err(e)) if e.is_canceled() || e.is_closed() || e.is_incomplete_message() => {}
                Ok(Err(e)) => return Outcome::Retry(e.to_string()),
                Err(_) => return Outcome::Retry("no answer in time".into()),
            }
        }
        let mut sender = match self.open(&uri).await {
            Ok(s) => s,
            Err(e) => return Outcome::Retry(e),
        };
        let Ok(req) = request() else { return Outcome::Refused("bad request".into()) };
        match tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req)).await {
            Ok(Ok(res)) => self.answer(key, sender, res).await,
            Ok(Err(e)) => Outcome::Retry(e.to_string()),
            Err(_) => Outcome::Retry("no answer in time".into()),
        }
    }

    async fn answer(
        &self,
        key: String,
        sender: SendRequest<Body>,
        res: axum::http::Response<hyper::body::Incoming>,
    ) -> Outcome {
        let status = res.status();
        let read = axum::body::to_bytes(Body::new(res.into_body()), MAX_ANSWER);
        let whole = matches!(tokio::time::timeout(REQUEST_TIMEOUT, read).await, Ok(Ok(_)));
        if whole {
            self.put_idle(key, sender);
        }
        match status {
            s if s.is_success() => Outcome::Delivered,
            StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Outcome::Gone
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Outcome::Retry(status.to_string()),
            s if s.is_server_error() => Outcome::Retry(s.to_string()),
            s => Outcome::Refused(s.to_string()),
        }
    }

    /// A new connection to the endpoint's host, ready for a request.
    async fn open(&self, uri: &Uri) -> Result<SendRequest<Body>, String> {
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let tls = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let connect = async {
            let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("{host}: {e}"))?
                .filter(|a| self.policy.allows(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} has no address the server may reach (internal addresses need push_private_endpoints)"
                ));
            }
            let mut last = String::new();
            for addr in addrs {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(tcp) => {
                        let _ = tcp.set_nodelay(true);
                        if !tls {
                            return handshake(tcp).await;
                        }
                        let name = rustls_pki_types::ServerName::try_from(host.clone())
                            .map_err(|_| format!("{host} is not a host name"))?;
                        let stream = self.tls.connect(name, tcp).await.map_err(|e| format!("{host}: {e}"))?;
                        return handshake(stream).await;
                    }
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
            Err(last)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| format!("cannot reach {host}: timed out"))?
    }

    fn take_idle(&self, key: &str) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        let found = std::iter::from_fn(|| list.pop()).find(|s| !s.is_closed());
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    fn put_idle(&self, key: String, sender: SendRequest<Body>) {
        let Ok(mut idle) = self.idle.lock() else { return };
        if !idle.contains_key(&key) && idle.len() >= MAX_ORIGINS {
            idle.retain(|_, l| {
                l.retain(|s| !s.is_closed());
                !l.is_empty()
            });
            if idle.len() >= MAX_ORIGINS {
                return;
            }
        }
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_ORIGIN {
            list.push(sender);
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Body>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert!(check_endpoint("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(check_endpoint("http://127.0.0.1:9/x", false).is_err());
        assert!(check_endpoint("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_endpoint("ftp://x/y", true).is_err());
        assert!(check_endpoint("https://user:pw@x/y", false).is_err());
        assert!(check_endpoint("/relative", false).is_err());
        assert!(check_endpoint(&format!("https://x/{}", "a".repeat(3000)), false).is_err());
        let u = check_endpoint("https://push.example:8443/p/1?x", false).unwrap();
        assert_eq!(origin(&u), "https://push.example:8443");
    }
}
