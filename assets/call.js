// chat calls: WebRTC in the browser, signalling as room events over the live WebSocket. This
// module wires the three parts together and gives app.js (and tests, as window.chatCalls)
// one handle:
//
//   call_signals.js  the conference: signals sent and received, ringing, rosters, peers
//   call_sfu.js      a room call through the server's media server
//   call_peer.js     one peer connection: candidate batches, queued candidates, ICE restart
//   call_media.js    camera, microphone, screen, peer connections, ICE servers, stats
//   call_ui.js       the call section, the ring prompt, the Call buttons, the call bar
//
// Media goes directly when it can, else through each side's own TURN relay (GET /api/v1/turn).

import { createMedia } from './call_media.js';
import { createSignalling } from './call_signals.js';
import { createCallUi } from './call_ui.js';

export function createCalls({ me, send, displayName, currentRoom, notice }) {
  // The parts call each other: each gets the others through these late-bound handles.
  let signalling = null;
  const media = createMedia({
    connections: () => (signalling.sfu ? [signalling.sfu.publish].filter(Boolean) : signalling.peers().map((p) => p.pc)),
    shareTo: () => (signalling.sfu ? signalling.sfu.share : null),
  });
  const ui = createCallUi({
    displayName, currentRoom, media,
    actions: {
      start: (room_id, kind) => signalling.startCall(room_id, kind),
      join: (conf_id) => signalling.joinCall(currentRoom, conf_id, 'video'),
      accept: (call_id) => signalling.accept(call_id),
      decline: (call_id) => signalling.decline(call_id),
      hangup: () => signalling.hangup(),
      tick: updateQuality,
      metadata: () => signalling.metadataChanged(),
      hand: (up) => signalling.raiseHand(up),
      host: (action, user) => signalling.host(action, user),
    },
  });
  signalling = createSignalling({ me, send, currentRoom, displayName, media, ui, notice });
  ui.setupButtons();

  async function updateQuality() {
    if (signalling.sfu) {
      const all = await signalling.sfu.stats();
      for (const t of signalling.sfu.tiles()) {
        const s = all.find((x) => x.user === t.dataset.user);
        if (s) ui.quality(t, s);
      }
      return;
    }
    for (const p of signalling.peers()) {
      if (p.tile) ui.quality(p.tile, await media.stats(p.pc));
    }
  }

  return {
    onSignal: signalling.onSignal,
    onReady: signalling.onReady,
    onFrame: signalling.onFrame,
    startCall: signalling.startCall,
    joinCall: signalling.joinCall,
    accept: signalling.accept,
    decline: signalling.decline,
    hangup: signalling.hangup,
    get active() { return signalling.active; },
    get ringing() { return signalling.ringing; },
    async stats() {
      if (signalling.sfu) return signalling.sfu.stats();
      return Promise.all(signalling.peers().map(async (p) => ({ user: p.user, ...(await media.stats(p.pc)) })));
    },
    // The connection sending to the media server (diagnostics).
    publishConnection() { return signalling.sfu ? signalling.sfu.publish : null; },
    // The media server session's state (diagnostics).
    debug() { return signalling.sfu ? signalling.sfu.debug() : null; },
    // Whether the call goes through the media server (tests and diagnostics).
    get throughServer() { return !!signalling.sfu; },
    // Whether our microphone sends (null outside a call), for tests and diagnostics.
    micEnabled: () => media.micOn(),
    // The video track label each connection sends (camera or screen), for tests and diagnostics.
    senderLabels() {
      if (signalling.sfu) return [signalling.sfu.publish].filter(Boolean).map((pc) => media.sentVideoLabel(pc));
      return signalling.peers().map((p) => media.sentVideoLabel(p.pc));
    },
  };
}
