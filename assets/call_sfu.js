// A room call through the server's media server (SFU). This tab sends its microphone and camera
// once, to the server, on a "publish" connection: the camera in three simulcast layers
// (quarter, half and full resolution). It receives everyone else on a "subscribe" connection
// that the server offers and re-offers as people come and go. The server picks which layer of
// each camera to send from the size of the tile showing it (sfu_show) and the bandwidth it
// estimates towards us; it names the speakers (sfu_speakers). Signalling is the live socket:
// sfu_publish / sfu_answer out, sfu_answer / sfu_offer / sfu_speakers in.

// Quarter, half and full resolution. Chrome drops the layers its input is too small for.
const ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: 'f', maxBitrate: 1500000 },
];
// A tile's height is told again when it changes by more than this fraction.
const RESIZE_STEP = 0.2;

// Waits until a connection has gathered its candidates (at most 3 s): descriptions carry
// them, so no candidates are trickled.
function gathered(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') { resolve(); return; }
    const timer = setTimeout(done, 3000);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() { if (pc.iceGatheringState === 'complete') done(); }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

export function createSfuSession({ room_id, conf_id, send, media, ui }) {
  let pub = null;
  let sub = null;
  let tracks = {}; // track id -> { user_id, purpose, stream_id }, from the last offer
  const tiles = new Map(); // stream id -> { tile, user, stream, height }
  let closed = false;
  let queue = Promise.resolve(); // frames are handled one at a time, in order
  let screen = null; // the sender of our screen, while sharing

  const resize = new ResizeObserver((entries) => {
    for (const e of entries) {
      const t = e.target.closest('.tile');
      const entry = t && tiles.get(t.dataset.stream);
      if (entry) tell(entry, Math.round(e.contentRect.height * (window.devicePixelRatio || 1)));
    }
  });

  // Tells the server how high a stream is shown (0: hidden), when it changed enough.
  function tell(entry, height) {
    const old = entry.height;
    if (old !== null && (height === old || (old > 0 && height > 0 && Math.abs(height - old) / old < RESIZE_STEP))) return;
    entry.height = height;
    send({ t: 'sfu_show', room_id, conf_id, stream_id: entry.id, height });
  }

  async function start() {
    const cfg = await media.config();
    pub = new RTCPeerConnection(cfg);
    sub = new RTCPeerConnection(cfg);
    const local = media.local;
    for (const t of local.getAudioTracks()) pub.addTransceiver(t, { direction: 'sendonly', streams: [local] });
    for (const t of local.getVideoTracks()) {
      pub.addTransceiver(t, { direction: 'sendonly', streams: [local], sendEncodings: ENCODINGS.map((e) => ({ ...e })) });
    }
    sub.ontrack = onTrack;
    for (const pc of [pub, sub]) {
      pc.oniceconnectionstatechange = () => {
        if (pc.iceConnectionState === 'failed') ui.status('The connection to the call was lost');
      };
    }
    await publish();
  }

  // Offers the publish connection as it is (camera, microphone, and the screen while sharing).
  async function publish() {
    const offer = await pub.createOffer();
    await pub.setLocalDescription(offer);
    await gathered(pub);
    if (closed) return;
    const screens = screen && screen.track ? [screen.track.id] : [];
    send({ t: 'sfu_publish', room_id, conf_id, sdp: pub.localDescription.sdp, screens });
  }

  // Sends our screen as a track of its own (the others get a tile for it), or stops (null).
  function share(track, stream) {
    queue = queue.then(async () => {
      if (closed || !pub) return;
      if (track) screen = pub.addTrack(track, stream);
      else if (screen) { pub.removeTrack(screen); screen = null; }
      await publish();
    }).catch((e) => console.warn('chat: call: screen', e));
    return queue;
  }

  // A track the server sends, known by its stream (a transceiver the server reuses for someone
  // new keeps its first track id, but carries the new stream id).
  function onTrack(e) {
    const sid = e.streams[0] && e.streams[0].id;
    const audio = e.track.kind === 'audio';
    const info = Object.values(tracks).find((t) => t.stream_id === sid && (t.purpose === 'audio') === audio);
    if (!info || closed) return;
    let entry = tiles.get(info.stream_id);
    if (!entry) {
      const tile = ui.tile(info.user_id, info.purpose === 'screen');
      tile.dataset.stream = info.stream_id;
      entry = { id: info.stream_id, tile, user: info.user_id, stream: new MediaStream(), height: null };
      tiles.set(info.stream_id, entry);
      const video = tile.querySelector('video');
      if (video) resize.observe(video);
    }
    for (const old of entry.stream.getTracks()) if (old.kind === e.track.kind && old !== e.track) entry.stream.removeTrack(old);
    if (!entry.stream.getTracks().includes(e.track)) entry.stream.addTrack(e.track);
    ui.play(entry.tile, entry.stream);
    ui.status('');
  }

  // Drops the tiles of streams the last offer no longer carries (people who left).
  function prune() {
    const live = new Set(Object.values(tracks).map((t) => t.stream_id));
    for (const [id, entry] of tiles) {
      if (live.has(id)) continue;
      // A reused track moved to someone else's tile: stop it playing here.
      for (const t of entry.stream.getTracks()) entry.stream.removeTrack(t);
      const video = entry.tile.querySelector('video');
      if (video) resize.unobserve(video);
      entry.tile.remove();
      tiles.delete(id);
    }
    ui.layout();
  }

  const seen = []; // the frames' types, for diagnostics
  async function handle(f) {
    seen.push(f.t);
    if (closed || f.room_id !== room_id || f.conf_id !== conf_id) return;
    switch (f.t) {
      case 'sfu_answer':
        await pub.setRemoteDescription({ type: 'answer', sdp: f.sdp });
        ui.status(tiles.size ? '' : 'Waiting for others to join…');
        ui.connected();
        break;
      case 'sfu_offer': {
        tracks = f.tracks || {};
        await sub.setRemoteDescription({ type: 'offer', sdp: f.sdp });
        const answer = await sub.createAnswer();
        await sub.setLocalDescription(answer);
        await gathered(sub);
        if (closed) return;
        send({ t: 'sfu_answer', room_id, conf_id, sdp: sub.localDescription.sdp });
        prune();
        break;
      }
      case 'sfu_speakers': ui.speakers(f.user_ids || []); break;
      default: break;
    }
  }

  function onFrame(f) {
    queue = queue.then(() => handle(f)).catch((e) => console.warn('chat: call', e));
    return queue;
  }

  function close() {
    closed = true;
    resize.disconnect();
    for (const pc of [pub, sub]) if (pc) pc.close();
    for (const entry of tiles.values()) entry.tile.remove();
    tiles.clear();
  }

  // Per person: the video frames decoded and bytes received of their camera, and the kind of
  // candidates the subscribe connection uses (tests and the quality badge).
  async function stats() {
    if (!sub) return [];
    const report = await sub.getStats();
    let pairId = null;
    report.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
    const pair = pairId && report.get(pairId);
    const l = pair && report.get(pair.localCandidateId);
    const rm = pair && report.get(pair.remoteCandidateId);
    const out = [];
    for (const entry of tiles.values()) {
      const ids = new Set(entry.stream.getTracks().map((t) => t.id));
      const s = { user: entry.user, framesDecoded: 0, videoBytes: 0, bytesReceived: 0, packetsLost: 0, packetsReceived: 0,
        frameHeight: 0, rtt: pair ? pair.currentRoundTripTime ?? null : null, lossRate: 0,
        localType: l ? l.candidateType : null, remoteType: rm ? rm.candidateType : null, state: sub.iceConnectionState };
      report.forEach((r) => {
        if (r.type !== 'inbound-rtp' || !ids.has(r.trackIdentifier)) return;
        if (r.kind === 'video') { s.framesDecoded += r.framesDecoded || 0; s.frameHeight = r.frameHeight || 0; s.videoBytes += r.bytesReceived || 0; }
        s.bytesReceived += r.bytesReceived || 0;
        s.packetsLost += r.packetsLost || 0;
        s.packetsReceived += r.packetsReceived || 0;
      });
      const total = s.packetsLost + s.packetsReceived;
      s.lossRate = total ? s.packetsLost / total : 0;
      out.push(s);
    }
    return out;
  }

  // What the session went through, for diagnostics.
  function debug() {
    const st = (pc) => pc && { signaling: pc.signalingState, ice: pc.iceConnectionState, conn: pc.connectionState };
    return { seen, tracks, tiles: tiles.size, pub: st(pub), sub: st(sub),
      receivers: sub ? sub.getReceivers().map((r) => r.track.id) : [] };
  }

  return {
    room_id, conf_id, start, onFrame, close, stats, debug, share,
    get publish() { return pub; },
    tiles() { return Array.from(tiles.values(), (e) => e.tile); },
  };
}
