// chat calls: WebRTC in the browser, signalling as room events over the live WebSocket.
//
// A call in a room is a conference (conf_id) of pairwise peer connections, a full mesh of at
// most 6 people. Whoever starts it rings the room's other members; whoever joins later sends
// non-ringing invites to everyone already in, who accept them automatically. The server checks
// every signal (only the parties of a call may move it along) and relays them on a priority lane.
// Media goes directly when it can, else through each side's own TURN relay (GET /api/v1/turn).

import { fragment } from './dom.js';

const MAX_PARTICIPANTS = 6;
// How long an invite rings. Tests shorten it (window.CHAT_CALL_LIFETIME_MS; the server accepts 5-120 s).
const LIFETIME_MS = Number(window.CHAT_CALL_LIFETIME_MS) || 45000;
const CANDIDATE_BATCH_MS = 80;

function randomId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function createCalls({ me, send, displayName, currentRoom }) {
  const party = randomId(); // this tab
  // Event ids handled: a signal can come twice (its priority `call` frame, then as an `event`
  // after a reconnect), never far apart, so the newest SEEN_MAX are enough.
  const seen = new Set();
  const SEEN_MAX = 512;
  const rosters = new Map(); // `${room} ${conf}` -> [user ids]
  const ringing = new Map(); // call_id -> { ev, room_id, timer }
  const peers = new Map(); // call_id -> Peer
  let conf = null; // { room_id, conf_id, media }
  let local = null; // MediaStream
  let screen = null; // MediaStream while sharing
  let ui = null;
  let ringTone = null;
  let statsTimer = null;
  let txn = 0;

  const signal = (room_id, type, content) =>
    send({ t: 'call', room_id, type, content: { ...content, party_id: party, version: '1' }, txn_id: `c${party}${txn++}` });

  // ---- ICE servers ---------------------------------------------------------------------
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

  // ---- local media ---------------------------------------------------------------------
  async function getLocal(media, devices) {
    if (local) return local;
    const want = {
      audio: devices && devices.audio ? { deviceId: { exact: devices.audio } } : true,
      video: media === 'voice' ? false : (devices && devices.video ? { deviceId: { exact: devices.video } } : true),
    };
    local = await navigator.mediaDevices.getUserMedia(want);
    return local;
  }

  function stopLocal() {
    for (const s of [local, screen]) if (s) for (const t of s.getTracks()) t.stop();
    local = null;
    screen = null;
  }

  // ---- peers ---------------------------------------------------------------------------
  async function newPeer(call_id, user, role) {
    const pc = new RTCPeerConnection(await rtcConfig());
    const peer = { call_id, user, role, pc, remoteParty: null, queued: [], outgoing: [], flush: null,
      answered: role === 'callee', timer: null, restarting: false, tile: null };
    peers.set(call_id, peer);
    for (const t of local.getTracks()) pc.addTrack(t, local);
    if (screen) replaceVideo(screen.getVideoTracks()[0]);
    pc.onicecandidate = (e) => {
      peer.outgoing.push(e.candidate ? e.candidate.toJSON() : { candidate: '' });
      if (!peer.flush) peer.flush = setTimeout(() => flushCandidates(peer), CANDIDATE_BATCH_MS);
    };
    pc.ontrack = (e) => {
      const tile = tileFor(peer);
      const video = tile.querySelector('video');
      if (video.srcObject !== e.streams[0]) video.srcObject = e.streams[0];
    };
    pc.oniceconnectionstatechange = () => {
      const s = pc.iceConnectionState;
      if (peer.tile) peer.tile.dataset.state = s;
      if (s === 'failed' || s === 'disconnected') scheduleRestart(peer);
    };
    tileFor(peer);
    return peer;
  }

  function flushCandidates(peer) {
    peer.flush = null;
    if (!peer.outgoing.length || !conf) return;
    const batch = peer.outgoing.splice(0, 64);
    signal(conf.room_id, 'm.call.candidates', { call_id: peer.call_id, candidates: batch });
    if (peer.outgoing.length) peer.flush = setTimeout(() => flushCandidates(peer), CANDIDATE_BATCH_MS);
  }

  // ICE restart after a network change: the caller renegotiates with fresh credentials.
  function scheduleRestart(peer) {
    if (peer.restarting || !peer.answered) return;
    peer.restarting = true;
    setTimeout(async () => {
      peer.restarting = false;
      const s = peer.pc.iceConnectionState;
      if (!peers.has(peer.call_id) || (s !== 'failed' && s !== 'disconnected')) return;
      if (peer.role !== 'caller') return; // the caller drives the restart
      try {
        const offer = await peer.pc.createOffer({ iceRestart: true });
        await peer.pc.setLocalDescription(offer);
        signal(conf.room_id, 'm.call.negotiate', { call_id: peer.call_id, description: { type: offer.type, sdp: offer.sdp } });
      } catch (e) { console.warn('chat: ICE restart failed', e); }
    }, peer.pc.iceConnectionState === 'failed' ? 0 : 3000);
  }

  async function addRemoteCandidates(peer, list) {
    for (const c of list) {
      if (!c.candidate) continue;
      if (!peer.pc.remoteDescription) { peer.queued.push(c); continue; }
      try { await peer.pc.addIceCandidate(c); } catch (e) { console.warn('chat: bad candidate', e); }
    }
  }

  async function drainQueued(peer) {
    const q = peer.queued.splice(0);
    await addRemoteCandidates(peer, q);
  }

  function closePeer(call_id) {
    const peer = peers.get(call_id);
    if (!peer) return;
    peers.delete(call_id);
    clearTimeout(peer.timer);
    clearTimeout(peer.flush);
    try { peer.pc.close(); } catch { /* already closed */ }
    if (peer.tile) peer.tile.remove();
    if (conf && peers.size === 0) endCall(false);
  }

  function peerWith(user) {
    for (const p of peers.values()) if (p.user === user) return p;
    return null;
  }

  // Sends an invite to `user` as part of the current conference.
  async function inviteTo(user, ring) {
    if (!conf || peerWith(user) || user === me) return;
    const call_id = randomId();
    const peer = await newPeer(call_id, user, 'caller');
    const offer = await peer.pc.createOffer();
    await peer.pc.setLocalDescription(offer);
    signal(conf.room_id, 'm.call.invite', {
      call_id, lifetime: LIFETIME_MS, invitee: user, offer: { type: offer.type, sdp: offer.sdp },
      'chat.media': conf.media, 'chat.conf_id': conf.conf_id, 'chat.ring': ring,
    });
    peer.timer = setTimeout(() => {
      if (peers.has(call_id) && !peer.answered) {
        signal(conf.room_id, 'm.call.hangup', { call_id, reason: 'invite_timeout' });
        setStatus(`${displayName(user)} did not answer`);
        closePeer(call_id);
      }
    }, LIFETIME_MS);
  }

  // ---- conference lifecycle ------------------------------------------------------------
  async function startCall(room_id, media) {
    if (conf) return;
    const res = await fetch(`/api/v1/rooms/${encodeURIComponent(room_id)}/members`, { credentials: 'same-origin' });
    if (!res.ok) { alertUser('Could not load the members of this room.'); return; }
    const members = (await res.json()).members.filter((m) => m.membership === 'join' && m.user_id !== me);
    if (!members.length) { alertUser('Nobody else is in this room to call.'); return; }
    if (members.length + 1 > MAX_PARTICIPANTS) {
      alertUser(`Calls hold at most ${MAX_PARTICIPANTS} people; this room has ${members.length + 1}.`);
      return;
    }
    if (!(await enter(room_id, randomId(), media))) return;
    setStatus('Ringing…');
    for (const m of members) await inviteTo(m.user_id, true);
  }

  // Joins a call already running in the room: everyone in it gets a non-ringing invite.
  async function joinCall(room_id, conf_id, media) {
    if (conf) return;
    if (!(await enter(room_id, conf_id, media || 'video'))) return;
    for (const u of rosters.get(`${room_id} ${conf_id}`) || []) await inviteTo(u, false);
  }

  async function enter(room_id, conf_id, media) {
    try { await getLocal(media); } catch (e) {
      alertUser(`Camera or microphone unavailable: ${e.message}`);
      return false;
    }
    conf = { room_id, conf_id, media };
    send({ t: 'call_join', room_id, conf_id });
    showCallUi();
    return true;
  }

  function endCall(sendHangups) {
    if (!conf) return;
    const c = conf;
    for (const p of Array.from(peers.values())) {
      if (sendHangups) signal(c.room_id, 'm.call.hangup', { call_id: p.call_id, reason: 'user_hangup' });
      peers.delete(p.call_id);
      clearTimeout(p.timer);
      clearTimeout(p.flush);
      try { p.pc.close(); } catch { /* closed */ }
    }
    send({ t: 'call_leave', room_id: c.room_id, conf_id: c.conf_id });
    conf = null;
    stopLocal();
    hideCallUi();
  }

  // ---- incoming ------------------------------------------------------------------------
  async function accept(call_id) {
    const r = ringing.get(call_id);
    if (!r) return;
    stopRinging(call_id);
    const c = r.ev.content;
    if (conf && conf.conf_id !== c['chat.conf_id']) endCall(true);
    if (!conf && !(await enter(r.room_id, c['chat.conf_id'] || randomId(), c['chat.media'] || 'video'))) {
      signal(r.room_id, 'm.call.reject', { call_id });
      return;
    }
    await answerInvite(r.ev);
    // Everyone else already in the conference gets an invite from us (they accept it).
    for (const u of rosters.get(`${conf.room_id} ${conf.conf_id}`) || []) {
      if (u !== r.ev.sender) await inviteTo(u, false);
    }
  }

  async function answerInvite(ev) {
    const c = ev.content;
    const peer = await newPeer(c.call_id, ev.sender, 'callee');
    peer.remoteParty = c.party_id;
    await peer.pc.setRemoteDescription(c.offer);
    const q = early.get(c.call_id);
    early.delete(c.call_id);
    if (q) await addRemoteCandidates(peer, q);
    await drainQueued(peer);
    const answer = await peer.pc.createAnswer();
    await peer.pc.setLocalDescription(answer);
    signal(conf.room_id, 'm.call.answer', { call_id: c.call_id, answer: { type: answer.type, sdp: answer.sdp } });
    setStatus('');
  }

  function decline(call_id) {
    const r = ringing.get(call_id);
    if (!r) return;
    stopRinging(call_id);
    early.delete(call_id);
    signal(r.room_id, 'm.call.reject', { call_id });
  }

  // Candidates that arrive before we answer (ringing) are kept for when we do.
  const early = new Map(); // call_id -> [candidates]

  async function onInvite(ev, room_id) {
    const c = ev.content;
    if (c.invitee !== me) return;
    if (ev.origin_server_ts + c.lifetime < Date.now() - 5000) return; // stale, from a catch-up
    // The caller's candidates may arrive before we answer: keep them for this call.
    if (!early.has(c.call_id)) early.set(c.call_id, []);
    const inMyConf = conf && c['chat.conf_id'] && c['chat.conf_id'] === conf.conf_id;
    if (inMyConf && !c['chat.ring']) {
      const mine = peerWith(ev.sender);
      if (mine) {
        // Both invited each other at once: the invite from the smaller user id wins.
        if (ev.sender > me) return;
        if (mine.role === 'caller' && !mine.answered) {
          signal(conf.room_id, 'm.call.hangup', { call_id: mine.call_id, reason: 'user_hangup' });
          peers.delete(mine.call_id);
          try { mine.pc.close(); } catch { /* closed */ }
          if (mine.tile) mine.tile.remove();
        } else return;
      }
      await answerInvite(ev);
      return;
    }
    if (conf && conf.conf_id !== c['chat.conf_id'] && !c['chat.ring']) return;
    const timer = setTimeout(() => { stopRinging(c.call_id); early.delete(c.call_id); }, Math.max(0, ev.origin_server_ts + c.lifetime - Date.now()));
    ringing.set(c.call_id, { ev, room_id, timer });
    showRinging(c.call_id, ev);
  }

  // ---- signals -------------------------------------------------------------------------
  async function onSignal(f) {
    const ev = f.event;
    if (seen.has(ev.event_id)) return;
    seen.add(ev.event_id);
    if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
    const c = ev.content || {};
    const fromThisTab = ev.sender === me && c.party_id === party;
    if (fromThisTab) return;
    const peer = peers.get(c.call_id);
    switch (ev.type) {
      case 'm.call.invite': await onInvite(ev, f.room_id); break;
      case 'm.call.answer':
        if (ev.sender === me) { stopRinging(c.call_id); early.delete(c.call_id); break; } // answered on another tab
        if (peer && peer.role === 'caller' && !peer.answered) {
          peer.answered = true;
          peer.remoteParty = c.party_id;
          clearTimeout(peer.timer);
          await peer.pc.setRemoteDescription(c.answer);
          await drainQueued(peer);
          signal(conf.room_id, 'm.call.select_answer', { call_id: c.call_id, selected_party_id: c.party_id });
          setStatus('');
        }
        break;
      case 'm.call.candidates':
        if (ev.sender === me) break;
        if (peer) await addRemoteCandidates(peer, c.candidates || []);
        else if (early.has(c.call_id)) early.get(c.call_id).push(...(c.candidates || []).slice(0, 64));
        break;
      case 'm.call.select_answer':
        if (peer && peer.role === 'callee' && c.selected_party_id !== party) closePeer(c.call_id);
        break;
      case 'm.call.negotiate':
        if (!peer || ev.sender === me) break;
        await peer.pc.setRemoteDescription(c.description);
        if (c.description.type === 'offer') {
          const answer = await peer.pc.createAnswer();
          await peer.pc.setLocalDescription(answer);
          signal(conf.room_id, 'm.call.negotiate', { call_id: c.call_id, description: { type: answer.type, sdp: answer.sdp } });
        }
        break;
      case 'm.call.reject':
        stopRinging(c.call_id);
        early.delete(c.call_id);
        if (peer && ev.sender !== me) {
          setStatus(`${displayName(ev.sender)} declined`);
          closePeer(c.call_id);
        }
        break;
      case 'm.call.hangup':
        stopRinging(c.call_id);
        early.delete(c.call_id);
        if (peer) closePeer(c.call_id);
        break;
      default: break;
    }
  }

  // Who is in each of a room's calls, and the room's call bar as the server rendered it.
  function onRoster(f) {
    setRosters(f.room_id, f.calls);
    // Someone whose tab vanished is dropped from the mesh once their media stops too (a
    // reconnecting WebSocket alone does not end a call).
    if (conf && conf.room_id === f.room_id) {
      const users = rosters.get(`${conf.room_id} ${conf.conf_id}`) || [];
      for (const p of Array.from(peers.values())) {
        const s = p.pc.iceConnectionState;
        if (p.answered && !users.includes(p.user) && s !== 'connected' && s !== 'completed') closePeer(p.call_id);
      }
    }
    const bar = document.getElementById('callbar');
    if (bar && f.room_id === currentRoom) bar.replaceWith(fragment(f.html));
    showJoinButtons();
  }

  function setRosters(room_id, calls) {
    for (const key of Array.from(rosters.keys())) if (key.startsWith(`${room_id} `)) rosters.delete(key);
    for (const c of calls) rosters.set(`${room_id} ${c.conf_id}`, c.user_ids);
  }

  // ---- UI ------------------------------------------------------------------------------
  function alertUser(text) {
    setStatus(text);
    if (!ui) window.alert(text);
  }

  function setStatus(text) {
    if (ui) ui.status.textContent = text;
  }

  function startTone() {
    if (ringTone) return;
    try {
      const ctx = new AudioContext();
      const gain = ctx.createGain();
      gain.gain.value = 0;
      gain.connect(ctx.destination);
      const osc = ctx.createOscillator();
      osc.frequency.value = 480;
      osc.connect(gain);
      osc.start();
      let on = false;
      const beat = setInterval(() => { on = !on; gain.gain.value = on ? 0.08 : 0; }, 800);
      ringTone = { ctx, beat };
    } catch { /* no audio: the visual ring remains */ }
  }

  function stopTone() {
    if (!ringTone) return;
    clearInterval(ringTone.beat);
    ringTone.ctx.close();
    ringTone = null;
  }

  function showRinging(call_id, ev) {
    let box = document.getElementById('ringing');
    if (!box) {
      box = el('div', 'ringing');
      box.id = 'ringing';
      box.setAttribute('role', 'alertdialog');
      box.setAttribute('aria-label', 'Incoming call');
      document.body.appendChild(box);
    }
    const row = el('div', 'ring');
    row.dataset.callId = call_id;
    const media = ev.content['chat.media'] === 'voice' ? 'voice' : 'video';
    row.appendChild(el('span', 'who', `${displayName(ev.sender)} is calling (${media})`));
    const yes = el('button', 'accept', 'Accept');
    yes.addEventListener('click', () => accept(call_id));
    const no = el('button', 'decline', 'Decline');
    no.addEventListener('click', () => decline(call_id));
    row.append(yes, no);
    box.appendChild(row);
    startTone();
  }

  function stopRinging(call_id) {
    const r = ringing.get(call_id);
    if (!r) return;
    clearTimeout(r.timer);
    ringing.delete(call_id);
    const row = document.querySelector(`#ringing .ring[data-call-id="${CSS.escape(call_id)}"]`);
    if (row) row.remove();
    if (!ringing.size) {
      stopTone();
      const box = document.getElementById('ringing');
      if (box) box.remove();
    }
  }

  function tileFor(peer) {
    if (peer.tile) return peer.tile;
    const tile = el('figure', 'tile');
    tile.dataset.user = peer.user;
    const video = el('video');
    video.autoplay = true;
    video.playsInline = true;
    const cap = el('figcaption');
    cap.append(el('span', 'name', displayName(peer.user)), el('span', 'quality'));
    tile.append(video, cap);
    peer.tile = tile;
    if (ui) ui.grid.appendChild(tile);
    return tile;
  }

  function button(label, cls, onClick) {
    const b = el('button', cls, label);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  function showCallUi() {
    if (ui) return;
    const root = el('section', 'call');
    root.id = 'call';
    root.setAttribute('aria-label', 'Call');
    const grid = el('div', 'grid');
    const self = el('figure', 'tile self');
    const selfVideo = el('video');
    selfVideo.autoplay = true;
    selfVideo.muted = true;
    selfVideo.playsInline = true;
    selfVideo.srcObject = local;
    self.append(selfVideo, el('figcaption', '', 'You'));
    grid.appendChild(self);
    const status = el('p', 'status');
    status.setAttribute('aria-live', 'polite');
    const bar = el('div', 'controls');
    const mute = button('Mute', 'mute', () => {
      const t = local && local.getAudioTracks()[0];
      if (!t) return;
      t.enabled = !t.enabled;
      mute.textContent = t.enabled ? 'Mute' : 'Unmute';
      mute.setAttribute('aria-pressed', String(!t.enabled));
    });
    const cam = button('Camera off', 'camera', () => {
      const t = local && local.getVideoTracks()[0];
      if (!t) return;
      t.enabled = !t.enabled;
      cam.textContent = t.enabled ? 'Camera off' : 'Camera on';
      cam.setAttribute('aria-pressed', String(!t.enabled));
    });
    const share = button('Share screen', 'share', () => toggleShare(share));
    const devices = el('select', 'devices');
    devices.setAttribute('aria-label', 'Camera and microphone');
    devices.addEventListener('change', () => switchDevice(devices.value));
    const hang = button('Hang up', 'hangup', () => endCall(true));
    bar.append(mute, cam, share, devices, hang);
    root.append(grid, status, bar);
    document.body.appendChild(root);
    ui = { root, grid, status, devices };
    for (const p of peers.values()) if (p.tile) grid.appendChild(p.tile);
    listDevices();
    statsTimer = setInterval(updateQuality, 2000);
  }

  function hideCallUi() {
    clearInterval(statsTimer);
    if (ui) ui.root.remove();
    ui = null;
    showJoinButtons();
  }

  async function listDevices() {
    if (!ui) return;
    const list = await navigator.mediaDevices.enumerateDevices();
    ui.devices.replaceChildren();
    for (const d of list.filter((x) => x.kind === 'videoinput' || x.kind === 'audioinput')) {
      const o = el('option', '', `${d.kind === 'videoinput' ? 'Camera' : 'Mic'}: ${d.label || d.deviceId.slice(0, 8)}`);
      o.value = `${d.kind}|${d.deviceId}`;
      ui.devices.appendChild(o);
    }
  }

  async function switchDevice(value) {
    const [kind, deviceId] = value.split('|');
    const constraints = kind === 'videoinput' ? { video: { deviceId: { exact: deviceId } } } : { audio: { deviceId: { exact: deviceId } } };
    const s = await navigator.mediaDevices.getUserMedia(constraints);
    const track = s.getTracks()[0];
    const old = local.getTracks().find((t) => t.kind === track.kind);
    if (old) { local.removeTrack(old); old.stop(); }
    local.addTrack(track);
    for (const p of peers.values()) {
      const sender = p.pc.getSenders().find((x) => x.track && x.track.kind === track.kind);
      if (sender) await sender.replaceTrack(track);
    }
  }

  function replaceVideo(track) {
    for (const p of peers.values()) {
      const sender = p.pc.getSenders().find((x) => x.track && x.track.kind === 'video');
      if (sender) sender.replaceTrack(track);
    }
  }

  async function toggleShare(btn) {
    if (screen) {
      for (const t of screen.getTracks()) t.stop();
      screen = null;
      const cam = local && local.getVideoTracks()[0];
      if (cam) replaceVideo(cam);
      btn.textContent = 'Share screen';
      return;
    }
    try {
      screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    } catch { return; }
    const track = screen.getVideoTracks()[0];
    track.onended = () => { if (screen) toggleShare(btn); };
    replaceVideo(track);
    btn.textContent = 'Stop sharing';
  }

  // Connection quality per remote tile, from getStats(): round-trip time and packet loss.
  async function updateQuality() {
    for (const p of peers.values()) {
      if (!p.tile) continue;
      const s = await peerStats(p);
      const q = p.tile.querySelector('.quality');
      let level = 'unknown';
      if (s.rtt !== null) level = s.rtt < 0.15 && s.lossRate < 0.02 ? 'good' : s.rtt < 0.4 && s.lossRate < 0.08 ? 'fair' : 'poor';
      q.dataset.level = level;
      q.textContent = level === 'unknown' ? '' : level;
      q.title = s.rtt === null ? 'connecting' : `round trip ${Math.round(s.rtt * 1000)} ms, loss ${(s.lossRate * 100).toFixed(1)} %`;
    }
  }

  async function peerStats(p) {
    const out = { user: p.user, framesDecoded: 0, bytesReceived: 0, packetsLost: 0, packetsReceived: 0,
      rtt: null, lossRate: 0, localType: null, remoteType: null, state: p.pc.iceConnectionState };
    const report = await p.pc.getStats();
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

  // The room's call bar (rendered by the server): a call's Join button shows while this tab is
  // in no call and its user not in that one.
  function showJoinButtons() {
    for (const b of document.querySelectorAll('#callbar button.join')) {
      const users = rosters.get(`${currentRoom} ${b.dataset.confId}`) || [];
      b.hidden = !!conf || users.includes(me);
    }
  }

  function loadRenderedRosters() {
    const bar = document.getElementById('callbar');
    if (!bar || !bar.dataset.rosters) return;
    try { setRosters(currentRoom, JSON.parse(bar.dataset.rosters)); } catch { /* a fresh roster frame follows */ }
    showJoinButtons();
  }

  function setupButtons() {
    for (const b of document.querySelectorAll('button[data-call]')) {
      b.addEventListener('click', () => startCall(b.dataset.roomId, b.dataset.call));
    }
    document.addEventListener('click', (e) => {
      const join = e.target.closest('#callbar button.join');
      if (join) joinCall(currentRoom, join.dataset.confId, 'video');
    });
  }

  // After a reconnect the server sends the roster of every running call again; drop what we
  // knew (and empty the call bar), and put this tab back into its call (the roster lost it
  // when the old socket closed).
  function onReady() {
    rosters.clear();
    if (conf) send({ t: 'call_join', room_id: conf.room_id, conf_id: conf.conf_id });
    const bar = document.getElementById('callbar');
    if (bar) { bar.replaceChildren(); bar.hidden = true; }
  }

  loadRenderedRosters();
  setupButtons();

  const api = {
    onSignal, onRoster, onReady, startCall, joinCall, accept, decline, hangup: () => endCall(true),
    get active() { return conf; },
    get ringing() { return Array.from(ringing.keys()); },
    async stats() { return Promise.all(Array.from(peers.values()).map(peerStats)); },
    // The video track label each connection sends (camera or screen), for tests and diagnostics.
    senderLabels() {
      return Array.from(peers.values()).map((p) => {
        const s = p.pc.getSenders().find((x) => x.track && x.track.kind === 'video');
        return s ? s.track.label : null;
      });
    },
  };
  return api;
}
