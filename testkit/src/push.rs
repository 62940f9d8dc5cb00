//! A Web Push service for tests: an HTTP server on loopback that plays a browser vendor's push
//! service (RFC 8030). Devices are made here as a browser makes them (a P-256 key pair and a
//! 16-byte auth secret); each push that arrives has its VAPID JWT checked (RFC 8292: ES256
//! signature by the key in `k`, audience, expiry, contact) and its body decrypted with the
//! device's private key (RFC 8291, aes128gcm). What the service answers can be changed while
//! it runs, to play a service that is down (503) or a subscription that is gone (410).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A push that arrived and was decrypted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The device it was for.
    pub device: String,
    /// The decrypted payload (JSON).
    pub payload: Value,
    /// Its `TTL` header.
    pub ttl: u64,
    /// Its `Urgency` header.
    pub urgency: String,
    /// The VAPID public key (`k`) it was signed with.
    pub vapid_key: String,
}

/// A device as a browser's `pushManager.subscribe` makes it.
pub struct Device {
    /// Its name in the service.
    pub name: String,
    /// The endpoint the server posts to.
    pub endpoint: String,
    /// The public key, uncompressed, base64url.
    pub p256dh: String,
    /// The auth secret, base64url.
    pub auth: String,
}

impl Device {
    /// The body of `POST /api/v1/push/subscriptions` (`PushSubscription.toJSON()` and a label).
    pub fn subscription(&self, label: &str) -> Value {
        json!({"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}, "label": label})
    }
}

struct Shared {
    origin: String,
    status: AtomicU16,
    refused: AtomicU64,
    received: Mutex<Vec<Received>>,
    faults: Mutex<Vec<String>>,
    devices: Mutex<HashMap<String, (p256::SecretKey, [u8; 16])>>,
}

/// The running push service; stops when dropped.
pub struct PushService {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl PushService {
    /// Starts it on a free loopback port.
    pub async fn start() -> PushService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind push service");
        let addr = listener.local_addr().expect("push service address");
        let shared = Arc::new(Shared {
            origin: format!("http://{addr}"),
            status: AtomicU16::new(201),
            refused: AtomicU64::new(0),
            received: Mutex::default(),
            faults: Mutex::default(),
            devices: Mutex::default(),
        });
        let app = Router::new().route("/push/{device}", post(receive)).with_state(shared.clone());
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await;
        });
        PushService { addr, shared, stop }
    }

    /// A new device of this service.
    pub fn device(&self, name: &str) -> Device {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let public = secret.public_key().as_affine().to_encoded_point(false);
        let mut auth = [0u8; 16];
        getrandom(&mut auth);
        let device = Device {
            name: name.to_string(),
            endpoint: format!("{}/push/{name}", self.shared.origin),
            p256dh: b64url(public.as_bytes()),
            auth: b64url(&auth),
        };
        self.shared.devices.lock().expect("devices").insert(name.to_string(), (secret, auth));
        device
    }

    /// What the service answers from now on (201: takes pushes).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Pushes answered with another status than 201 so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Every push taken so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("received").clone()
    }

    /// What was wrong with pushes that arrived (bad VAPID, undecryptable): empty if nothing.
    pub fn faults(&self) -> Vec<String> {
        self.shared.faults.lock().expect("faults").clone()
    }

    /// Polls (up to 20 s) until `ok` holds for the pushes taken; returns them.
    pub async fn until(&self, what: &str, ok: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if ok(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "push service: {what} did not happen; received {:?}; faults {:?}",
                got.iter().map(|r| &r.payload).collect::<Vec<_>>(),
                self.faults()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn getrandom(buf: &mut [u8]) {
    use p256::elliptic_curve::rand_core::RngCore;
    p256::elliptic_curve::rand_core::OsRng.fill_bytes(buf);
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(device): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = shared.status.load(Ordering::SeqCst);
    if status != 201 {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    match check(&shared, &device, &headers, &body) {
        Ok(r) => {
            shared.received.lock().expect("received").push(r);
            StatusCode::CREATED
        }
        Err(e) => {
            shared.faults.lock().expect("faults").push(e);
            StatusCode::BAD_REQUEST
        }
    }
}

/// Checks a push as a push service and the browser would: VAPID, headers, encryption.
fn check(shared: &Shared, device: &str, headers: &HeaderMap, body: &[u8]) -> Result<Received, String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let auth = header("authorization").ok_or("no Authorization header")?;
    let rest = auth.strip_prefix("vapid ").ok_or("Authorization is not vapid")?;
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v.to_string());
        }
    }
    let (t, k) = (t.ok_or("no t=")?, k.ok_or("no k=")?);
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&k).map_err(|e| format!("k: {e}"))?;
    if key.len() != 65 || key[0] != 4 {
        return Err("k is not an uncompressed P-256 key".into());
    }
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(&b64url(&key[1..33]), &b64url(&key[33..65]))
        .map_err(|e| format!("k: {e}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[shared.origin.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(&t, &decoding, &validation).map_err(|e| format!("VAPID JWT: {e}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let exp = claims.claims["exp"].as_u64().ok_or("exp is not a number")?;
    if exp > now + 24 * 3600 {
        return Err("the JWT is valid for more than 24 hours".into());
    }
    let sub = claims.claims["sub"].as_str().unwrap_or_default();
    if !(sub.starts_with("mailto:") || sub.starts_with("https://")) {
        return Err(format!("sub {sub:?} is not a mailto: or https: URL"));
    }
    if header("content-encoding").as_deref() != Some("aes128gcm") {
        return Err("Content-Encoding is not aes128gcm".into());
    }
    let ttl: u64 = header("ttl").and_then(|v| v.parse().ok()).ok_or("no TTL")?;
    let (secret, auth) = shared.devices.lock().expect("devices").get(device).cloned().ok_or("no such device")?;
    let auth = web_push_native::Auth::clone_from_slice(&auth);
    let plain = web_push_native::decrypt(body.to_vec(), &secret, &auth).map_err(|e| format!("decrypt: {e}"))?;
    let payload: Value = serde_json::from_slice(&plain).map_err(|e| format!("payload is not JSON: {e}"))?;
    Ok(Received {
        device: device.to_string(),
        payload,
        ttl,
        urgency: header("urgency").unwrap_or_default(),
        vapid_key: k,
    })
}
