//! One datagram from a TURN client through our `calls::guard::Guard`, the relay's front door,
//! exactly as on the UDP listener: the guard wraps a fake socket that yields the input once, so
//! `Guard::recv_from` runs its real checks (STUN decoding, credentials with MESSAGE-INTEGRITY, the
//! peer policy for CreatePermission/ChannelBind/Send, allocation quotas, `400` for damaged
//! requests). The same bytes then go out through `Guard::send_to`, which watches the crate's
//! answers. No socket is opened; the `turn` crate behind the guard is not run.
//!
//! Checks: a packet passed on is unchanged; the guard's own answers are STUN error responses
//! under the request's transaction id; a packet that is not well-formed STUN is never answered
//! with more bytes than it had (no amplification towards spoofed sources).

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chat::calls::guard::{Guard, PeerPolicy, Quotas};
use chat::calls::turn::Credentials;
use libfuzzer_sys::fuzz_target;
use stun::message::{CLASS_ERROR_RESPONSE, Message};
use tokio_util::sync::CancellationToken;
use webrtc_util::Conn;

/// The TURN REST secret and realm the seeds in `seeds/stun` are signed for.
const SECRET: &[u8] = b"chat-fuzz-turn-secret";
const REALM: &str = "chat.test";

/// A socket that yields one datagram, then reports the relay stopped; it keeps what is sent.
struct OneDatagram {
    packet: Mutex<Option<Vec<u8>>>,
    sent: Mutex<Vec<Vec<u8>>>,
    stop: CancellationToken,
}

#[async_trait]
impl Conn for OneDatagram {
    async fn connect(&self, _: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        match self.packet.lock().expect("lock").take() {
            Some(p) => {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                Ok((n, client()))
            }
            None => {
                self.stop.cancel();
                Err(webrtc_util::Error::Other("done".into()))
            }
        }
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(buf.len())
    }
    async fn send_to(&self, buf: &[u8], _: SocketAddr) -> webrtc_util::Result<usize> {
        self.sent.lock().expect("lock").push(buf.to_vec());
        Ok(buf.len())
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(SocketAddr::from(([203, 0, 113, 1], 3478)))
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

fn client() -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 7], 50000))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime"))
}

fn well_formed_stun(data: &[u8]) -> bool {
    let mut m = Message { raw: data.to_vec(), ..Default::default() };
    data.len() >= 20 && data[0] >> 6 == 0 && m.decode().is_ok()
}

fuzz_target!(|data: &[u8]| {
    // The UDP listener reads into a buffer of this size.
    if data.len() > 1500 {
        return;
    }
    let stop = CancellationToken::new();
    let socket =
        Arc::new(OneDatagram { packet: Mutex::new(Some(data.to_vec())), sent: Mutex::default(), stop: stop.clone() });
    let creds = Arc::new(Credentials::new(SECRET.to_vec(), REALM.into(), Duration::from_secs(3600)));
    let guard = Guard::new(socket.clone(), creds, PeerPolicy::new(false), Quotas::new(1, 2), stop);

    let mut buf = vec![0u8; 1500];
    let passed = runtime().block_on(guard.recv_from(&mut buf));
    if let Ok((n, src)) = passed {
        assert_eq!((&buf[..n], src), (data, client()), "the guard changed a packet it passed on");
    }
    for reply in socket.sent.lock().expect("lock").iter() {
        assert!(passed.is_err(), "a packet was both answered and passed on");
        let mut m = Message { raw: reply.clone(), ..Default::default() };
        m.decode().expect("the guard's answer is STUN");
        assert_eq!(m.typ.class, CLASS_ERROR_RESPONSE);
        assert_eq!(&m.transaction_id.0[..], &data[8..20], "answer under another transaction id");
        if !well_formed_stun(data) {
            assert!(reply.len() <= data.len(), "{} bytes answered to {} malformed bytes", reply.len(), data.len());
        }
    }

    // The same bytes as if the crate answered them: the guard reads its answers too.
    let _ = runtime().block_on(guard.send_to(data, client()));
});
