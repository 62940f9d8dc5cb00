//! The media server (a selective forwarding unit) for room calls: each participant sends its
//! camera (three simulcast layers), microphone and screen once, to the server, over one
//! "publish" connection, and receives everyone else's from the server over one "subscribe"
//! connection. The server forwards RTP without decoding it: per receiver and per video stream
//! it picks the simulcast layer that suits the tile the receiver shows and fits the bandwidth
//! estimated towards it, switching on keyframes and rewriting sequence numbers, timestamps and
//! VP8 picture ids so the receiver sees one continuous stream ([`forward`]). Keyframe requests
//! from receivers go to the publisher; lost packets are asked for and resent by the NACK
//! interceptors on both legs.
//!
//! A participant is one tab in the room's call roster (the hub's): signalling travels over that
//! tab's live WebSocket, so a session is the connection itself and cannot be forged or kept
//! after the tab leaves the roster. Leaving the call, closing the tab, leaving the room or
//! being removed from it takes the tab off the roster, and the hub's callback ends its media
//! here ([`Sfu::leave`]).

pub mod forward;
pub mod peer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

use crate::error::{Error, Result};
use crate::ids::{RoomId, UserId};
use forward::{LAYERS, Munger, Seen};
use peer::{Events, Network, Peer, Role};

/// A tab in a room call: its live connection, the room and the conference id.
#[derive(Debug, Clone)]
pub struct Tab {
    /// The live connection's id.
    pub conn: u64,
    /// Room.
    pub room: RoomId,
    /// Conference id.
    pub conf: String,
}

/// Limits of the media server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most participants in one call.
    pub call_participants: usize,
    /// Most participants in all calls together.
    pub participants_total: usize,
    /// Most bits per second forwarded in all calls together; beyond it receivers get lower
    /// layers.
    pub forward_bps_total: u64,
}

handle!(
    /// The media server. Cheap to clone.
    Sfu => SfuInner
);

/// What [`Sfu`] holds.
pub struct SfuInner {
    net: Network,
    limits: Limits,
    calls: Mutex<HashMap<(RoomId, String), Arc<Call>>>,
    next_id: AtomicU64,
    stats: Stats,
    tasks: TaskTracker,
    /// Held while a tab becomes a participant: two offers of one tab at once make one
    /// participant, and the limits count exactly.
    joining: tokio::sync::Mutex<()>,
    /// When it started (the clock of the loss window).
    started: Instant,
    /// The runtime its tasks run on (the hub tells it of departures from the publisher thread).
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
}

/// Counters and gauges for `/metrics`.
#[derive(Default)]
struct Stats {
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped_packets: AtomicU64,
    keyframe_requests: AtomicU64,
    layer_switches: AtomicU64,
    /// Bits per second forwarded, over the last tick of every call.
    forward_bps: AtomicU64,
    /// Packets lost upstream (publishers to us), from sequence gaps.
    lost_upstream: AtomicU64,
    /// Packets received from publishers.
    received_packets: AtomicU64,
    /// Loss reported by receivers: the largest fraction in the current window, in 1/256.
    loss_downstream: AtomicU64,
    /// When the loss window started, ms after `started`.
    loss_since: AtomicU64,
}

/// What `/metrics` and the admin page show of the media server.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Calls with at least one participant.
    pub calls: usize,
    /// Participants in all calls.
    pub participants: usize,
    /// Packets forwarded to receivers, total.
    pub forwarded_packets: u64,
    /// Bytes forwarded to receivers, total.
    pub forwarded_bytes: u64,
    /// Packets dropped because a receiver's queue was full, total.
    pub dropped_packets: u64,
    /// Keyframe requests sent to publishers, total.
    pub keyframe_requests: u64,
    /// Simulcast layer switches, total.
    pub layer_switches: u64,
    /// Bits per second forwarded now.
    pub forward_bps: u64,
    /// Packets received from publishers, total.
    pub received_packets: u64,
    /// Packets lost on the way from publishers, total.
    pub lost_upstream: u64,
    /// The worst loss a receiver reported lately (the last 5 to 10 s), percent.
    pub loss_downstream_percent: f64,
    /// Each call: room, conference id, participants, seconds running.
    pub each: Vec<(RoomId, String, Vec<UserId>, u64)>,
}

/// One room call on the media server.
pub struct Call {
    room: RoomId,
    conf: String,
    started: Instant,
    members: Mutex<Vec<Arc<Member>>>,
    sfu: Weak<SfuInner>,
    ended: CancellationToken,
    speakers: Mutex<Vec<String>>,
}

/// One participant (one tab).
pub struct Member {
    id: u64,
    user: UserId,
    conn: u64,
    out: mpsc::Sender<String>,
    call: Weak<Call>,
    publish: Peer,
    subscribe: Peer,
    sources: Mutex<Vec<Arc<Source>>>,
    /// What it receives: source id -> the stream and its sender on the subscribe connection.
    downs: Mutex<Downs>,
    negotiation: tokio::sync::Mutex<Negotiation>,
    audio_level_id: Mutex<Option<u8>>,
    screens: Mutex<Vec<String>>,
    /// The tile heights asked for, by stream id (a camera that arrives after the microphone
    /// starts at its tile's size).
    heights: Mutex<HashMap<String, u32>>,
    /// Its microphone is off (by itself or a host): its audio is not forwarded.
    held: AtomicBool,
    gone: CancellationToken,
}

type Downs = HashMap<u64, (Arc<Down>, Arc<dyn RtpSender>)>;

#[derive(Default)]
struct Negotiation {
    /// An offer is out, not answered yet.
    offered: bool,
    /// Tracks changed while it was out: offer again after the answer.
    again: bool,
}

/// What a published track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Microphone.
    Audio,
    /// Camera.
    Camera,
    /// Screen share.
    Screen,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Audio => "audio",
            Purpose::Camera => "camera",
            Purpose::Screen => "screen",
        }
    }
}

/// One published track, forwarded to every other participant.
pub struct Source {
    id: u64,
    user: UserId,
    /// The publisher's id of the track (its `a=msid`).
    remote_track: String,
    /// Cancelled when the publisher stops sending it (a re-offer without it).
    ended: CancellationToken,
    stream_id: String,
    purpose: Purpose,
    remote: Arc<dyn TrackRemote>,
    ssrcs: Mutex<[Option<u32>; LAYERS]>,
    sinks: RwLock<Vec<Arc<Down>>>,
    bytes: [AtomicU64; LAYERS],
    /// Bits per second of each layer over the last tick.
    rates: [AtomicU64; LAYERS],
    last_pli: Mutex<[Option<Instant>; LAYERS]>,
    /// Smoothed loudness 0–127 (audio).
    level: AtomicU8,
}

impl Source {
    /// The id of the track that carries it to receivers.
    fn track_id(&self) -> String {
        format!("{}-{}", self.stream_id, self.purpose.as_str())
    }
}

/// No layer.
const NONE: usize = usize::MAX;

/// One source as one receiver gets it.
pub struct Down {
    source: Weak<Source>,
    ssrc: u32,
    video: bool,
    local: Arc<TrackLocalStaticRTP>,
    tx: mpsc::Sender<rtp::Packet>,
    /// The layer the receiver should get (NONE: paused).
    want: AtomicUsize,
    /// The layer forwarded now.
    current: AtomicUsize,
    munger: Mutex<Munger>,
    /// The tile height the receiver asked for, pixels (0: not shown).
    height: AtomicU64,
    rtcp_started: AtomicBool,
}

/// The tile height a stream is sent for until the receiver says (the middle layer).
const DEFAULT_HEIGHT: u32 = 360;

/// The window of the downstream loss gauge, ms.
const LOSS_WINDOW_MS: u64 = 5_000;

/// Packets queued to one receiver's stream before the oldest are dropped.
const DOWN_QUEUE: usize = 512;

/// How often layers are chosen and speakers announced.
const TICK: Duration = Duration::from_millis(500);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sfu {
    /// The media server with its network and limits; its tasks run in `tasks`.
    pub fn start(net: Network, limits: Limits, tasks: TaskTracker, shutdown: CancellationToken) -> Sfu {
        Sfu::new(SfuInner {
            net,
            limits,
            calls: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stats: Stats::default(),
            tasks,
            joining: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            runtime: tokio::runtime::Handle::current(),
            shutdown,
        })
    }

    /// Runs `fut` as one of the server's tasks, from any thread.
    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(self.tasks.track_future(fut));
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn member(&self, tab: &Tab) -> Option<(Arc<Call>, Arc<Member>)> {
        let call = lock(&self.calls).get(&(tab.room.clone(), tab.conf.clone())).cloned()?;
        let m = lock(&call.members).iter().find(|m| m.conn == tab.conn).cloned()?;
        Some((call, m))
    }

    /// A participant's offer for its publish connection (the first makes it a participant; a
    /// later one adds or removes a track, as a screen share does). `screens` names the
    /// offer's tracks that are screens. Answers with the server's description. The caller has
    /// checked that the connection is on the call's roster.
    pub async fn publish(
        &self,
        user: &UserId,
        tab: &Tab,
        sdp: String,
        screens: Vec<String>,
        out: &mpsc::Sender<String>,
    ) -> Result<String> {
        if screens.len() > 4 || screens.iter().any(|s| s.len() > 255) {
            return Err(Error::bad("screens names at most 4 track ids"));
        }
        let offer = description(true, sdp)?;
        let member = {
            let _joining = self.joining.lock().await;
            match self.member(tab) {
                Some((_, m)) => m,
                None => self.add_member(user, tab, out).await?,
            }
        };
        *lock(&member.screens) = screens;
        *lock(&member.audio_level_id) = peer::audio_level_id(&offer.sdp);
        // A track the new offer no longer sends (a screen share that stopped) ends for everyone.
        let sent = peer::sent_tracks(&offer.sdp);
        for s in lock(&member.sources).iter() {
            if !sent.contains(&s.remote_track) {
                s.ended.cancel();
            }
        }
        let pc = &member.publish.pc;
        pc.set_remote_description(offer).await.map_err(|e| Error::bad(format!("sdp: {e}")))?;
        let answer = pc.create_answer(None).await.map_err(peer::media_error)?;
        pc.set_local_description(answer).await.map_err(peer::media_error)?;
        member.publish.gathered().await;
        let local = pc.local_description().await.ok_or_else(|| Error::Internal("no local description".into()))?;
        Ok(local.sdp)
    }

    async fn add_member(&self, user: &UserId, tab: &Tab, out: &mpsc::Sender<String>) -> Result<Arc<Member>> {
        let (conn, room, conf) = (tab.conn, &tab.room, tab.conf.as_str());
        let call = {
            let mut calls = lock(&self.calls);
            let total: usize = calls.values().map(|c| lock(&c.members).len()).sum();
            if total >= self.limits.participants_total {
                return Err(Error::Unavailable("the media server is full".into()));
            }
            let key = (room.clone(), conf.to_string());
            let call = calls.entry(key).or_insert_with(|| {
                let call = Arc::new(Call {
                    room: room.clone(),
                    conf: conf.to_string(),
                    started: Instant::now(),
                    members: Mutex::new(Vec::new()),
                    sfu: Arc::downgrade(&self.0),
                    ended: CancellationToken::new(),
                    speakers: Mutex::new(Vec::new()),
                });
                self.spawn(tick_call(Arc::downgrade(&call), self.shutdown.clone()));
                call
            });
            if lock(&call.members).len() >= self.limits.call_participants {
                return Err(Error::Unavailable(format!(
                    "this call is full ({} people)",
                    self.limits.call_participants
                )));
            }
            call.clone()
        };
        let id = self.id();
        let relay = Arc::new(Relay { member: std::sync::OnceLock::new(), sfu: Arc::downgrade(&self.0) });
        let publish = Peer::open(&self.net, Role::Publish, relay.clone()).await?;
        let subscribe = match Peer::open(&self.net, Role::Subscribe, relay.clone()).await {
            Ok(p) => p,
            Err(e) => {
                publish.close(&self.net).await;
                return Err(e);
            }
        };
        let member = Arc::new(Member {
            id,
            user: user.clone(),
            conn,
            out: out.clone(),
            call: Arc::downgrade(&call),
            publish,
            subscribe,
            sources: Mutex::new(Vec::new()),
            downs: Mutex::new(HashMap::new()),
            negotiation: tokio::sync::Mutex::new(Negotiation::default()),
            audio_level_id: Mutex::new(None),
            screens: Mutex::new(Vec::new()),
            heights: Mutex::new(HashMap::new()),
            held: AtomicBool::new(false),
            gone: CancellationToken::new(),
        });
        let _ = relay.member.set(Arc::downgrade(&member));
        let others: Vec<Arc<Member>> = {
            let mut members = lock(&call.members);
            members.retain(|m| m.conn != conn);
            let others = members.clone();
            members.push(member.clone());
            others
        };
        // What the others already publish.
        let sources: Vec<Arc<Source>> = others.iter().flat_map(|o| lock(&o.sources).clone()).collect();
        for s in sources {
            self.subscribe(&member, &s).await;
        }
        self.renegotiate(&member).await;
        Ok(member)
    }

    /// Adds `source` to what `member` receives (not yet offered).
    async fn subscribe(&self, member: &Arc<Member>, source: &Arc<Source>) {
        if member.gone.is_cancelled() || lock(&member.downs).contains_key(&source.id) {
            return;
        }
        let video = source.purpose != Purpose::Audio;
        let ssrc: u32 = rand_u32();
        let (kind, mime, clock, channels) = if video {
            (
                RtpCodecKind::Video,
                rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8,
                peer::VIDEO_CLOCK,
                0,
            )
        } else {
            (RtpCodecKind::Audio, rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS, 48_000, 2)
        };
        let track = MediaStreamTrack::new(
            source.stream_id.clone(),
            source.track_id(),
            source.purpose.as_str().to_string(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate: clock,
                    channels,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        );
        let local = Arc::new(TrackLocalStaticRTP::new(track));
        let sender = match member.subscribe.pc.add_track(local.clone() as Arc<dyn TrackLocal>).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "media: could not add a track for a participant");
                return;
            }
        };
        let (tx, mut rx) = mpsc::channel::<rtp::Packet>(DOWN_QUEUE);
        let height = lock(&member.heights).get(&source.stream_id).copied().unwrap_or(DEFAULT_HEIGHT);
        let first = if video { forward::layer_for_height(height) } else { Some(0) };
        let down = Arc::new(Down {
            source: Arc::downgrade(source),
            ssrc,
            video,
            local: local.clone(),
            tx,
            want: AtomicUsize::new(first.unwrap_or(NONE)),
            current: AtomicUsize::new(NONE),
            munger: Mutex::new(Munger::default()),
            height: AtomicU64::new(u64::from(height)),
            rtcp_started: AtomicBool::new(false),
        });
        lock(&member.downs).insert(source.id, (down.clone(), sender));
        let gone = member.gone.clone();
        self.spawn(async move {
            loop {
                let packet = tokio::select! {
                    _ = gone.cancelled() => return,
                    p = rx.recv() => p,
                };
                let Some(packet) = packet else { return };
                if local.write_rtp(packet).await.is_err() {
                    // Not bound yet (before the answer) or closing: the packet is lost.
                    continue;
                }
            }
        });
        source.sinks.write().unwrap_or_else(|p| p.into_inner()).push(down);
    }

    /// Removes a source from what `member` receives (not yet offered).
    async fn unsubscribe(&self, member: &Arc<Member>, source_id: u64) {
        let removed = lock(&member.downs).remove(&source_id);
        if let Some((down, sender)) = removed {
            if let Some(s) = down.source.upgrade() {
                s.sinks.write().unwrap_or_else(|p| p.into_inner()).retain(|d| !Arc::ptr_eq(d, &down));
            }
            let _ = member.subscribe.pc.remove_track(&sender).await;
        }
    }

    /// Offers `member` its subscribe connection as it is now (or marks it to be offered again
    /// when the offer out is answered).
    async fn renegotiate(&self, member: &Arc<Member>) {
        let mut neg = member.negotiation.lock().await;
        if member.gone.is_cancelled() {
            return;
        }
        if neg.offered {
            neg.again = true;
            return;
        }
        if lock(&member.downs).is_empty() && member.subscribe.pc.current_local_description().await.is_none() {
            return;
        }
        let pc = &member.subscribe.pc;
        let offer = match pc.create_offer(None).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "media: no offer for a participant");
                return;
            }
        };
        if let Err(e) = pc.set_local_description(offer).await {
            tracing::warn!(error = %e, "media: offer not applied");
            return;
        }
        member.subscribe.gathered().await;
        let Some(local) = pc.local_description().await else { return };
        neg.offered = true;
        neg.again = false;
        let Some(call) = member.call.upgrade() else { return };
        let tracks: serde_json::Map<String, serde_json::Value> = lock(&member.downs)
            .values()
            .filter_map(|(d, _)| d.source.upgrade())
            .map(|s| {
                let about =
                    json!({ "user_id": s.user.as_str(), "purpose": s.purpose.as_str(), "stream_id": s.stream_id });
                (s.track_id(), about)
            })
            .collect();
        let frame = json!({
            "t": "sfu_offer", "room_id": call.room.as_str(), "conf_id": call.conf, "sdp": local.sdp, "tracks": tracks,
        });
        let _ = member.out.try_send(frame.to_string());
    }

    /// The participant's answer to the server's last offer on its subscribe connection.
    pub async fn answer(&self, tab: &Tab, sdp: String) -> Result<()> {
        let answer = description(false, sdp)?;
        let (_, member) = self.member(tab).ok_or_else(not_in_call)?;
        let again = {
            let mut neg = member.negotiation.lock().await;
            if !neg.offered {
                return Err(Error::Conflict("no offer is waiting for an answer".into()));
            }
            member.subscribe.pc.set_remote_description(answer).await.map_err(|e| Error::bad(format!("sdp: {e}")))?;
            neg.offered = false;
            std::mem::take(&mut neg.again)
        };
        let downs: Vec<Arc<Down>> = lock(&member.downs).values().map(|(d, _)| d.clone()).collect();
        for d in downs {
            if !d.rtcp_started.swap(true, Ordering::Relaxed) {
                self.spawn(read_feedback(d, Arc::downgrade(&self.0), member.gone.clone()));
            }
        }
        if again {
            self.renegotiate(&member).await;
        }
        Ok(())
    }

    /// How high the participant shows another's stream (`stream_id`), in pixels; 0 hides it
    /// (nothing is forwarded). The layer follows at the next tick.
    pub fn show(&self, tab: &Tab, stream_id: &str, height: u32) -> Result<()> {
        let (_, member) = self.member(tab).ok_or_else(not_in_call)?;
        let height = height.min(4320);
        let downs = lock(&member.downs);
        let mut found = false;
        for (d, _) in downs.values() {
            if d.source.upgrade().is_some_and(|s| s.stream_id == stream_id) {
                found = true;
                if d.video {
                    d.height.store(u64::from(height), Ordering::Relaxed);
                }
            }
        }
        if !found {
            return Err(Error::NotFound("no such stream in this call".into()));
        }
        let mut heights = lock(&member.heights);
        heights.retain(|id, _| downs.values().any(|(d, _)| d.source.upgrade().is_some_and(|s| &s.stream_id == id)));
        heights.insert(stream_id.to_string(), height);
        Ok(())
    }

    /// Holds back (or forwards again) a participant's microphone: its microphone was turned
    /// off, by itself or by a host, so nothing it sends is heard even if its client keeps
    /// sending. Nothing happens for a tab without media here (a mesh call).
    pub fn hold(&self, tab: &Tab, held: bool) {
        if let Some((_, member)) = self.member(tab) {
            member.held.store(held, Ordering::Relaxed);
        }
    }

    /// Ends the media of a tab that left a call's roster.
    pub fn leave(&self, tab: &Tab) {
        let Some((call, member)) = self.member(tab) else { return };
        let sfu = self.clone();
        self.spawn(async move { sfu.remove(&call, &member).await });
    }

    /// Ends everyone's media in a call.
    async fn end(&self, call: &Arc<Call>) {
        let members = lock(&call.members).clone();
        for m in members {
            self.remove(call, &m).await;
        }
    }

    async fn remove(&self, call: &Arc<Call>, member: &Arc<Member>) {
        if member.gone.is_cancelled() {
            return;
        }
        member.gone.cancel();
        let others: Vec<Arc<Member>> = {
            let mut members = lock(&call.members);
            members.retain(|m| !Arc::ptr_eq(m, member));
            members.clone()
        };
        if others.is_empty() {
            let mut calls = lock(&self.calls);
            let key = (call.room.clone(), call.conf.clone());
            if calls.get(&key).is_some_and(|c| Arc::ptr_eq(c, call) && lock(&c.members).is_empty()) {
                calls.remove(&key);
                call.ended.cancel();
            }
        }
        let sources: Vec<u64> = lock(&member.sources).drain(..).map(|s| s.id).collect();
        for s in &sources {
            for o in &others {
                self.unsubscribe(o, *s).await;
            }
        }
        for o in &others {
            self.renegotiate(o).await;
        }
        for (_, (d, _)) in lock(&member.downs).drain() {
            if let Some(s) = d.source.upgrade() {
                s.sinks.write().unwrap_or_else(|p| p.into_inner()).retain(|x| !Arc::ptr_eq(x, &d));
            }
        }
        member.publish.close(&self.net).await;
        member.subscribe.close(&self.net).await;
    }

    /// A track a participant published: forwarded to the others until it ends.
    async fn published(&self, member: Arc<Member>, track: Arc<dyn TrackRemote>) {
        let Some(call) = member.call.upgrade() else { return };
        let kind = track.kind().await;
        let track_id = track.track_id().await;
        let purpose = match kind {
            RtpCodecKind::Audio => Purpose::Audio,
            RtpCodecKind::Video if lock(&member.screens).contains(&track_id) => Purpose::Screen,
            RtpCodecKind::Video => Purpose::Camera,
            _ => return,
        };
        let stream_id = match purpose {
            Purpose::Screen => format!("m{}s", member.id),
            _ => format!("m{}", member.id),
        };
        let source = Arc::new(Source {
            id: self.id(),
            user: member.user.clone(),
            remote_track: track_id.clone(),
            ended: CancellationToken::new(),
            stream_id,
            purpose,
            remote: track.clone(),
            ssrcs: Mutex::new([None; LAYERS]),
            sinks: RwLock::new(Vec::new()),
            bytes: Default::default(),
            rates: Default::default(),
            last_pli: Mutex::new([None; LAYERS]),
            level: AtomicU8::new(0),
        });
        lock(&member.sources).push(source.clone());
        let others: Vec<Arc<Member>> =
            lock(&call.members).iter().filter(|m| !Arc::ptr_eq(m, &member)).cloned().collect();
        for o in &others {
            self.subscribe(o, &source).await;
            self.renegotiate(o).await;
        }
        let level_id = *lock(&member.audio_level_id);
        let mut layers: HashMap<u32, usize> = HashMap::new();
        let mut last_seq: HashMap<u32, u16> = HashMap::new();
        loop {
            let event = tokio::select! {
                _ = member.gone.cancelled() => break,
                _ = source.ended.cancelled() => break,
                e = track.poll() => e,
            };
            match event {
                None | Some(TrackRemoteEvent::OnEnded) => break,
                Some(TrackRemoteEvent::OnOpen(init)) => {
                    let Some(layer) = forward::layer_of(init.rid.as_deref()) else { continue };
                    layers.insert(init.ssrc, layer);
                    lock(&source.ssrcs)[layer] = Some(init.ssrc);
                }
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                    let ssrc = packet.header.ssrc;
                    let layer = match layers.get(&ssrc) {
                        Some(l) => *l,
                        None => {
                            let rid = track.rid(ssrc).await;
                            let Some(l) = forward::layer_of(rid.as_deref()) else { continue };
                            layers.insert(ssrc, l);
                            lock(&source.ssrcs)[l] = Some(ssrc);
                            l
                        }
                    };
                    self.stats.received_packets.fetch_add(1, Ordering::Relaxed);
                    if let Some(prev) = last_seq.insert(ssrc, packet.header.sequence_number) {
                        let gap = packet.header.sequence_number.wrapping_sub(prev);
                        if (2..1000).contains(&gap) {
                            self.stats.lost_upstream.fetch_add(u64::from(gap - 1), Ordering::Relaxed);
                        }
                    }
                    source.bytes[layer].fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                    if purpose == Purpose::Audio && member.held.load(Ordering::Relaxed) {
                        source.level.store(0, Ordering::Relaxed);
                        continue;
                    }
                    if let Some(id) = level_id
                        && purpose == Purpose::Audio
                        && let Some(l) = packet.header.get_extension(id).as_deref().and_then(forward::loudness)
                    {
                        let old = source.level.load(Ordering::Relaxed);
                        source.level.store(((u16::from(old) * 3 + u16::from(l)) / 4) as u8, Ordering::Relaxed);
                    }
                    if packet.payload.is_empty() {
                        continue;
                    }
                    let keyframe = purpose == Purpose::Audio || forward::vp8_keyframe(&packet.payload);
                    let sinks = source.sinks.read().unwrap_or_else(|p| p.into_inner()).clone();
                    for d in sinks {
                        self.forward(&source, &d, layer, keyframe, &packet);
                    }
                }
                Some(_) => {}
            }
        }
        lock(&member.sources).retain(|s| !Arc::ptr_eq(s, &source));
        if !member.gone.is_cancelled() {
            for o in &others {
                self.unsubscribe(o, source.id).await;
                self.renegotiate(o).await;
            }
        }
    }

    /// Forwards one packet of `layer` to one receiver, if it is the layer the receiver gets
    /// (switching to the wanted layer on its keyframe).
    fn forward(&self, source: &Source, d: &Down, layer: usize, keyframe: bool, packet: &rtp::Packet) {
        let want = d.want.load(Ordering::Relaxed);
        let mut current = d.current.load(Ordering::Relaxed);
        if want != current {
            if layer == want && keyframe {
                d.current.store(want, Ordering::Relaxed);
                lock(&d.munger).switch();
                current = want;
                self.stats.layer_switches.fetch_add(1, Ordering::Relaxed);
            } else if want != NONE {
                self.keyframe(source, want);
            } else {
                d.current.store(NONE, Ordering::Relaxed);
                current = NONE;
            }
        }
        if layer != current {
            return;
        }
        let mut payload = None;
        let seen = Seen { seq: packet.header.sequence_number, ts: packet.header.timestamp };
        let out = {
            let mut m = lock(&d.munger);
            if d.video {
                let mut copy = BytesMut::from(&packet.payload[..]);
                let out = m.rewrite(seen, Some(&mut copy[..]));
                payload = Some(copy.freeze());
                out
            } else {
                m.rewrite(seen, None)
            }
        };
        let Some(out) = out else { return };
        let payload: Bytes = payload.unwrap_or_else(|| packet.payload.clone());
        let len = payload.len() as u64;
        let header = rtp::header::Header {
            version: 2,
            marker: packet.header.marker,
            payload_type: if d.video { peer::VP8_PT } else { peer::OPUS_PT },
            sequence_number: out.seq,
            timestamp: out.ts,
            ssrc: d.ssrc,
            ..Default::default()
        };
        match d.tx.try_send(rtp::Packet { header, payload }) {
            Ok(()) => {
                self.stats.forwarded_packets.fetch_add(1, Ordering::Relaxed);
                self.stats.forwarded_bytes.fetch_add(len, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Asks a publisher for a keyframe of `layer`, at most every 300 ms per layer.
    fn keyframe(&self, source: &Source, layer: usize) {
        let Some(ssrc) = lock(&source.ssrcs).get(layer).copied().flatten() else { return };
        {
            let mut last = lock(&source.last_pli);
            let now = Instant::now();
            if last[layer].is_some_and(|t| now.duration_since(t) < Duration::from_millis(300)) {
                return;
            }
            last[layer] = Some(now);
        }
        self.stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        let remote = source.remote.clone();
        self.spawn(async move {
            let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc };
            let _ = remote.write_rtcp(vec![Box::new(pli)]).await;
        });
    }

    /// A receiver's reported loss (in 1/256): the gauge is the worst of the last
    /// [`LOSS_WINDOW_MS`], so it falls again once receivers stop losing packets.
    fn loss_reported(&self, fraction: u8) {
        let now = self.started.elapsed().as_millis() as u64;
        let since = self.stats.loss_since.load(Ordering::Relaxed);
        if now.saturating_sub(since) > LOSS_WINDOW_MS {
            self.stats.loss_since.store(now, Ordering::Relaxed);
            self.stats.loss_downstream.store(u64::from(fraction), Ordering::Relaxed);
        } else {
            self.stats.loss_downstream.fetch_max(u64::from(fraction), Ordering::Relaxed);
        }
    }

    /// The worst loss receivers reported in the last window (none reported: 0), in 1/256.
    fn recent_loss(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let since = self.stats.loss_since.load(Ordering::Relaxed);
        if now.saturating_sub(since) > 2 * LOSS_WINDOW_MS {
            0
        } else {
            self.stats.loss_downstream.load(Ordering::Relaxed)
        }
    }

    /// Where browsers reach the media server, for the TURN relay's policy; `None` when it
    /// takes any free port (then only a relay allowed to reach such addresses anyway reaches it).
    pub fn addresses(&self) -> Option<crate::addrs::MediaAddrs> {
        let ports = self.net.ports.range();
        (ports != (0, 0)).then(|| crate::addrs::MediaAddrs { ips: [Some(self.net.ip), self.net.public_ip], ports })
    }

    /// What `/metrics` and the admin page show.
    pub fn figures(&self) -> Figures {
        let calls: Vec<Arc<Call>> = lock(&self.calls).values().cloned().collect();
        let each: Vec<(RoomId, String, Vec<UserId>, u64)> = calls
            .iter()
            .map(|c| {
                let users = lock(&c.members).iter().map(|m| m.user.clone()).collect();
                (c.room.clone(), c.conf.clone(), users, c.started.elapsed().as_secs())
            })
            .collect();
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Figures {
            calls: each.len(),
            participants: each.iter().map(|e| e.2.len()).sum(),
            forwarded_packets: get(&s.forwarded_packets),
            forwarded_bytes: get(&s.forwarded_bytes),
            dropped_packets: get(&s.dropped_packets),
            keyframe_requests: get(&s.keyframe_requests),
            layer_switches: get(&s.layer_switches),
            forward_bps: get(&s.forward_bps),
            received_packets: get(&s.received_packets),
            lost_upstream: get(&s.lost_upstream),
            loss_downstream_percent: self.recent_loss() as f64 * 100.0 / 256.0,
            each,
        }
    }
}

/// A client's offer (`offer`) or answer, checked for size and parsed. Public for the
/// `ws_frame` fuzz target.
pub fn description(offer: bool, sdp: String) -> Result<RTCSessionDescription> {
    if sdp.len() > crate::calls::MAX_SDP {
        return Err(Error::TooLarge(format!("sdp must be at most {} bytes", crate::calls::MAX_SDP)));
    }
    let parsed = if offer { RTCSessionDescription::offer(sdp) } else { RTCSessionDescription::answer(sdp) };
    parsed.map_err(|e| Error::bad(format!("sdp: {e}")))
}

fn not_in_call() -> Error {
    Error::NotFound("you are not in this call".into())
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

/// Reads a receiver's feedback on one stream: keyframe requests go to the publisher's layer
/// the receiver gets; receiver reports give the loss.
async fn read_feedback(d: Arc<Down>, sfu: Weak<SfuInner>, gone: CancellationToken) {
    loop {
        let event = tokio::select! {
            _ = gone.cancelled() => return,
            e = d.local.poll() => e,
        };
        let Some(TrackLocalEvent::OnRtcpPacket(packets)) = event else { return };
        let Some(sfu) = sfu.upgrade().map(Sfu) else { return };
        for p in packets {
            let any = p.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                let layer = d.current.load(Ordering::Relaxed);
                if let (Some(s), true) = (d.source.upgrade(), layer != NONE) {
                    sfu.keyframe(&s, layer);
                }
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                for r in rr.reports.iter().filter(|r| r.ssrc == d.ssrc) {
                    sfu.loss_reported(r.fraction_lost);
                }
            }
        }
    }
}

/// Every [`TICK`] while the call runs: measures each layer's bitrate, chooses each receiver's
/// layers, and tells the participants who is speaking.
async fn tick_call(call: Weak<Call>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    let mut last = Instant::now();
    loop {
        let ended = match call.upgrade() {
            Some(c) => c.ended.clone(),
            None => return,
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                // The server stops: end everyone's media, so the call's tasks end too.
                if let Some(call) = call.upgrade()
                    && let Some(sfu) = call.sfu.upgrade().map(Sfu)
                {
                    sfu.end(&call).await;
                }
                return;
            }
            _ = ended.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(call) = call.upgrade() else { return };
        let Some(sfu) = call.sfu.upgrade().map(Sfu) else { return };
        let secs = last.elapsed().as_secs_f64().max(0.05);
        last = Instant::now();
        let members = lock(&call.members).clone();
        let sources: Vec<Arc<Source>> = members.iter().flat_map(|m| lock(&m.sources).clone()).collect();
        for s in &sources {
            for l in 0..LAYERS {
                let bytes = s.bytes[l].swap(0, Ordering::Relaxed);
                s.rates[l].store((bytes as f64 * 8.0 / secs) as u64, Ordering::Relaxed);
            }
        }
        choose_layers(&sfu, &members);
        announce_speakers(&call, &members, &sources);
    }
}

/// Picks, for every receiver, the layer of each video stream it gets: the one its tile asks for,
/// lowered while the receiver's streams together would exceed the bandwidth estimated towards
/// it (and its share of the server's total), and never one the publisher is not sending.
fn choose_layers(sfu: &Sfu, members: &[Arc<Member>]) {
    let forwarded = sfu.stats.forward_bps.load(Ordering::Relaxed);
    let squeeze = if forwarded > sfu.limits.forward_bps_total {
        sfu.limits.forward_bps_total as f64 / forwarded as f64
    } else {
        1.0
    };
    let mut total = 0u64;
    for m in members {
        let estimate = m.subscribe.estimate.load(Ordering::Relaxed);
        let cap = sfu.net.max_receive_bps;
        let mut budget = if estimate == 0 { cap } else { estimate.min(cap) };
        budget = (budget as f64 * squeeze) as u64;
        let mut downs: Vec<(Arc<Down>, Arc<Source>)> =
            lock(&m.downs).values().filter_map(|(d, _)| d.source.upgrade().map(|s| (d.clone(), s))).collect();
        // Audio first, then screens, then the largest tiles.
        downs.sort_by_key(|(d, s)| {
            (d.video, s.purpose != Purpose::Screen, std::cmp::Reverse(d.height.load(Ordering::Relaxed)))
        });
        for (d, s) in downs {
            let rate = |l: usize| s.rates[l].load(Ordering::Relaxed);
            if !d.video {
                budget = budget.saturating_sub(rate(0));
                total += rate(0);
                continue;
            }
            let asked = if s.purpose == Purpose::Screen {
                Some(LAYERS - 1)
            } else {
                forward::layer_for_height(d.height.load(Ordering::Relaxed) as u32)
            };
            let pick = asked.and_then(|top| {
                let sending: Vec<usize> = (0..=top).filter(|l| rate(*l) > 0).collect();
                sending.iter().rev().find(|l| rate(**l) <= budget).or(sending.first()).copied()
            });
            // A publisher not sending yet (or not simulcasting): its one layer.
            let pick = pick.or_else(|| asked.map(|_| (0..LAYERS).rfind(|l| lock(&s.ssrcs)[*l].is_some()).unwrap_or(0)));
            let new = pick.unwrap_or(NONE);
            if let Some(l) = pick {
                budget = budget.saturating_sub(rate(l));
                total += rate(l);
            }
            let old = d.want.swap(new, Ordering::Relaxed);
            if old != new && new != NONE && new != d.current.load(Ordering::Relaxed) {
                sfu.keyframe(&s, new);
            }
        }
    }
    sfu.stats.forward_bps.store(total, Ordering::Relaxed);
}

/// Loudness above which a participant counts as speaking.
const SPEAKING: u8 = 40;

fn announce_speakers(call: &Call, members: &[Arc<Member>], sources: &[Arc<Source>]) {
    let mut loud: Vec<(u8, &str)> = sources
        .iter()
        .filter(|s| s.purpose == Purpose::Audio)
        .map(|s| (s.level.load(Ordering::Relaxed), s.user.as_str()))
        .filter(|(l, _)| *l >= SPEAKING)
        .collect();
    loud.sort_by_key(|l| std::cmp::Reverse(l.0));
    let speakers: Vec<String> = loud.iter().take(3).map(|(_, u)| u.to_string()).collect();
    {
        let mut last = lock(&call.speakers);
        if *last == speakers {
            return;
        }
        *last = speakers.clone();
    }
    let frame =
        json!({ "t": "sfu_speakers", "room_id": call.room.as_str(), "conf_id": call.conf, "user_ids": speakers })
            .to_string();
    for m in members {
        let _ = m.out.try_send(frame.clone());
    }
}

/// Hands a connection's events to its participant (set once the participant exists).
struct Relay {
    member: std::sync::OnceLock<Weak<Member>>,
    sfu: Weak<SfuInner>,
}

#[async_trait::async_trait]
impl Events for Relay {
    async fn track(&self, track: Arc<dyn TrackRemote>) {
        let (Some(member), Some(sfu)) = (self.member.get().and_then(Weak::upgrade), self.sfu.upgrade().map(Sfu)) else {
            return;
        };
        // The handler runs on the connection's driver: forwarding gets its own task.
        sfu.clone().spawn(async move { sfu.published(member, track).await });
    }

    async fn gone(&self) {
        let (Some(member), Some(sfu)) = (self.member.get().and_then(Weak::upgrade), self.sfu.upgrade().map(Sfu)) else {
            return;
        };
        if let Some(call) = member.call.upgrade() {
            sfu.clone().spawn(async move { sfu.remove(&call, &member).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_checked_without_panicking() {
        for bad in ["", "v=0", "not sdp", "v=0\r\nm=video 9\r\n", "v=0\r\na=extmap:99999999999 x\r\n", "\u{0}\u{ffff}"]
        {
            let _ = description(true, bad.to_string());
            let _ = description(false, bad.to_string());
        }
        assert!(matches!(description(true, "v=0\r\n".repeat(6000)), Err(Error::TooLarge(_))));
    }
}
