// One peer connection of a call, with one person: ours as the caller (we sent the invite) or
// as the callee. Our ICE candidates go out in batches; theirs wait until the remote
// description is set; the caller restarts ICE when the connection fails or stays disconnected.

const CANDIDATE_BATCH_MS = 80;
const CANDIDATES_PER_SIGNAL = 64;

// `signal(type, content)` sends a signal in the call's room (nothing once the conference is
// over); `current()` says whether this peer is still one of the conference's.
export async function createPeer({ call_id, user, role, media, ui, signal, current }) {
  const pc = await media.connect();
  const queued = []; // their candidates, until the remote description is set
  const outgoing = []; // ours, until the next batch
  let flush = null;
  let restarting = false;
  const peer = {
    call_id, user, role, pc,
    remoteParty: null,
    answered: role === 'callee',
    timer: null, // the caller's invite lifetime
    tile: null,
    addCandidates, drainQueued, close,
  };

  pc.onicecandidate = (e) => {
    outgoing.push(e.candidate ? e.candidate.toJSON() : { candidate: '' });
    if (!flush) flush = setTimeout(flushCandidates, CANDIDATE_BATCH_MS);
  };
  pc.ontrack = (e) => ui.play(tile(), e.streams[0]);
  pc.oniceconnectionstatechange = () => {
    const s = pc.iceConnectionState;
    if (peer.tile) peer.tile.dataset.state = s;
    if (s === 'failed' || s === 'disconnected') scheduleRestart();
  };
  tile();

  function tile() {
    if (!peer.tile) peer.tile = ui.tile(user);
    return peer.tile;
  }

  function flushCandidates() {
    flush = null;
    if (!outgoing.length) return;
    const batch = outgoing.splice(0, CANDIDATES_PER_SIGNAL);
    if (!signal('m.call.candidates', { call_id, candidates: batch })) return;
    if (outgoing.length) flush = setTimeout(flushCandidates, CANDIDATE_BATCH_MS);
  }

  // ICE restart after a network change: the caller renegotiates with fresh credentials.
  function scheduleRestart() {
    if (restarting || !peer.answered) return;
    restarting = true;
    setTimeout(async () => {
      restarting = false;
      const s = pc.iceConnectionState;
      if (!current() || (s !== 'failed' && s !== 'disconnected')) return;
      if (role !== 'caller') return; // the caller drives the restart
      try {
        const offer = await pc.createOffer({ iceRestart: true });
        await pc.setLocalDescription(offer);
        signal('m.call.negotiate', { call_id, description: { type: offer.type, sdp: offer.sdp } });
      } catch (e) { console.warn('chat: ICE restart failed', e); }
    }, pc.iceConnectionState === 'failed' ? 0 : 3000);
  }

  async function addCandidates(list) {
    for (const c of list) {
      if (!c.candidate) continue;
      if (!pc.remoteDescription) { queued.push(c); continue; }
      try { await pc.addIceCandidate(c); } catch (e) { console.warn('chat: bad candidate', e); }
    }
  }

  async function drainQueued() {
    await addCandidates(queued.splice(0));
  }

  function close() {
    clearTimeout(peer.timer);
    clearTimeout(flush);
    try { pc.close(); } catch { /* already closed */ }
    if (peer.tile) peer.tile.remove();
  }

  return peer;
}
