//! The media server's end of a WebRTC connection (webrtc-rs): the codecs it accepts (VP8 and
//! Opus, so every forwarded packet is one a browser decodes), the interceptors (NACK both ways,
//! RTCP reports, transport-wide congestion control with a bandwidth estimate on the connections
//! it sends on), the UDP ports it binds, and the events it reports back.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::interceptor::{
    Attribute, BandwidthEstimator, CongestionControlBuilder, EstimatorStats, Gcc, Interceptor, Packet, PacketReport,
    Slot, StreamInfo, TaggedPacket, TwccReceiverBuilder, TwccSenderBuilder,
};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::watch;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    Registry,
};

use crate::error::{Error, Result};

/// Payload type of VP8 on every connection the server offers.
pub const VP8_PT: u8 = 96;
/// Payload type of Opus on every connection the server offers.
pub const OPUS_PT: u8 = 111;
/// The audio level header extension (RFC 6464).
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The video clock rate.
pub const VIDEO_CLOCK: u32 = 90_000;

fn codecs() -> Result<MediaEngine> {
    let mut m = MediaEngine::default();
    let fb = |typ: &str, parameter: &str| RTCPFeedback { typ: typ.into(), parameter: parameter.into() };
    let vp8 = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: VIDEO_CLOCK,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![fb("ccm", "fir"), fb("nack", ""), fb("nack", "pli")],
        },
        payload_type: VP8_PT,
    };
    let opus = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: OPUS_PT,
    };
    m.register_codec(vp8, RtpCodecKind::Video).map_err(media_error)?;
    m.register_codec(opus, RtpCodecKind::Audio).map_err(media_error)?;
    m.register_header_extension(
        RTCRtpHeaderExtensionCapability { uri: AUDIO_LEVEL_URI.into() },
        RtpCodecKind::Audio,
        None,
    )
    .map_err(media_error)?;
    Ok(m)
}

/// A WebRTC error as ours (its text is for the log, not the client).
pub fn media_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("media: {e}"))
}

/// Which way a connection carries media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The participant sends its camera, microphone and screen to the server.
    Publish,
    /// The server sends the others' streams to the participant.
    Subscribe,
}

/// UDP ports the media server may bind, handed out one per connection.
pub struct Ports {
    range: std::ops::RangeInclusive<u16>,
    used: Mutex<BTreeSet<u16>>,
}

impl Ports {
    /// Ports `range` (`0..=0`: any free port the system picks).
    pub fn new(range: std::ops::RangeInclusive<u16>) -> Ports {
        Ports { range, used: Mutex::new(BTreeSet::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u16>> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A port not handed out now, checked free by binding it once; `None` when the range is
    /// used up.
    pub fn take(&self, ip: IpAddr) -> Option<u16> {
        if *self.range.start() == 0 {
            return Some(0);
        }
        let mut used = self.lock();
        let free = self
            .range
            .clone()
            .find(|p| !used.contains(p) && std::net::UdpSocket::bind(SocketAddr::new(ip, *p)).is_ok())?;
        used.insert(free);
        Some(free)
    }

    /// The range's first and last port (`(0, 0)`: any).
    pub fn range(&self) -> (u16, u16) {
        (*self.range.start(), *self.range.end())
    }

    /// Hands a port back.
    pub fn give_back(&self, port: u16) {
        self.lock().remove(&port);
    }

    /// Ports handed out now.
    pub fn in_use(&self) -> usize {
        self.lock().len()
    }
}

/// What a connection reports to the session that owns it.
#[async_trait::async_trait]
pub trait Events: Send + Sync + 'static {
    /// A published track arrived (publish connections only).
    async fn track(&self, track: Arc<dyn TrackRemote>);
    /// The connection failed or closed.
    async fn gone(&self);
}

struct Handler {
    events: Arc<dyn Events>,
    gathered: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) {
            self.events.gone().await;
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.events.track(track).await;
    }
}

/// One WebRTC connection of the media server.
pub struct Peer {
    /// The connection.
    pub pc: Arc<dyn PeerConnection>,
    /// The bandwidth estimate towards the participant, bits per second (subscribe
    /// connections; 0 before the first estimate).
    pub estimate: Arc<AtomicU64>,
    gathered: watch::Receiver<bool>,
    port: u16,
}

/// Where and how connections are made.
pub struct Network {
    /// The address the server's media sockets bind.
    pub ip: IpAddr,
    /// The address browsers reach them at, when it differs (behind NAT).
    pub public_ip: Option<IpAddr>,
    /// The ports.
    pub ports: Ports,
    /// Most bits per second the server sends one participant.
    pub max_receive_bps: u64,
}

impl Peer {
    /// A new connection in `role`, bound to a port of the range.
    pub async fn open(net: &Network, role: Role, events: Arc<dyn Events>) -> Result<Peer> {
        let estimate = Arc::new(AtomicU64::new(0));
        let mut settings = SettingEngineBuilder::new().with_include_loopback_candidate(net.ip.is_loopback());
        if let Some(public) = net.public_ip {
            settings = settings.with_nat_1to1_ips(
                vec![public.to_string()],
                rtc::peer_connection::transport::RTCIceCandidateType::Host,
            );
        }
        let (gathered_tx, gathered) = watch::channel(false);
        let handler = Arc::new(Handler { events, gathered: gathered_tx });
        let settings = settings.build();
        // Another program may take a port between the check and the bind: try a few.
        let mut last = None;
        for _ in 0..3 {
            let (media, registry) = chain(net, role, &estimate)?;
            let port = net.ports.take(net.ip).ok_or_else(|| Error::Unavailable("no media port is free".into()))?;
            let built = PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media)
                .with_setting_engine(settings.clone())
                .with_interceptor_registry(registry)
                .with_handler(handler.clone())
                .with_udp_addrs(vec![SocketAddr::new(net.ip, port)])
                .build()
                .await;
            match built {
                Ok(pc) => return Ok(Peer { pc: Arc::new(pc), estimate, gathered, port }),
                Err(e) => {
                    net.ports.give_back(port);
                    last = Some(e);
                }
            }
        }
        Err(media_error(last.map_or_else(|| "no connection".to_string(), |e| e.to_string())))
    }

    /// Waits until the connection's own candidates are gathered (host candidates on one
    /// socket: a moment), so descriptions carry them and no trickling is needed.
    pub async fn gathered(&self) {
        let mut rx = self.gathered.clone();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rx.wait_for(|g| *g)).await;
    }

    /// Closes the connection and hands its port back.
    pub async fn close(&self, net: &Network) {
        let _ = self.pc.close().await;
        if self.port != 0 {
            net.ports.give_back(self.port);
        }
    }
}

/// The codecs and the interceptors of a connection in `role`.
fn chain(net: &Network, role: Role, estimate: &Arc<AtomicU64>) -> Result<(MediaEngine, Registry)> {
    let mut media = codecs()?;
    let mut registry = configure_rtcp_reports(configure_nack(Registry::new(), &mut media));
    configure_simulcast_extension_headers(&mut media).map_err(media_error)?;
    registry = match role {
        Role::Publish => configure_twcc_receiver_only(registry, &mut media).map_err(media_error)?,
        Role::Subscribe => {
            let gcc = Gcc::new(1_000_000.0, 100_000.0, net.max_receive_bps.max(200_000) as f64);
            let gcc = Reporting { inner: gcc, target: estimate.clone() };
            congestion_control(registry, gcc, &mut media)?
        }
    };
    registry = registry.with(Slot::from(14_000), FeedbackToApp::default());
    Ok((media, registry))
}

/// Transport-wide congestion control on a connection the media server sends on: the header
/// extension and feedback negotiated, send times recorded, the receiver's feedback read into
/// `estimator`, but no pacer. The forwarder spends the estimate by choosing layers and sends
/// what it forwards at once, as other SFUs do: pacing forwarded media to the estimate queued it
/// behind an estimate that rose slowly or never (no feedback), 350 ms at 12 people and more
/// beyond.
fn congestion_control(registry: Registry, estimator: Reporting, media: &mut MediaEngine) -> Result<Registry> {
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        media.register_feedback(RTCPFeedback { typ: "transport-cc".into(), parameter: String::new() }, kind);
        media
            .register_header_extension(RTCRtpHeaderExtensionCapability { uri: TWCC_URI.into() }, kind, None)
            .map_err(media_error)?;
    }
    Ok(registry
        .with(Slot::CongestionControl, CongestionControlBuilder::new(estimator).build())
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build()))
}

/// The transport-wide sequence number header extension.
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Wraps the congestion controller so the forwarder can read its estimate.
struct Reporting {
    inner: Gcc,
    target: Arc<AtomicU64>,
}

impl BandwidthEstimator for Reporting {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.inner.on_reports(now, reports);
        self.target.store(self.inner.target_bitrate() as u64, Ordering::Relaxed);
    }

    fn target_bitrate(&self) -> f64 {
        self.inner.target_bitrate()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        self.target.store(self.inner.target_bitrate() as u64, Ordering::Relaxed);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.inner.stats()
    }
}

/// Passes keyframe requests (PLI, FIR) and receiver reports on to the forwarder, which answers
/// the first by asking the publisher and reads loss from the second; the interceptors have
/// acted on everything else.
#[derive(Default)]
struct FeedbackToApp {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

fn for_app(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() || any.is::<ReceiverReport>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackToApp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted: Vec<_> = packets.iter().filter(|p| for_app(p.as_ref())).cloned().collect();
            if wanted.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(wanted);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for FeedbackToApp {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// The extension id an SDP gives the audio level (`a=extmap:N urn:…ssrc-audio-level`).
pub fn audio_level_id(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        (uri.trim() == AUDIO_LEVEL_URI).then(|| id.split('/').next()?.parse().ok()).flatten()
    })
}

/// The ids of the tracks an offer sends: the `a=msid` of its `sendonly` and `sendrecv`
/// sections (a track the browser stopped sending is in an `inactive` one, or gone).
pub fn sent_tracks(sdp: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut sends, mut track) = (false, None::<String>);
    let mut flush = |sends: &mut bool, track: &mut Option<String>| {
        if let Some(t) = track.take()
            && *sends
        {
            out.push(t);
        }
        *sends = false;
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if line.starts_with("m=") {
            flush(&mut sends, &mut track);
        } else if line == "a=sendonly" || line == "a=sendrecv" {
            sends = true;
        } else if let Some(m) = line.strip_prefix("a=msid:") {
            track = m.split_whitespace().nth(1).map(str::to_string);
        }
    }
    flush(&mut sends, &mut track);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracks_an_offer_sends_are_found() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=msid:s mic\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s cam\r\na=sendrecv\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\na=msid:s screen\r\n";
        assert_eq!(sent_tracks(sdp), ["mic", "cam"]);
    }

    #[test]
    fn the_audio_level_extension_is_found() {
        let sdp = "v=0\r\na=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:1/sendrecv urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";
        assert_eq!(audio_level_id(sdp), Some(1));
        assert_eq!(audio_level_id("v=0\r\n"), None);
    }

    #[test]
    fn ports_are_handed_out_once() {
        let ports = Ports::new(41_000..=41_001);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = ports.take(ip).unwrap();
        let b = ports.take(ip).unwrap();
        assert_ne!(a, b);
        assert_eq!(ports.take(ip), None);
        ports.give_back(a);
        assert_eq!(ports.take(ip), Some(a));
    }
}
