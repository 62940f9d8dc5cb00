// What a call looks like: the call section (video tiles, status line, controls), the
// incoming-call prompt with its tone, the Call buttons, and the room's call bar. The server
// renders the call bar (who is in the room's calls); this module only places it and shows each
// call's Join button where joining makes sense.

import { fragment } from './dom.js';

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(label, cls, onClick) {
  const b = el('button', cls, label);
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}

// `actions`: start(room_id, media), join(conf_id), accept(call_id), decline(call_id), hangup(),
// tick() (every 2 s while the call section is open).
export function createCallUi({ displayName, currentRoom, media, actions }) {
  let ui = null; // the open call section's parts
  let ringTone = null;
  let statsTimer = null;

  function status(text) {
    if (ui) ui.status.textContent = text;
  }

  function alertUser(text) {
    status(text);
    if (!ui) window.alert(text);
  }

  // ---- ringing -------------------------------------------------------------------------
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

  function ring(call_id, ev) {
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
    const kind = ev.content['chat.media'] === 'voice' ? 'voice' : 'video';
    row.appendChild(el('span', 'who', `${displayName(ev.sender)} is calling (${kind})`));
    const yes = el('button', 'accept', 'Accept');
    yes.addEventListener('click', () => actions.accept(call_id));
    const no = el('button', 'decline', 'Decline');
    no.addEventListener('click', () => actions.decline(call_id));
    row.append(yes, no);
    box.appendChild(row);
    startTone();
  }

  // Takes a call's row out of the prompt; `last`: nothing rings any more.
  function unring(call_id, last) {
    const row = document.querySelector(`#ringing .ring[data-call-id="${CSS.escape(call_id)}"]`);
    if (row) row.remove();
    if (last) {
      stopTone();
      const box = document.getElementById('ringing');
      if (box) box.remove();
    }
  }

  // ---- the call section ----------------------------------------------------------------
  function tile(user) {
    const t = el('figure', 'tile');
    t.dataset.user = user;
    const video = el('video');
    video.autoplay = true;
    video.playsInline = true;
    const cap = el('figcaption');
    cap.append(el('span', 'name', displayName(user)), el('span', 'quality'));
    t.append(video, cap);
    if (ui) ui.grid.appendChild(t);
    return t;
  }

  function play(t, stream) {
    const video = t.querySelector('video');
    if (video.srcObject !== stream) video.srcObject = stream;
  }

  // Connection quality on a tile, from `media.stats`: round-trip time and packet loss.
  function quality(t, s) {
    const q = t.querySelector('.quality');
    let level = 'unknown';
    if (s.rtt !== null) level = s.rtt < 0.15 && s.lossRate < 0.02 ? 'good' : s.rtt < 0.4 && s.lossRate < 0.08 ? 'fair' : 'poor';
    q.dataset.level = level;
    q.textContent = level === 'unknown' ? '' : level;
    q.title = s.rtt === null ? 'connecting' : `round trip ${Math.round(s.rtt * 1000)} ms, loss ${(s.lossRate * 100).toFixed(1)} %`;
  }

  // Opens the call section with our own video and the tiles already made.
  function show(tiles) {
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
    selfVideo.srcObject = media.local;
    self.append(selfVideo, el('figcaption', '', 'You'));
    grid.appendChild(self);
    const statusLine = el('p', 'status');
    statusLine.setAttribute('aria-live', 'polite');
    const bar = el('div', 'controls');
    const mute = button('Mute', 'mute', () => {
      const on = media.toggle('audio');
      if (on === null) return;
      mute.textContent = on ? 'Mute' : 'Unmute';
      mute.setAttribute('aria-pressed', String(!on));
    });
    const cam = button('Camera off', 'camera', () => {
      const on = media.toggle('video');
      if (on === null) return;
      cam.textContent = on ? 'Camera off' : 'Camera on';
      cam.setAttribute('aria-pressed', String(!on));
    });
    const share = button('Share screen', 'share', () => media.toggleShare((sharing) => {
      share.textContent = sharing ? 'Stop sharing' : 'Share screen';
    }));
    const devices = el('select', 'devices');
    devices.setAttribute('aria-label', 'Camera and microphone');
    devices.addEventListener('change', () => {
      const [kind, deviceId] = devices.value.split('|');
      media.switchDevice(kind, deviceId);
    });
    const hang = button('Hang up', 'hangup', () => actions.hangup());
    bar.append(mute, cam, share, devices, hang);
    root.append(grid, statusLine, bar);
    document.body.appendChild(root);
    ui = { root, grid, status: statusLine, devices };
    for (const t of tiles) grid.appendChild(t);
    listDevices();
    statsTimer = setInterval(actions.tick, 2000);
  }

  function hide() {
    clearInterval(statsTimer);
    if (ui) ui.root.remove();
    ui = null;
  }

  async function listDevices() {
    if (!ui) return;
    const list = await media.inputs();
    if (!ui) return;
    ui.devices.replaceChildren();
    for (const d of list) {
      const o = el('option', '', `${d.kind === 'videoinput' ? 'Camera' : 'Mic'}: ${d.label || d.deviceId.slice(0, 8)}`);
      o.value = `${d.kind}|${d.deviceId}`;
      ui.devices.appendChild(o);
    }
  }

  // ---- the room's call bar and the Call buttons ----------------------------------------
  // Puts a room's call bar, as the server rendered it, in place (on that room's page).
  function placeCallBar(room_id, html) {
    const bar = document.getElementById('callbar');
    if (bar && room_id === currentRoom) bar.replaceWith(fragment(html));
  }

  // Empties the call bar until the server says again who is in a call (after a reconnect).
  function clearCallBar() {
    const bar = document.getElementById('callbar');
    if (bar) { bar.replaceChildren(); bar.hidden = true; }
  }

  // Shows each call's Join button where `joinable(conf_id)`.
  function showJoinButtons(joinable) {
    for (const b of document.querySelectorAll('#callbar button.join')) b.hidden = !joinable(b.dataset.confId);
  }

  // Who is in the calls of the page's room as the page was rendered: [{conf_id, user_ids}].
  function renderedRosters() {
    const bar = document.getElementById('callbar');
    if (!bar || !bar.dataset.rosters) return null;
    try { return JSON.parse(bar.dataset.rosters); } catch { return null; /* a fresh roster frame follows */ }
  }

  function setupButtons() {
    for (const b of document.querySelectorAll('button[data-call]')) {
      b.addEventListener('click', () => actions.start(b.dataset.roomId, b.dataset.call));
    }
    document.addEventListener('click', (e) => {
      const join = e.target.closest('#callbar button.join');
      if (join) actions.join(join.dataset.confId);
    });
  }

  return {
    status, alert: alertUser, ring, unring, tile, play, quality, show, hide,
    placeCallBar, clearCallBar, showJoinButtons, renderedRosters, setupButtons,
  };
}
