//! TURN over TCP (RFC 8656 §3.1): clients on networks that block UDP reach the relay on the same
//! port over TCP. The `turn` crate speaks only datagrams, so [`TcpMux`] presents every TCP client
//! as one datagram socket: each framed STUN message or ChannelData message read from a stream is
//! one datagram from that stream's peer address, and a datagram sent to that address is written
//! to its stream. Relayed traffic to peers stays UDP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use webrtc_util::Conn;

/// Largest message accepted on a stream (a STUN message or ChannelData payload plus header).
pub const MAX_FRAME: usize = 1500;
/// Frames queued towards one TCP client before further ones are dropped (as UDP would lose them).
const CLIENT_QUEUE: usize = 256;
/// A TCP client silent for this long is disconnected (allocations refresh every few minutes).
const IDLE: Duration = Duration::from_secs(15 * 60);

type Inbound = (Vec<u8>, SocketAddr);

/// The datagram [`TcpMux`] yields from a peer whose stream has closed: empty, which no framed
/// message can be (a frame is at least 4 bytes). The guard turns it into a Refresh with
/// lifetime 0 for that peer's allocation, so an allocation lives no longer than its connection
/// (RFC 8656 §3.1), instead of holding its relay port and its place in the quotas for up to an
/// hour.
pub const CLOSED: [u8; 0] = [];

/// All TCP clients of the relay as one datagram socket.
pub struct TcpMux {
    local: SocketAddr,
    rx: tokio::sync::Mutex<mpsc::Receiver<Inbound>>,
    clients: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
}

impl TcpMux {
    /// Serves `listener` until `stop`, with at most `max_clients` streams at once.
    pub fn start(listener: TcpListener, max_clients: usize, stop: CancellationToken) -> std::io::Result<Arc<Self>> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel::<Inbound>(1024);
        let clients: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>> = Arc::default();
        let mux = Arc::new(TcpMux { local, rx: tokio::sync::Mutex::new(rx), clients: clients.clone() });
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(v) => v,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (out_tx, out_rx) = mpsc::channel(CLIENT_QUEUE);
                {
                    let mut map = clients.lock().unwrap_or_else(|p| p.into_inner());
                    if map.len() >= max_clients {
                        continue; // dropping the stream closes it
                    }
                    map.insert(peer, out_tx);
                }
                let _ = stream.set_nodelay(true);
                let (tx, clients, stop) = (tx.clone(), clients.clone(), stop.clone());
                tokio::spawn(async move {
                    serve_client(stream, peer, tx.clone(), out_rx, stop).await;
                    clients.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
                    // The stream is gone: its allocation goes too (see `CLOSED`).
                    let _ = tx.send((CLOSED.to_vec(), peer)).await;
                });
            }
        });
        Ok(mux)
    }
}

/// Length of the message starting with `head` (4 bytes), including padding on TCP.
fn frame_len(head: [u8; 4]) -> Option<usize> {
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    match head[0] >> 6 {
        0b00 => Some(20 + len),                // STUN: 20-byte header, length excludes it
        0b01 => Some(4 + len.div_ceil(4) * 4), // ChannelData: padded to 4 bytes over TCP
        _ => None,
    }
}

async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    mut outbound: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = async move {
        while let Some(frame) = outbound.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    };
    let reader = async move {
        let mut head = [0u8; 4];
        loop {
            match tokio::time::timeout(IDLE, rd.read_exact(&mut head)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let Some(len) = frame_len(head) else { return };
            if len > MAX_FRAME + 4 {
                return; // not a TURN client, or a hostile one
            }
            let mut frame = vec![0u8; len];
            frame[..4].copy_from_slice(&head);
            if rd.read_exact(&mut frame[4..]).await.is_err() {
                return;
            }
            if head[0] >> 6 == 0b01 {
                // Hand the crate the unpadded message, as it would arrive over UDP.
                let data = u16::from_be_bytes([head[2], head[3]]) as usize;
                frame.truncate(4 + data);
            }
            if inbound.send((frame, peer)).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = writer => {}
        _ = reader => {}
    }
}

#[async_trait]
impl Conn for TcpMux {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other("not supported".into()))
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut rx = self.rx.lock().await;
        loop {
            let (frame, peer) = rx.recv().await.ok_or_else(|| webrtc_util::Error::Other("closed".into()))?;
            if frame.len() <= buf.len() {
                buf[..frame.len()].copy_from_slice(&frame);
                return Ok((frame.len(), peer));
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("not connected".into()))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let tx = self.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&target).cloned();
        if let Some(tx) = tx {
            let mut frame = buf.to_vec();
            if buf.first().is_some_and(|b| b >> 6 == 0b01) {
                frame.resize(buf.len().div_ceil(4) * 4, 0);
            }
            let _ = tx.try_send(frame);
        }
        Ok(buf.len())
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
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

#[cfg(test)]
mod tests {
    use super::frame_len;

    #[test]
    fn frame_lengths() {
        assert_eq!(frame_len([0x00, 0x01, 0x00, 0x08]), Some(28));
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x05]), Some(12));
        assert_eq!(frame_len([0x40, 0x00, 0x00, 0x08]), Some(12));
        assert_eq!(frame_len([0x80, 0x00, 0x00, 0x08]), None);
    }
}
