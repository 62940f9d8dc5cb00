// Call signalling: calls as room events over the live socket. Builds and sends the signals
// (invites, answers, candidates in batches, hangups), reads each one once, rings, and keeps
// the rooms' call rosters. The conference is here; each of its peer connections is a
// call_peer.js, their media comes from call_media.js and what is shown from call_ui.js.
//
// A call in a room of three or more people goes through the server's media server when it runs
// one (call_sfu.js; its conference ids start with "sfu-"): whoever starts it is in it, the
// others see the room's call bar and join from there. One server holds a room's calls, the
// room's call host: when another server hosts it, the call's frames go over that server's call
// socket (call_remote.js), everything else over ours. Otherwise a call in a room is a
// conference (conf_id) of pairwise peer connections, a full mesh of at
// most 6 people. Whoever starts it rings the room's other members; whoever joins later sends
// non-ringing invites to everyone already in, who accept them automatically. When a third
// person joins a call of two and the server runs a media server, the call moves there: the
// joiner enters conference "sfu-" + the call's id, and the two already in it follow (their
// direct connection is hung up once the server's media flows; neither leaves the call). The server checks
// every signal (only the parties of a call may move it along) and relays them on a priority lane.

import { createPeer } from './call_peer.js';
import { createSfuSession } from './call_sfu.js';
import { callHostOf, openCallSocket } from './call_remote.js';
import { randomHex } from './dom.js';

const MAX_PARTICIPANTS = 6;
// How long an invite rings. Tests shorten it (window.CHAT_CALL_LIFETIME_MS; the server accepts 5-120 s).
const LIFETIME_MS = Number(window.CHAT_CALL_LIFETIME_MS) || 45000;
// Event ids handled: a signal can come twice (its priority `call` frame, then as an `event`
// after a reconnect), never far apart, so the newest SEEN_MAX are enough.
const SEEN_MAX = 512;

const randomId = () => randomHex(12);

export function createSignalling({ me, send, currentRoom, displayName, media, ui, notice }) {
  const party = randomId(); // this tab
  const seen = new Set();
  // `${room} ${conf}` -> { user_ids, hands, muted }: who is in each call, raised hands,
  // microphones off (the `call_roster` frames').
  const rosters = new Map();
  const peopleIn = (room_id, conf_id) => (rosters.get(`${room_id} ${conf_id}`) || { user_ids: [] }).user_ids;
  const ringing = new Map(); // call_id -> { ev, room_id, timer }
  // Candidates that arrive before we answer (ringing) are kept for when we do.
  const early = new Map(); // call_id -> [candidates]
  const peers = new Map(); // call_id -> Peer
  let conf = null; // { room_id, conf_id, media }
  let sfu = null; // the media server session of an "sfu-" conference
  let sfuAvailable = false; // the server runs a media server (its `ready` frame says)
  let rejoining = false; // back from a reconnect, not yet on the call's roster again
  let endNote = null; // why a call nobody took ended ("Ben declined the call")
  let connectedOnce = false; // someone answered in this conference
  let channel = null; // the host's call socket, when another server hosts our call
  let handUp = false; // our hand is raised (put up again after a reconnect)
  let moving = false; // our person-to-person call is moving to the media server
  let txn = 0;

  // Frames about our room call go to whichever server hosts it.
  const callSend = (f) => (channel ? channel.send(f) : send(f));

  const signal = (room_id, type, content) =>
    send({ t: 'call', room_id, type, content: { ...content, party_id: party, version: '1' }, txn_id: `c${party}${txn++}` });

  // ---- peers ---------------------------------------------------------------------------
  async function newPeer(call_id, user, role) {
    const peer = await createPeer({
      call_id, user, role, media, ui,
      signal: (type, content) => {
        if (!conf) return false;
        signal(conf.room_id, type, content);
        return true;
      },
      current: () => peers.has(call_id),
    });
    peers.set(call_id, peer);
    return peer;
  }

  function closePeer(call_id) {
    const peer = peers.get(call_id);
    if (!peer) return;
    peers.delete(call_id);
    peer.close();
    if (conf && peers.size === 0 && !sfu && !moving) endCall(false);
  }

  // Our microphone and camera state, for the others' tiles (Matrix VoIP's stream metadata).
  // On connecting only a muted state is sent (unmuted is what the others assume).
  function sendMetadata(peer, changed = false) {
    const local = media.local;
    if (!conf || !local || !peer.answered) return;
    const a = local.getAudioTracks()[0];
    const v = local.getVideoTracks()[0];
    if (!changed && !(a && !a.enabled) && !(v && !v.enabled)) return;
    signal(conf.room_id, 'm.call.sdp_stream_metadata_changed', {
      call_id: peer.call_id,
      sdp_stream_metadata: { [local.id]: { purpose: 'm.usermedia', audio_muted: !!a && !a.enabled, video_muted: !v || !v.enabled } },
    });
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
        ui.status(`${displayName(user)} did not answer`);
        endNote = `${displayName(user)} did not answer`;
        closePeer(call_id);
      }
    }, LIFETIME_MS);
  }

  // ---- conference lifecycle ------------------------------------------------------------
  async function startCall(room_id, kind) {
    if (conf) return;
    const res = await fetch(`/api/v1/rooms/${encodeURIComponent(room_id)}/members`, { credentials: 'same-origin' });
    if (!res.ok) { ui.alert('Could not load the members of this room.'); return; }
    const members = (await res.json()).members.filter((m) => m.membership === 'join' && m.user_id !== me);
    if (!members.length) { ui.alert('Nobody else is in this room to call.'); return; }
    if (sfuAvailable && members.length >= 2) {
      await enterSfu(room_id, null, kind);
      return;
    }
    if (members.length + 1 > MAX_PARTICIPANTS) {
      ui.alert(`Calls hold at most ${MAX_PARTICIPANTS} people; this room has ${members.length + 1}.`);
      return;
    }
    if (!(await enter(room_id, randomId(), kind))) return;
    ui.status('Ringing…');
    for (const m of members) await inviteTo(m.user_id, true);
  }

  // Joins a call already running in the room: everyone in it gets a non-ringing invite.
  async function joinCall(room_id, conf_id, kind) {
    if (conf) return;
    if (conf_id.startsWith('sfu-')) { await enterSfu(room_id, conf_id, kind || 'video'); return; }
    // A third person: the call moves to the media server (the two in it follow).
    if (sfuAvailable && peopleIn(room_id, conf_id).length >= 2) {
      await enterSfu(room_id, `sfu-${conf_id}`, kind || 'video');
      return;
    }
    if (!(await enter(room_id, conf_id, kind || 'video'))) return;
    for (const u of peopleIn(room_id, conf_id)) await inviteTo(u, false);
  }

  async function enter(room_id, conf_id, kind) {
    try { await ui.ready(); } catch (e) {
      ui.alert(`${e.message}; try again.`);
      return false;
    }
    try { await media.open(kind); } catch (e) {
      ui.alert(`Camera or microphone unavailable: ${e.message}`);
      return false;
    }
    conf = { room_id, conf_id, media: kind };
    endNote = null;
    handUp = false;
    callSend({ t: 'call_join', room_id, conf_id });
    ui.show(Array.from(peers.values(), (p) => p.tile).filter(Boolean), { roomId: room_id, media: kind });
    return true;
  }

  // Enters a conference through the media server (`conf_id`, or with none the call running in
  // the room, else a new one): at the server that hosts the room's calls, the roster, then the
  // media.
  async function enterSfu(room_id, conf_id, kind) {
    let where;
    try { where = await callHostOf(room_id); } catch (e) {
      ui.alert(`Could not join the call: ${e.message}`);
      return;
    }
    if (!where.here) {
      try { channel = await connectHost(where); } catch (e) {
        ui.alert(`Could not reach ${where.server}, which holds this room's calls: ${e.message}`);
        return;
      }
    }
    // A call already running there is joined, not started again beside it.
    const id = conf_id || runningIn(room_id) || `sfu-${randomId()}`;
    if (!(await enter(room_id, id, kind))) { dropChannel(room_id); return; }
    ui.status('Connecting…');
    rejoining = true; // until the roster shows us in it
    sfu = createSfuSession({ room_id, conf_id: id, send: callSend, media, ui });
    try { await sfu.start(); } catch (e) {
      ui.alert(`Could not connect the call: ${e.message}`);
      endCall(false);
    }
  }

  function endCall(sendHangups, why = null) {
    if (!conf) return;
    const c = conf;
    if (sfu) { sfu.close(); sfu = null; }
    for (const p of Array.from(peers.values())) {
      if (sendHangups) signal(c.room_id, 'm.call.hangup', { call_id: p.call_id, reason: 'user_hangup' });
      peers.delete(p.call_id);
      p.close();
    }
    callSend({ t: 'call_leave', room_id: c.room_id, conf_id: c.conf_id });
    dropChannel(c.room_id);
    conf = null;
    media.stop();
    // A call nobody took ("Ben declined", "Ben did not answer") says so; others just close.
    const note = why || (!sendHangups && !connectedOnce ? endNote : null);
    connectedOnce = false;
    ui.hide(note);
    showJoinButtons();
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
    for (const u of peopleIn(conf.room_id, conf.conf_id)) {
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
    if (q) await peer.addCandidates(q);
    await peer.drainQueued();
    const answer = await peer.pc.createAnswer();
    await peer.pc.setLocalDescription(answer);
    signal(conf.room_id, 'm.call.answer', { call_id: c.call_id, answer: { type: answer.type, sdp: answer.sdp } });
    ui.status('');
    connectedOnce = true;
    ui.connected();
    sendMetadata(peer);
  }

  function decline(call_id) {
    const r = ringing.get(call_id);
    if (!r) return;
    stopRinging(call_id);
    early.delete(call_id);
    signal(r.room_id, 'm.call.reject', { call_id });
  }

  function stopRinging(call_id) {
    const r = ringing.get(call_id);
    if (!r) return;
    clearTimeout(r.timer);
    ringing.delete(call_id);
    ui.unring(call_id, ringing.size === 0);
  }

  async function onInvite(ev, room_id) {
    const c = ev.content;
    // An invite without an invitee (Element's 1:1 call) is for the room's other member.
    if (c.invitee ? c.invitee !== me : ev.sender === me) return;
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
          mine.close();
        } else return;
      }
      await answerInvite(ev);
      return;
    }
    if (conf && conf.conf_id !== c['chat.conf_id'] && !c['chat.ring']) return;
    const timer = setTimeout(() => { stopRinging(c.call_id); early.delete(c.call_id); }, Math.max(0, ev.origin_server_ts + c.lifetime - Date.now()));
    ringing.set(c.call_id, { ev, room_id, timer });
    ui.ring(c.call_id, ev);
  }

  // ---- signals -------------------------------------------------------------------------
  // A signal, from its `call` frame or as an `event` (each is handled once).
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
          await peer.drainQueued();
          signal(conf.room_id, 'm.call.select_answer', { call_id: c.call_id, selected_party_id: c.party_id });
          ui.status('');
          connectedOnce = true;
          ui.connected();
          sendMetadata(peer);
        }
        break;
      case 'm.call.candidates':
        if (ev.sender === me) break;
        if (peer) await peer.addCandidates(c.candidates || []);
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
          ui.status(`${displayName(ev.sender)} declined`);
          endNote = `${displayName(ev.sender)} declined the call`;
          closePeer(c.call_id);
        }
        break;
      case 'm.call.sdp_stream_metadata_changed':
        if (peer && ev.sender !== me) ui.remoteState(peer.tile, c.sdp_stream_metadata);
        break;
      case 'm.call.hangup':
        stopRinging(c.call_id);
        early.delete(c.call_id);
        // The other party moved our call to the media server: follow, not end.
        if (peer && conf && c['chat.moved_to'] === `sfu-${conf.conf_id}`) {
          await moveToServer(c.call_id);
          if (peers.has(c.call_id)) closePeer(c.call_id); // the move failed: this peer is gone
          break;
        }
        if (peer) closePeer(c.call_id);
        break;
      default: break;
    }
  }

  // ---- rosters -------------------------------------------------------------------------
  // A `call_roster` frame: who is in each of a room's calls, and its call bar (server-rendered).
  // While another server hosts our call, its socket's rosters of that room are the ones that
  // count (ours, told by that server, may lag behind).
  function onRoster(f, viaHost = false) {
    if (!viaHost && channel && conf && f.room_id === conf.room_id) return;
    setRosters(f.room_id, f.calls);
    // Through the media server, the roster is the call: a tab taken off it (removed from the
    // room, or the server ended its media) is out of the call. After a reconnect the tab
    // is off it until its call_join is through.
    if (sfu && conf && conf.room_id === f.room_id) {
      const inIt = peopleIn(conf.room_id, conf.conf_id).includes(me);
      if (inIt) rejoining = false;
      else if (!rejoining) { endCall(false); return; }
    }
    // Someone whose tab vanished is dropped from the mesh once their media stops too (a
    // reconnecting WebSocket alone does not end a call).
    if (conf && conf.room_id === f.room_id) {
      const users = peopleIn(conf.room_id, conf.conf_id);
      for (const p of Array.from(peers.values())) {
        const s = p.pc.iceConnectionState;
        if (p.answered && !users.includes(p.user) && s !== 'connected' && s !== 'completed') closePeer(p.call_id);
      }
    }
    ui.placeCallBar(f.room_id, f.html);
    showJoinButtons();
    showState();
    // Someone joined our call of two at the media server: move there too.
    if (conf && !sfu && conf.room_id === f.room_id && peopleIn(f.room_id, `sfu-${conf.conf_id}`).some((u) => u !== me)) {
      moveToServer();
    }
  }

  function setRosters(room_id, calls) {
    for (const key of Array.from(rosters.keys())) if (key.startsWith(`${room_id} `)) rosters.delete(key);
    for (const c of calls) rosters.set(`${room_id} ${c.conf_id}`, { user_ids: c.user_ids, hands: c.hands || [], muted: c.muted || [] });
  }

  // Whether we host the call: the room's moderators may mute others, lower hands and end it
  // (the server checks; the room page says whether we may remove people).
  function hosting() {
    const room = document.getElementById('room');
    return !!(conf && room && room.dataset.roomId === conf.room_id && room.dataset.canKick === 'true');
  }

  // Raised hands and microphones off in our call, on its tiles and buttons.
  function showState() {
    if (!conf) return;
    const r = rosters.get(`${conf.room_id} ${conf.conf_id}`) || { hands: [], muted: [] };
    // A host lowered our hand.
    if (!rejoining && handUp && r.user_ids && r.user_ids.includes(me) && !r.hands.includes(me)) handUp = false;
    ui.callState({ hands: r.hands, muted: r.muted, host: hosting() });
  }

  // What a host did to our tab: turned our microphone off, or ended the call.
  function onHost(f) {
    if (!conf || f.room_id !== conf.room_id || f.conf_id !== conf.conf_id) return;
    if (f.t === 'call_ended') endCall(false, f.by === me ? 'You ended the call' : `${displayName(f.by)} ended the call`);
    else if (f.t === 'call_muted') ui.mutedBy(displayName(f.by));
  }

  // Our own state in the call, for the others: microphone off, hand raised.
  function sendState(state) {
    if (state.hand !== undefined) handUp = state.hand;
    if (conf) callSend({ t: 'call_state', room_id: conf.room_id, conf_id: conf.conf_id, ...state });
  }

  // A host's action: `mute` or `lower_hand` someone, or `end` the call.
  function host(action, user_id) {
    if (!conf) return;
    const f = { t: 'call_host', room_id: conf.room_id, conf_id: conf.conf_id, action };
    if (user_id) f.user_id = user_id;
    callSend(f);
  }

  // A call's Join button shows while this tab is in no call and its user not in that one.
  function showJoinButtons() {
    ui.showJoinButtons((conf_id) => !conf && !peopleIn(currentRoom, conf_id).includes(me));
  }

  // After a reconnect the server sends the roster of every running call again; drop what we
  // knew (and empty the call bar), and put this tab back into its call (the roster lost it
  // when the old socket closed).
  function onReady(f) {
    sfuAvailable = !!(f && f.sfu);
    // A call another server hosts goes on over its own socket.
    const hosted = channel && conf ? conf.room_id : null;
    for (const key of Array.from(rosters.keys())) if (!hosted || !key.startsWith(`${hosted} `)) rosters.delete(key);
    if (conf && !hosted) rejoin();
    if (!hosted || hosted !== currentRoom) ui.clearCallBar();
  }

  // Puts this tab back into its call after the socket that carried it was replaced: on the
  // roster with its microphone and hand as they were, and its media connected again (the
  // server ended it with the old socket).
  function rejoin() {
    callSend({ t: 'call_join', room_id: conf.room_id, conf_id: conf.conf_id });
    // The new seat starts with the microphone on and the hand down: say so if not.
    if (media.micOn() === false) sendState({ muted: true });
    if (handUp) sendState({ hand: true });
    if (sfu) {
      rejoining = true;
      sfu.close();
      sfu = createSfuSession({ room_id: conf.room_id, conf_id: conf.conf_id, send: callSend, media, ui });
      sfu.start().catch((e) => ui.status(`Could not reconnect the call: ${e.message}`));
    }
  }

  // The conference running in a room through a media server, if any (from the rosters); else
  // where a call of two people running there moves when someone joins it.
  function runningIn(room_id) {
    let moved = null;
    for (const [key, r] of rosters) {
      const [room, id] = key.split(' ');
      if (room !== room_id || !r.user_ids.length) continue;
      if (id.startsWith('sfu-')) return id;
      if (r.user_ids.length >= 2) moved = `sfu-${id}`;
    }
    return moved;
  }

  // Our call of two moves to the media server (someone joined it there): the same people,
  // media and screen, now through the server; the direct connection is closed once the
  // server's connection is up, and the caller hangs it up saying where the call went (the
  // other party follows), unless the other party did already (`ended`, its call id).
  async function moveToServer(ended = null) {
    if (!conf || sfu || moving || conf.conf_id.startsWith('sfu-')) return;
    moving = true;
    const { room_id, conf_id: direct, media: kind } = conf;
    const id = `sfu-${direct}`;
    try {
      const where = await callHostOf(room_id);
      if (!where.here) channel = await connectHost(where);
    } catch (e) {
      console.warn('chat: call: cannot move the call to the media server:', e.message);
      moving = false;
      return; // the direct call goes on
    }
    if (!conf || conf.conf_id !== direct) { dropChannel(room_id); moving = false; return; }
    send({ t: 'call_leave', room_id, conf_id: direct });
    conf = { room_id, conf_id: id, media: kind };
    rejoining = true;
    callSend({ t: 'call_join', room_id, conf_id: id });
    if (media.micOn() === false) sendState({ muted: true });
    sfu = createSfuSession({ room_id, conf_id: id, send: callSend, media, ui });
    try { await sfu.start(); } catch (e) {
      moving = false;
      ui.alert(`Could not move the call to the server: ${e.message}`);
      endCall(true);
      return;
    }
    for (const p of Array.from(peers.values())) {
      // One hangup per call (the caller's), so the call's record ends once.
      if (p.call_id !== ended && p.role === 'caller') signal(room_id, 'm.call.hangup', { call_id: p.call_id, reason: 'user_hangup', 'chat.moved_to': id });
      peers.delete(p.call_id);
      p.close();
    }
    moving = false;
  }

  // ---- a call hosted by another server -------------------------------------------------
  // The host's call socket; its frames go where the live socket's would.
  function connectHost(where) {
    return openCallSocket({
      url: where.url,
      token: where.token,
      onFrame: (f) => {
        if (!onFrame(f, true) && f.t === 'error') console.warn('chat: call host:', f.message);
      },
      onClose: hostLost,
    });
  }

  // The host's socket closed under us (the host restarted, the network moved): a new token
  // and socket, then back into the call; after three tries the call ends.
  async function hostLost() {
    if (!conf || !channel) return;
    const c = conf;
    channel = null;
    ui.status('Reconnecting…');
    for (const wait of [500, 2000, 5000]) {
      await new Promise((r) => setTimeout(r, wait));
      if (conf !== c) return;
      try {
        const where = await callHostOf(c.room_id);
        if (where.here) break; // the room's calls moved here: this call is over
        channel = await connectHost(where);
        ui.status('');
        rejoin();
        return;
      } catch { /* try again */ }
    }
    endCall(false, 'Lost the connection to the call');
  }

  // Closes the host's call socket after leaving; what it showed of the room's calls is no
  // longer kept up to date.
  function dropChannel(room_id) {
    if (!channel) return;
    channel.close();
    channel = null;
    for (const key of Array.from(rosters.keys())) if (key.startsWith(`${room_id} `)) rosters.delete(key);
    if (room_id === currentRoom) ui.clearCallBar();
  }

  const rendered = ui.renderedRosters();
  if (rendered) setRosters(currentRoom, rendered);
  showJoinButtons();

  // A frame of the media server: for the session, or an error it sent. Only a refused offer
  // ends the call (the call is full, the media server is not reachable); an answer or a tile
  // size about someone who just left is harmless.
  function onSfu(f) {
    if (f.t === 'error') {
      if (sfu && f.txn_id === 'sfu_publish') { ui.alert(`Could not join the call: ${f.message}`); endCall(false); }
      else console.warn('chat: call:', f.message);
      return;
    }
    if (sfu) sfu.onFrame(f);
  }

  // A frame about room calls, from our live socket or (`viaHost`) the call socket of the
  // server that holds our call: rosters, the media server's frames, a host's actions, and the
  // refusals of ours. Whether it was one.
  function onFrame(f, viaHost = false) {
    switch (f.t) {
      case 'call_roster': onRoster(f, viaHost); return true;
      case 'sfu_offer': case 'sfu_answer': case 'sfu_speakers': onSfu(f); return true;
      case 'call_muted': case 'call_ended': onHost(f); return true;
      case 'error':
        if (f.txn_id && f.txn_id.startsWith('sfu_')) { onSfu(f); return true; }
        if (f.txn_id === 'call_host' || f.txn_id === 'call_state') { notice(`Not done: ${f.message}`); return true; }
        return false;
      default: return false;
    }
  }

  return {
    onSignal, onReady, onFrame, startCall, joinCall, accept, decline, hangup: () => endCall(true),
    get sfu() { return sfu; },
    metadataChanged() {
      for (const p of peers.values()) sendMetadata(p, true);
      const on = media.micOn();
      if (on !== null) sendState({ muted: !on });
    },
    raiseHand(up) { sendState({ hand: up }); },
    host,
    get active() { return conf; },
    get ringing() { return Array.from(ringing.keys()); },
    peers() { return Array.from(peers.values()); },
  };
}
