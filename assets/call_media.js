// Call media: the camera and microphone, screen sharing, one RTCPeerConnection per person
// (ICE servers from GET /api/v1/turn) and what getStats() says about a connection. Through the
// media server, `connections()` is the one publish connection.

// `shareTo()`: where a screen goes as a track of its own (the media server session's
// `share(track, stream)`), or null: then it replaces the camera on `connections()`.
export function createMedia({ connections, shareTo }) {
  let local = null; // MediaStream
  let screen = null; // MediaStream while sharing

  // Our TURN relay with short-lived credentials; without one, direct connections only.
  async function rtcConfig() {
    const cfg = { iceServers: [] };
    try {
      const res = await fetch('/api/v1/turn', { credentials: 'same-origin' });
      if (res.ok) {
        const s = await res.json();
        cfg.iceServers.push({ urls: s.urls, username: s.username, credential: s.credential });
      }
    } catch { /* no relay: direct connections only */ }
    if (window.CHAT_FORCE_RELAY) cfg.iceTransportPolicy = 'relay';
    return cfg;
  }

  async function open(media, devices) {
    if (local) return local;
    const want = {
      audio: devices && devices.audio ? { deviceId: { exact: devices.audio } } : true,
      video: media === 'voice' ? false : (devices && devices.video ? { deviceId: { exact: devices.video } } : true),
    };
    local = await navigator.mediaDevices.getUserMedia(want);
    return local;
  }

  function stop() {
    for (const s of [local, screen]) if (s) for (const t of s.getTracks()) t.stop();
    local = null;
    screen = null;
  }

  // A connection sending our tracks (the screen instead of the camera while sharing).
  async function connect() {
    const pc = new RTCPeerConnection(await rtcConfig());
    for (const t of local.getTracks()) pc.addTrack(t, local);
    if (screen) {
      const sender = videoSender(pc);
      if (sender) sender.replaceTrack(screen.getVideoTracks()[0]);
    }
    return pc;
  }

  function videoSender(pc) {
    return pc.getSenders().find((x) => x.track && x.track.kind === 'video');
  }

  // Sends `track` instead of the video sent now, on every connection; resolves when done.
  function replaceVideo(track) {
    const senders = connections().map(videoSender).filter(Boolean);
    return Promise.all(senders.map((s) => s.replaceTrack(track).catch((e) => console.warn('chat: call: video not replaced', e))));
  }

  // Turns our microphone (`audio`) or camera (`video`) on or off: its new state, or null
  // without such a track.
  function toggle(kind) {
    const t = local && (kind === 'audio' ? local.getAudioTracks() : local.getVideoTracks())[0];
    if (!t) return null;
    t.enabled = !t.enabled;
    return t.enabled;
  }

  async function inputs() {
    const list = await navigator.mediaDevices.enumerateDevices();
    return list.filter((x) => x.kind === 'videoinput' || x.kind === 'audioinput');
  }

  async function switchDevice(kind, deviceId) {
    const constraints = kind === 'videoinput' ? { video: { deviceId: { exact: deviceId } } } : { audio: { deviceId: { exact: deviceId } } };
    const s = await navigator.mediaDevices.getUserMedia(constraints);
    const track = s.getTracks()[0];
    const old = local.getTracks().find((t) => t.kind === track.kind);
    if (old) { local.removeTrack(old); old.stop(); }
    local.addTrack(track);
    for (const pc of connections()) {
      const sender = pc.getSenders().find((x) => x.track && x.track.kind === track.kind);
      if (sender) await sender.replaceTrack(track);
    }
  }

  // Whether our microphone sends (null: no microphone).
  function micOn() {
    const t = local && local.getAudioTracks()[0];
    return t ? t.enabled : null;
  }

  // Starts or stops sending the screen (beside the camera through the media server, instead of
  // it person to person); `onChange(sharing)` after each.
  async function toggleShare(onChange) {
    const own = shareTo ? shareTo() : null;
    if (screen) {
      for (const t of screen.getTracks()) t.stop();
      screen = null;
      const cam = local && local.getVideoTracks()[0];
      if (own) await own(null, null);
      else if (cam) await replaceVideo(cam);
      onChange(false);
      return;
    }
    try {
      screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    } catch { return; }
    const track = screen.getVideoTracks()[0];
    track.onended = () => { if (screen) toggleShare(onChange); };
    if (own) await own(track, screen);
    else await replaceVideo(track);
    onChange(true);
  }

  // What a connection receives and how: frames, bytes, loss, round-trip time, candidate types.
  async function stats(pc) {
    const out = { framesDecoded: 0, bytesReceived: 0, packetsLost: 0, packetsReceived: 0,
      rtt: null, lossRate: 0, localType: null, remoteType: null, state: pc.iceConnectionState };
    const report = await pc.getStats();
    let pairId = null;
    report.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
    report.forEach((r) => {
      if (r.type === 'inbound-rtp') {
        if (r.kind === 'video') out.framesDecoded += r.framesDecoded || 0;
        out.bytesReceived += r.bytesReceived || 0;
        out.packetsLost += r.packetsLost || 0;
        out.packetsReceived += r.packetsReceived || 0;
      }
    });
    const pair = pairId && report.get(pairId);
    if (pair) {
      out.rtt = pair.currentRoundTripTime ?? null;
      const l = report.get(pair.localCandidateId);
      const rm = report.get(pair.remoteCandidateId);
      out.localType = l ? l.candidateType : null;
      out.remoteType = rm ? rm.candidateType : null;
    }
    const total = out.packetsLost + out.packetsReceived;
    out.lossRate = total ? out.packetsLost / total : 0;
    return out;
  }

  // The label of the video track a connection sends (camera or screen).
  function sentVideoLabel(pc) {
    const s = videoSender(pc);
    return s ? s.track.label : null;
  }

  return {
    open, stop, connect, toggle, micOn, inputs, switchDevice, toggleShare, stats, sentVideoLabel, config: rtcConfig,
    get local() { return local; },
  };
}
