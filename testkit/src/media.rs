//! A participant of a room call made of the same WebRTC stack as the server (webrtc-rs), for
//! tests and benchmarks without a browser: it publishes synthetic VP8 in three simulcast
//! layers and Opus with an audio level, subscribes to everyone else, and counts what arrives.
//!
//! The synthetic video is VP8 as far as a forwarder looks: a payload descriptor with a 15-bit
//! picture id, a frame header that marks keyframes (with a keyframe's start code and size),
//! then one byte naming the layer it was sent on, a send time (microseconds since the peer started, for latency), and filler to the
//! layer's size. A frame is one packet, 30 per second per layer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, Registry,
};

use crate::Ws;

/// The simulcast layers' stream ids, lowest first, and each layer's packet size.
pub const LAYERS: [(&str, usize); 3] = [("q", 150), ("h", 450), ("f", 1100)];

/// What arrived of one stream (one other participant's camera, microphone or screen).
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Whose stream, as the server's `sfu_offer` said.
    pub user_id: String,
    /// `camera`, `audio` or `screen`.
    pub purpose: String,
    /// The stream it belongs to (camera and microphone share one), as `sfu_show` names it.
    pub stream_id: String,
    /// Packets that arrived.
    pub packets: u64,
    /// Packets by the layer they were sent on.
    pub by_layer: [u64; 3],
    /// The layer of the last packet.
    pub last_layer: Option<usize>,
    /// Keyframes that arrived.
    pub keyframes: u64,
    /// Sequence numbers that went backwards or skipped (the forwarder should keep them
    /// continuous; loss on loopback is rare).
    pub seq_gaps: u64,
    /// One-way delays of the packets, microseconds (publisher's send to arrival).
    pub delays_us: Vec<u64>,
    last_seq: Option<u16>,
}

/// State shared with the peer's tasks.
#[derive(Default)]
pub(crate) struct Shared {
    streams: Mutex<HashMap<String, Received>>,
    /// track id -> (user, purpose, stream id), from the last `sfu_offer`.
    pub(crate) names: Mutex<HashMap<String, (String, String, String)>>,
    /// track id -> the remote track (for keyframe requests).
    tracks: Mutex<HashMap<String, Arc<dyn TrackRemote>>>,
    speakers: Mutex<Vec<String>>,
    errors: Mutex<Vec<Value>>,
    /// The other call frames that came (`call_roster`, `call_muted`, `call_ended`), in order.
    call_frames: Mutex<Vec<Value>>,
    keyframe_requests: AtomicU64,
    force_keyframe: AtomicBool,
    loudness: AtomicU8,
    offers: AtomicU64,
}

/// A live channel a test peer signals over: a member's own live socket, or a call socket at
/// another server (over TLS).
#[async_trait::async_trait]
pub trait Signalling: Send + 'static {
    /// Sends a frame.
    async fn send(&mut self, v: Value);
    /// The next frame within `wait`.
    async fn try_next(&mut self, wait: Duration) -> Option<Value>;
}

#[async_trait::async_trait]
impl Signalling for Ws {
    async fn send(&mut self, v: Value) {
        Ws::send(self, v).await
    }
    async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        Ws::try_next(self, wait).await
    }
}

#[async_trait::async_trait]
impl Signalling for crate::tls::TlsWs {
    async fn send(&mut self, v: Value) {
        crate::tls::TlsWs::send(self, v).await
    }
    async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        crate::tls::TlsWs::try_next(self, wait).await
    }
}

/// One participant: its two connections to the media server and the tasks that drive them.
pub struct MediaPeer {
    /// Room.
    pub room: String,
    /// Conference id.
    pub conf: String,
    publish: Arc<dyn PeerConnection>,
    subscribe: Arc<dyn PeerConnection>,
    out: mpsc::Sender<Value>,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
}

struct Gathered(watch::Sender<bool>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Gathered {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(true);
        }
    }
}

struct Subscriber {
    gathered: watch::Sender<bool>,
    shared: Arc<Shared>,
    started: Instant,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Subscriber {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.shared.clone();
        let started = self.started;
        tokio::spawn(async move {
            let stream = track.track_id().await;
            let video = track.kind().await == RtpCodecKind::Video;
            shared.tracks.lock().unwrap().insert(stream.clone(), track.clone());
            while let Some(ev) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(p) = ev else { continue };
                let name = shared.names.lock().unwrap().get(&stream).cloned().unwrap_or_default();
                let mut streams = shared.streams.lock().unwrap();
                let r = streams.entry(stream.clone()).or_default();
                r.user_id = name.0;
                r.purpose = name.1;
                r.stream_id = name.2;
                r.packets += 1;
                if let Some(last) = r.last_seq
                    && p.header.sequence_number != last.wrapping_add(1)
                {
                    r.seq_gaps += 1;
                }
                r.last_seq = Some(p.header.sequence_number);
                if let Some((layer, key, sent)) = read_synthetic(&p.payload).filter(|_| video) {
                    r.by_layer[layer] += 1;
                    r.last_layer = Some(layer);
                    r.keyframes += u64::from(key);
                    let now = started.elapsed().as_micros() as u64;
                    if r.delays_us.len() < 100_000 {
                        r.delays_us.push(now.saturating_sub(sent));
                    }
                }
            }
        });
    }
}

/// Layer, keyframe and send time of a synthetic VP8 payload.
fn read_synthetic(p: &[u8]) -> Option<(usize, bool, u64)> {
    if p.len() < SYNTHETIC_HEADER + 9 {
        return None;
    }
    let key = p[0] & 0x10 != 0 && p[4] & 0x01 == 0;
    let layer = usize::from(p[SYNTHETIC_HEADER]).min(2);
    let sent = u64::from_be_bytes(p[SYNTHETIC_HEADER + 1..SYNTHETIC_HEADER + 9].try_into().ok()?);
    Some((layer, key, sent))
}

/// Where the layer and send time start: after the 4-byte payload descriptor and a 10-byte VP8
/// frame header (the frame tag; in keyframes the start code and the size, which Janus reads).
const SYNTHETIC_HEADER: usize = 14;

fn synthetic(layer: usize, key: bool, picture_id: u16, sent_us: u64) -> bytes::Bytes {
    let mut p = vec![0x90, 0x80, 0x80 | ((picture_id >> 8) as u8 & 0x7f), picture_id as u8];
    let (w, h) = [(160u16, 90u16), (320, 180), (640, 360)][layer];
    p.extend_from_slice(&[if key { 0x10 } else { 0x11 }, 0, 0, 0x9d, 0x01, 0x2a]);
    p.extend_from_slice(&w.to_le_bytes());
    p.extend_from_slice(&h.to_le_bytes());
    p.push(layer as u8);
    p.extend_from_slice(&sent_us.to_be_bytes());
    p.resize(LAYERS[layer].1, 0xab);
    p.into()
}

fn codecs() -> MediaEngine {
    let mut m = MediaEngine::default();
    let fb = |t: &str, p: &str| RTCPFeedback { typ: t.into(), parameter: p.into() };
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![fb("nack", ""), fb("nack", "pli"), fb("ccm", "fir")],
            },
            payload_type: 96,
        },
        RtpCodecKind::Video,
    )
    .unwrap();
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )
    .unwrap();
    m.register_header_extension(
        RTCRtpHeaderExtensionCapability { uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level".into() },
        RtpCodecKind::Audio,
        None,
    )
    .unwrap();
    m
}

/// Passes keyframe requests to the publisher's tracks (the test counts and answers them).
#[derive(Default)]
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let keep: Vec<_> = packets
                .iter()
                .filter(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>())
                .cloned()
                .collect();
            if keep.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// The address test peers bind: 127.0.0.1, or `CHAT_MEDIA_PEER_IP` (the media server
/// benchmark's network namespace, where Janus, which never gathers on loopback, runs too).
fn peer_ip() -> String {
    std::env::var("CHAT_MEDIA_PEER_IP").unwrap_or_else(|_| "127.0.0.1".into())
}

async fn connection(handler: Arc<dyn PeerConnectionEventHandler>) -> Arc<dyn PeerConnection> {
    let mut media = codecs();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let registry = registry.with(Slot::from(14_000), KeyframeRequests::default());
    let settings = rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder::new()
        .with_include_loopback_candidate(true)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![format!("{}:0", peer_ip())])
        .build()
        .await
        .unwrap();
    Arc::new(pc)
}

fn track(stream: &str, id: &str, kind: RtpCodecKind, codings: Vec<(String, u32)>) -> Arc<TrackLocalStaticRTP> {
    let (mime, clock, channels) =
        if kind == RtpCodecKind::Video { (MIME_TYPE_VP8, 90_000, 0) } else { (MIME_TYPE_OPUS, 48_000, 2) };
    let codings = codings
        .into_iter()
        .map(|(rid, ssrc)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { rid, ssrc: Some(ssrc), ..Default::default() },
            codec: RTCRtpCodec {
                mime_type: mime.into(),
                clock_rate: clock,
                channels,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        })
        .collect();
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(stream.into(), id.into(), id.into(), kind, codings)))
}

/// An SDES header extension's value (MID, RID).
struct Sdes(&'static str);

impl rtc::shared::marshal::MarshalSize for Sdes {
    fn marshal_size(&self) -> usize {
        self.0.len()
    }
}

impl rtc::shared::marshal::Marshal for Sdes {
    fn marshal_to(&self, buf: &mut [u8]) -> rtc::shared::error::Result<usize> {
        buf[..self.0.len()].copy_from_slice(self.0.as_bytes());
        Ok(self.0.len())
    }
}

impl MediaPeer {
    /// Joins the room's call `conf` over `ws` (its roster, then the media server) and starts
    /// publishing; `layers` says how many simulcast layers it sends (1 to 3), `audio` whether it
    /// sends a microphone.
    pub async fn join(
        mut ws: impl Signalling,
        room: &str,
        conf: &str,
        layers: usize,
        audio: bool,
    ) -> Result<MediaPeer, Value> {
        let parts = Parts::new(layers, audio).await;
        let Parts { shared, stop, publish, subscribe, .. } = parts.clone();
        let sub_gathered = parts.sub_gathered.clone();
        ws.send(json!({ "t": "call_join", "room_id": room, "conf_id": conf })).await;
        let sdp = parts.publish_offer().await;
        ws.send(json!({ "t": "sfu_publish", "room_id": room, "conf_id": conf, "sdp": sdp })).await;
        // The answer, or the refusal.
        let answer = loop {
            let f = ws.try_next(Duration::from_secs(15)).await.ok_or_else(|| json!({ "error": "no answer" }))?;
            if f["t"] == "sfu_answer" {
                break f["sdp"].as_str().unwrap().to_string();
            }
            if f["t"] == "error" {
                let _ = publish.close().await;
                let _ = subscribe.close().await;
                return Err(f);
            }
        };
        publish.set_remote_description(RTCSessionDescription::answer(answer).unwrap()).await.unwrap();

        let (out, mut out_rx) = mpsc::channel::<Value>(64);
        // The live channel: answers the server's offers, records speakers and errors.
        {
            let (shared, subscribe, stop, room, conf) =
                (shared.clone(), subscribe.clone(), stop.clone(), room.to_string(), conf.to_string());
            let mut gathered = sub_gathered;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            let _ = ws.send(json!({ "t": "call_leave", "room_id": room, "conf_id": conf })).await;
                            return;
                        }
                        v = out_rx.recv() => match v {
                            Some(v) => ws.send(v).await,
                            None => return,
                        },
                        f = ws.try_next(Duration::from_secs(3600)) => {
                            let Some(f) = f else { return };
                            match f["t"].as_str() {
                                Some("sfu_offer") => {
                                    let mut names = HashMap::new();
                                                    for (id, s) in f["tracks"].as_object().into_iter().flatten() {
                                        let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                                        names.insert(id.clone(), (text("user_id"), text("purpose"), text("stream_id")));
                                    }
                                    *shared.names.lock().unwrap() = names;
                                    let sdp = match answer_offer(&subscribe, &mut gathered, f["sdp"].as_str().unwrap_or_default()).await {
                                        Ok(sdp) => sdp,
                                        // Closing while an offer is handled.
                                        Err(e) => { shared.errors.lock().unwrap().push(json!({ "local": e.to_string() })); continue; }
                                    };
                                    shared.offers.fetch_add(1, Ordering::Relaxed);
                                    ws.send(json!({ "t": "sfu_answer", "room_id": room, "conf_id": conf, "sdp": sdp })).await;
                                }
                                Some("sfu_speakers") => {
                                    *shared.speakers.lock().unwrap() = f["user_ids"].as_array().into_iter().flatten().filter_map(|u| u.as_str().map(str::to_string)).collect();
                                }
                                Some("error") => shared.errors.lock().unwrap().push(f),
                                Some("call_roster" | "call_muted" | "call_ended") => shared.call_frames.lock().unwrap().push(f),
                                _ => {}
                            }
                        }
                    }
                }
            });
        }
        parts.run();
        Ok(MediaPeer { room: room.into(), conf: conf.into(), publish, subscribe, out, shared, stop })
    }

    /// A peer of `parts` that some other signalling connected (Janus).
    pub(crate) fn from_parts(parts: &Parts, room: String, conf: String, out: mpsc::Sender<Value>) -> MediaPeer {
        MediaPeer {
            room,
            conf,
            publish: parts.publish.clone(),
            subscribe: parts.subscribe.clone(),
            out,
            shared: parts.shared.clone(),
            stop: parts.stop.clone(),
        }
    }

    /// What arrived so far, by track id.
    pub fn received(&self) -> HashMap<String, Received> {
        self.shared.streams.lock().unwrap().clone()
    }

    /// What arrived of `user`'s stream of `purpose`, if anything.
    pub fn from(&self, user: &str, purpose: &str) -> Option<Received> {
        self.received().into_values().find(|r| r.user_id == user && r.purpose == purpose)
    }

    /// The stream id of `user`'s stream of `purpose`, as the server's offer named it.
    pub fn stream_of(&self, user: &str, purpose: &str) -> Option<String> {
        self.shared
            .names
            .lock()
            .unwrap()
            .values()
            .find(|(u, p, _)| u == user && p == purpose)
            .map(|(_, _, s)| s.clone())
    }

    /// Asks the server for `height` pixels of a stream (`sfu_show`).
    pub async fn show(&self, stream_id: &str, height: u32) {
        let frame = json!({ "t": "sfu_show", "room_id": self.room, "conf_id": self.conf, "stream_id": stream_id, "height": height });
        self.out.send(frame).await.unwrap();
    }

    /// Sends any frame on the live channel.
    pub async fn send(&self, frame: Value) {
        self.out.send(frame).await.unwrap();
    }

    /// Asks the server for a keyframe of `user`'s camera (a PLI).
    pub async fn request_keyframe(&self, user: &str) -> bool {
        let id = self
            .shared
            .names
            .lock()
            .unwrap()
            .iter()
            .find(|(_, (u, p, _))| u == user && p == "camera")
            .map(|(id, _)| id.clone());
        let Some(id) = id else { return false };
        let track = self.shared.tracks.lock().unwrap().get(&id).cloned();
        let Some(track) = track else { return false };
        let ssrc = track.ssrcs().await.first().copied().unwrap_or_default();
        track.write_rtcp(vec![Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc })]).await.is_ok()
    }

    /// Keyframe requests the server sent this peer's camera.
    pub fn keyframe_requests(&self) -> u64 {
        self.shared.keyframe_requests.load(Ordering::Relaxed)
    }

    /// Offers the server made to this peer.
    pub fn offers(&self) -> u64 {
        self.shared.offers.load(Ordering::Relaxed)
    }

    /// How loud this peer's microphone is, 0 (silent) to 127.
    pub fn set_loudness(&self, l: u8) {
        self.shared.loudness.store(l, Ordering::Relaxed);
    }

    /// Who the server last said is speaking.
    pub fn speakers(&self) -> Vec<String> {
        self.shared.speakers.lock().unwrap().clone()
    }

    /// Errors the server sent on the live channel.
    pub fn errors(&self) -> Vec<Value> {
        self.shared.errors.lock().unwrap().clone()
    }

    /// The call frames that came (`call_roster`, `call_muted`, `call_ended`), in order.
    pub fn call_frames(&self) -> Vec<Value> {
        self.shared.call_frames.lock().unwrap().clone()
    }

    /// This call as the last `call_roster` for its room shows it (none: not running).
    pub fn roster(&self) -> Option<Value> {
        let frames = self.call_frames();
        let last = frames.iter().rev().find(|f| f["t"] == "call_roster" && f["room_id"] == self.room.as_str())?;
        last["calls"].as_array()?.iter().find(|c| c["conf_id"] == self.conf.as_str()).cloned()
    }

    /// Leaves the call (`call_leave`) and closes both connections.
    pub async fn leave(self) {
        self.stop.cancel();
        let _ = self.publish.close().await;
        let _ = self.subscribe.close().await;
    }
}

/// A peer's two connections and its tracks, before it joins a call: the same for our media
/// server and for Janus (the benchmark's comparison).
#[derive(Clone)]
pub(crate) struct Parts {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: tokio_util::sync::CancellationToken,
    pub(crate) publish: Arc<dyn PeerConnection>,
    pub(crate) subscribe: Arc<dyn PeerConnection>,
    pub_gathered: watch::Receiver<bool>,
    pub(crate) sub_gathered: watch::Receiver<bool>,
    video: Arc<TrackLocalStaticRTP>,
    mic: Arc<TrackLocalStaticRTP>,
    ssrcs: Vec<u32>,
    audio_ssrc: u32,
    audio: bool,
    started: Instant,
}

impl Parts {
    /// Both connections, a camera of `layers` simulcast layers and (with `audio`) a microphone.
    pub(crate) async fn new(layers: usize, audio: bool) -> Parts {
        // One clock for every peer of the process, so a receiver can time a sender's packet.
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let started = *EPOCH.get_or_init(Instant::now);
        let shared = Arc::new(Shared::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let (pub_gathered_tx, pub_gathered) = watch::channel(false);
        let publish = connection(Arc::new(Gathered(pub_gathered_tx))).await;
        let (sub_gathered_tx, sub_gathered) = watch::channel(false);
        let subscribe =
            connection(Arc::new(Subscriber { gathered: sub_gathered_tx, shared: shared.clone(), started })).await;
        let ssrcs: Vec<u32> = (0..layers).map(|i| 0x1000_0000 + rand_u32() % 0x0fff_0000 + i as u32).collect();
        let video = track(
            "cam",
            "cam-video",
            RtpCodecKind::Video,
            (0..layers)
                .map(|i| (if layers == 1 { String::new() } else { LAYERS[i].0.to_string() }, ssrcs[i]))
                .collect(),
        );
        publish.add_track(video.clone() as Arc<dyn TrackLocal>).await.unwrap();
        let audio_ssrc = rand_u32();
        let mic = track("cam", "cam-audio", RtpCodecKind::Audio, vec![(String::new(), audio_ssrc)]);
        if audio {
            publish.add_track(mic.clone() as Arc<dyn TrackLocal>).await.unwrap();
        }
        Parts {
            shared,
            stop,
            publish,
            subscribe,
            pub_gathered,
            sub_gathered,
            video,
            mic,
            ssrcs,
            audio_ssrc,
            audio,
            started,
        }
    }

    /// The publish connection's offer, with its candidates.
    pub(crate) async fn publish_offer(&self) -> String {
        let offer = self.publish.create_offer(None).await.unwrap();
        self.publish.set_local_description(offer).await.unwrap();
        let mut gathered = self.pub_gathered.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g)).await;
        self.publish.local_description().await.unwrap().sdp
    }

    /// Starts sending: 30 frames per second per layer, a keyframe every 3 s or when asked;
    /// audio every 20 ms. Keyframe requests are counted.
    pub(crate) fn run(&self) {
        let Parts { shared, stop, video, mic, ssrcs, audio_ssrc, audio, started, .. } = self.clone();
        {
            let (shared, video, stop) = (shared.clone(), video.clone(), stop.clone());

            tokio::spawn(async move {
                loop {
                    let ev = tokio::select! {
                        _ = stop.cancelled() => return,
                        ev = video.poll() => ev,
                    };
                    match ev {
                        Some(TrackLocalEvent::OnRtcpPacket(_)) => {
                            shared.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                            shared.force_keyframe.store(true, Ordering::Relaxed);
                        }
                        Some(_) => {}
                        None => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            });
        }
        // The media: 30 frames per second per layer, a keyframe every 3 s or when asked;
        // audio every 20 ms.
        {
            let (shared, stop) = (shared.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(33));
                let (mut frame, mut seq, mut audio_seq) = (0u32, [0u16; 3], 0u16);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let key = frame % 90 == 0 || shared.force_keyframe.swap(false, Ordering::Relaxed);
                    let now = started.elapsed().as_micros() as u64;
                    for (layer, ssrc) in ssrcs.iter().enumerate() {
                        let header = rtp::header::Header {
                            version: 2,
                            marker: true,
                            payload_type: 96,
                            sequence_number: seq[layer],
                            timestamp: frame.wrapping_mul(3000),
                            ssrc: *ssrc,
                            ..Default::default()
                        };
                        seq[layer] = seq[layer].wrapping_add(1);
                        let packet =
                            rtp::Packet { header, payload: synthetic(layer, key, (frame & 0x7fff) as u16, now) };
                        let rid = if ssrcs.len() == 1 { None } else { Some(LAYERS[layer].0) };
                        // Simulcast: the receiver maps each layer's SSRC by its MID and RID.
                        let ext: Vec<HeaderExtension> = rid
                            .map(|r| {
                                [
                                    ("urn:ietf:params:rtp-hdrext:sdes:mid", "0"),
                                    ("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", r),
                                ]
                                .map(|(uri, v)| HeaderExtension::Custom {
                                    uri: uri.into(),
                                    extension: Box::new(Sdes(v)),
                                })
                            })
                            .into_iter()
                            .flatten()
                            .collect();
                        let _ = video.write_rtp_with_extensions(packet, &ext).await;
                    }
                    if audio {
                        for _ in 0..2 {
                            let level = 127 - shared.loudness.load(Ordering::Relaxed).min(127);
                            let header = rtp::header::Header {
                                version: 2,
                                payload_type: 111,
                                sequence_number: audio_seq,
                                timestamp: u32::from(audio_seq).wrapping_mul(960),
                                ssrc: audio_ssrc,
                                ..Default::default()
                            };
                            audio_seq = audio_seq.wrapping_add(1);
                            let payload = bytes::Bytes::from(vec![0xfc; 60]);
                            let ext = [HeaderExtension::AudioLevel(AudioLevelExtension { level, voice: level < 100 })];
                            let _ = mic.write_rtp_with_extensions(rtp::Packet { header, payload }, &ext).await;
                        }
                    }
                    frame += 1;
                }
            });
        }
    }
}

/// Answers an offer on the subscribe connection: the answer's SDP, with its candidates.
pub(crate) async fn answer_offer(
    subscribe: &Arc<dyn PeerConnection>,
    gathered: &mut watch::Receiver<bool>,
    sdp: &str,
) -> Result<String, webrtc::error::Error> {
    let offer = RTCSessionDescription::offer(sdp.to_string())?;
    subscribe.set_remote_description(offer).await?;
    let answer = subscribe.create_answer(None).await?;
    subscribe.set_local_description(answer).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g)).await;
    Ok(subscribe.local_description().await.map(|d| d.sdp).unwrap_or_default())
}

pub(crate) fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish() as u32
}
