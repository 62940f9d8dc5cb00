// What a call looks like: the call section (video tiles, status line, controls), the
// incoming-call prompt with its tone, the Call buttons, and the room's call bar. The server
// renders the call bar (who is in the room's calls); this module only places it and shows each
// call's Join button where joining makes sense.

import { ask } from './confirm.js';
import { avatarColour, fragment, me } from './dom.js';

// Someone on the first page of tiles gives their place to a speaker after this long quiet.
const QUIET_MS = 5000;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// `actions`: start(room_id, media), join(conf_id), accept(call_id), decline(call_id), hangup(),
// tick() (every 2 s while the call section is open), metadata() (our mute state changed),
// hand(up) (raise or lower our hand), host(action, user_id) (a host's mute, lower_hand, end).
export function createCallUi({ displayName, currentRoom, media, actions }) {
  let ui = null; // the open call section's parts
  let ringTone = null;
  let statsTimer = null;
  // The call's raised hands and microphones off (from its roster), and whether we host it.
  let state = { hands: [], muted: [], host: false };
  let page = 0; // the page of tiles shown, when they do not fit on one
  const spoke = new Map(); // user -> when the server last named them a speaker
  let order = []; // users in the order their tiles go (a speaker off the first page moves up)

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
    ready().catch(() => { /* tried again on accepting */ });
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
    // The prompt takes the keyboard (Enter accepts, Tab reaches Decline), unless a call is open.
    if (!ui) yes.focus();
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
  // The server renders the call screen and the tile as templates (render::call_templates),
  // fetched once, when a call starts or rings.
  let templates = null;
  function ready() {
    if (!templates) {
      templates = fetch('/fragments/call', { credentials: 'same-origin' })
        .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`the call screen did not load (${r.status})`))))
        .then((html) => { document.body.append(fragment(html)); })
        .catch((e) => { templates = null; throw e; });
    }
    return templates;
  }

  function clone(id) {
    const t = document.getElementById(id);
    return t ? t.content.firstElementChild.cloneNode(true) : null;
  }

  // A person's tile (`screen`: their shared screen's).
  function tile(user, screen = false) {
    const t = clone('call-tile');
    t.dataset.user = user;
    if (screen) t.classList.add('screen');
    const name = t.querySelector('.name');
    if (name) name.textContent = screen ? `${displayName(user)}'s screen` : displayName(user);
    const face = t.querySelector('.placeholder .avatar');
    if (face) {
      face.textContent = (displayName(user)[0] || '?').toUpperCase();
      face.classList.add(`c${avatarColour(user)}`);
    }
    decorate(t);
    if (ui) { ui.grid.appendChild(t); layout(); }
    return t;
  }

  // A tile's raised hand and microphone state, and a host's buttons on it.
  function decorate(t) {
    if (t.classList.contains('screen')) return;
    const user = t.dataset.user;
    const self = t.classList.contains('self');
    const name = self ? 'You' : displayName(user);
    const up = state.hands.includes(user);
    t.dataset.hand = up ? 'up' : '';
    const badge = t.querySelector('.hand-badge');
    if (badge) {
      badge.hidden = !up;
      const lowers = self || state.host;
      badge.disabled = !lowers;
      const order = state.hands.indexOf(user) + 1;
      badge.querySelector('.order').textContent = state.hands.length > 1 ? String(order) : '';
      badge.title = lowers ? (self ? 'Lower your hand' : `Lower ${name}'s hand`) : `${name} raised a hand`;
      badge.setAttribute('aria-label', badge.title);
    }
    const muted = state.muted.includes(user);
    if (!self) t.dataset.audio = muted ? 'off' : 'on';
    const mute = t.querySelector('.host-mute');
    if (mute) {
      mute.hidden = self || muted || !state.host;
      mute.title = `Turn ${name}'s microphone off`;
      mute.setAttribute('aria-label', mute.title);
    }
  }

  // The call's roster changed: hands, microphones, whether we host.
  function callState(st) {
    state = st;
    if (!ui) return;
    for (const t of ui.grid.querySelectorAll('.tile')) decorate(t);
    const up = st.hands.includes(me);
    press(ui.hand, up, up ? 'Lower hand' : 'Raise hand', up ? 'Lower your hand (H)' : 'Raise your hand (H)');
    ui.endAll.hidden = !st.host;
    const others = st.hands.filter((u) => u !== me);
    ui.hands.hidden = !others.length;
    ui.hands.querySelector('.who').textContent = others.map(displayName).join(', ');
  }

  // A host turned our microphone off.
  function mutedBy(name) {
    if (!ui) return;
    if (media.micOn()) ui.toggleMute();
    status(`${name} turned your microphone off`);
  }

  function play(t, stream) {
    const video = t.querySelector('video');
    if (video.srcObject !== stream) video.srcObject = stream;
    // A voice call (or a camera that never came) shows the face instead.
    const hasVideo = () => stream.getVideoTracks().some((tr) => tr.readyState === 'live');
    if (!t.dataset.videoMuted) t.dataset.video = hasVideo() ? 'on' : 'off';
    stream.onaddtrack = () => { if (!t.dataset.videoMuted) t.dataset.video = hasVideo() ? 'on' : 'off'; };
    listen(t, stream);
  }

  // A party's `sdp_stream_metadata`: their camera or microphone muted, shown on their tile.
  function remoteState(t, meta) {
    if (!t || !meta) return;
    const usermedia = Object.values(meta).find((m) => m && m.purpose === 'm.usermedia');
    if (!usermedia) return;
    t.dataset.audio = usermedia.audio_muted ? 'off' : 'on';
    t.dataset.videoMuted = usermedia.video_muted ? 'yes' : '';
    const video = t.querySelector('video');
    const live = video && video.srcObject && video.srcObject.getVideoTracks().length > 0;
    t.dataset.video = usermedia.video_muted || !live ? 'off' : 'on';
  }

  // Connection quality on a tile, from `media.stats`: round-trip time and packet loss.
  function quality(t, s) {
    const q = t.querySelector('.quality');
    if (!q) return;
    let level = 'unknown';
    if (s.rtt !== null) level = s.rtt < 0.15 && s.lossRate < 0.02 ? 'good' : s.rtt < 0.4 && s.lossRate < 0.08 ? 'fair' : 'poor';
    q.dataset.level = level;
    q.textContent = level === 'unknown' ? '' : level;
    q.title = s.rtt === null ? 'connecting' : `round trip ${Math.round(s.rtt * 1000)} ms, loss ${(s.lossRate * 100).toFixed(1)} %`;
  }

  // Who is speaking: each tile's audio level (Web Audio), its outline lit while it talks.
  let audio = null;
  function listen(t, stream) {
    if (!stream.getAudioTracks().length) return;
    try {
      if (!audio) audio = { ctx: new AudioContext(), meters: new Map(), timer: null };
      const old = audio.meters.get(t);
      if (old && old.stream === stream) return;
      const source = audio.ctx.createMediaStreamSource(stream);
      const analyser = audio.ctx.createAnalyser();
      analyser.fftSize = 512;
      source.connect(analyser);
      audio.meters.set(t, { stream, analyser, data: new Float32Array(analyser.fftSize), loud: 0 });
      if (!audio.timer) audio.timer = setInterval(meter, 150);
    } catch { /* no Web Audio: no speaking outline */ }
  }

  function meter() {
    for (const [t, m] of audio.meters) {
      if (!t.isConnected) { audio.meters.delete(t); continue; }
      m.analyser.getFloatTimeDomainData(m.data);
      let sum = 0;
      for (const x of m.data) sum += x * x;
      const rms = Math.sqrt(sum / m.data.length);
      m.loud = rms > 0.02 && t.dataset.audio !== 'off' ? 4 : Math.max(0, m.loud - 1);
      t.classList.toggle('speaking', m.loud > 0);
    }
  }

  function stopMeters() {
    if (!audio) return;
    clearInterval(audio.timer);
    audio.ctx.close().catch(() => {});
    audio = null;
  }

  // The grid's shape follows the number of people, and a phone held upright. Beyond a page
  // (9 tiles, 6 on a phone, 4 on a short screen) the tiles go on pages, shared screens first,
  // then oneself, the others as they came, except that someone who speaks while off the first page takes the
  // place of whoever there spoke least recently. Tiles off the page are hidden, and the
  // server stops sending their video (their height is 0).
  function pageSize() {
    if (window.matchMedia('(max-height: 500px)').matches) return 4;
    return window.matchMedia('(max-width: 760px)').matches ? 6 : 9;
  }

  // The tiles in page order.
  function ordered() {
    const tiles = Array.from(ui.grid.querySelectorAll('.tile'));
    const others = tiles.filter((t) => !t.classList.contains('self'));
    order = order.filter((u) => others.some((t) => t.dataset.user === u));
    for (const t of others) if (!order.includes(t.dataset.user)) order.push(t.dataset.user);
    const at = (t) => order.indexOf(t.dataset.user);
    const screens = others.filter((t) => t.classList.contains('screen'));
    const people = others.filter((t) => !t.classList.contains('screen')).sort((a, b) => at(a) - at(b));
    return [...screens, ...tiles.filter((t) => t.classList.contains('self')), ...people];
  }

  // People beside a shared screen: a column on a wide screen, a row on a phone or a short one.
  function stripSize() {
    return window.matchMedia('(max-width: 760px), (max-height: 500px)').matches ? 3 : 4;
  }

  // The grid of tiles, in pages when they do not fit. While someone shares a screen it is in
  // the spotlight (most of the call screen) and the people are in a strip beside it, as in
  // Meet and Element Call; the strip has pages of its own.
  function layout() {
    if (!ui) return;
    const all = ordered();
    const spot = all.find((t) => t.classList.contains('screen')) || null;
    const tiles = spot ? all.filter((t) => t !== spot) : all;
    const size = spot ? stripSize() : pageSize();
    const pages = Math.max(1, Math.ceil(tiles.length / size));
    page = Math.min(page, pages - 1);
    if (spot) { spot.style.order = '0'; spot.hidden = false; }
    tiles.forEach((t, i) => {
      t.style.order = String(i + 1);
      t.hidden = pages > 1 && Math.floor(i / size) !== page;
    });
    ui.grid.dataset.layout = spot ? 'spotlight' : 'grid';
    if (spot) {
      ui.grid.dataset.count = 'spotlight'; // not a count: the grid's rules by count do not apply
      ui.grid.style.setProperty('--strip', String(Math.max(1, Math.min(tiles.length, size))));
    } else {
      ui.grid.dataset.count = String(Math.min(tiles.length, size));
      ui.grid.style.removeProperty('--strip');
    }
    for (const t of all) t.classList.toggle('spot', t === spot);
    ui.pager.hidden = pages < 2;
    ui.pager.querySelector('.where').textContent = `${page + 1} / ${pages}`;
    ui.pager.querySelector('.prev').disabled = page === 0;
    ui.pager.querySelector('.next').disabled = page === pages - 1;
  }


  // The call's timer: from when the first person is connected.
  function connected() {
    if (!ui || ui.started) return;
    ui.started = Date.now();
    const tick = () => {
      if (!ui) return;
      const s = Math.floor((Date.now() - ui.started) / 1000);
      const h = Math.floor(s / 3600);
      const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, '0');
      ui.timer.textContent = `${h ? `${h}:` : ''}${mm}:${String(s % 60).padStart(2, '0')}`;
    };
    tick();
    ui.clock = setInterval(tick, 1000);
  }

  // What to call the call: the room (or person) as the page names it.
  function titleOf(room_id) {
    const link = document.querySelector(`#room-list a[data-room-id="${CSS.escape(room_id)}"] .name`);
    if (link) return link.textContent;
    const head = room_id === currentRoom && document.querySelector('.room-head h1');
    return head ? head.textContent.trim() : 'Call';
  }

  function press(btn, on, label, title) {
    btn.setAttribute('aria-pressed', String(on));
    btn.querySelector('.label').textContent = label;
    if (title) btn.title = title;
  }

  // Opens the call screen with our own video and the tiles already made. On a room page
  // for the call's room, the room's messages stay beside it (desktop) or one tap away (phone).
  function show(tiles, { roomId, media: kind } = {}) {
    if (ui && ui.root.classList.contains('ended')) hide();
    if (ui) return;
    const root = clone('call-template');
    if (!root) return;
    const app = document.querySelector('.app.in-room');
    const beside = !!(app && roomId && roomId === currentRoom && document.getElementById('timeline'));
    const grid = root.querySelector('.grid');
    const self = tile(me);
    self.classList.add('self');
    self.querySelector('.name').textContent = 'You';
    const selfVideo = self.querySelector('video');
    selfVideo.muted = true;
    selfVideo.srcObject = media.local;
    self.dataset.video = media.local && media.local.getVideoTracks().length ? 'on' : 'off';
    grid.appendChild(self);
    const title = titleOf(roomId);
    root.querySelector('.call-title h2').textContent = title;
    root.setAttribute('aria-label', `Call: ${title}`);
    const controls = root.querySelector('.controls');
    const mute = controls.querySelector('.mute');
    const cam = controls.querySelector('.camera');
    const share = controls.querySelector('.share');
    const chat = controls.querySelector('.chat');
    const hand = controls.querySelector('.hand');
    const endAll = controls.querySelector('.end-all');
    const raise = () => actions.hand(hand.getAttribute('aria-pressed') !== 'true');
    hand.addEventListener('click', raise);
    endAll.addEventListener('click', () => {
      ask({ title: 'End the call for everyone?', detail: `Everyone in the call in ${titleOf(roomId)} is disconnected.`, action: 'End for everyone' })
        .then((yes) => { if (yes) actions.host('end'); });
    });
    // A host's buttons on the tiles, and one's own raised hand (lowered by clicking it).
    grid.addEventListener('click', (e) => {
      const t = e.target.closest('.tile');
      if (!t) return;
      if (e.target.closest('.host-mute')) actions.host('mute', t.dataset.user);
      else if (e.target.closest('.hand-badge')) {
        if (t.classList.contains('self')) actions.hand(false);
        else actions.host('lower_hand', t.dataset.user);
      }
    });
    const pager = root.querySelector('.pager');
    pager.querySelector('.prev').addEventListener('click', () => { page -= 1; layout(); });
    pager.querySelector('.next').addEventListener('click', () => { page += 1; layout(); });
    const toggleMute = () => {
      const on = media.toggle('audio');
      if (on === null) return;
      press(mute, !on, on ? 'Mute' : 'Unmute', on ? 'Mute (M)' : 'Unmute (M)');
      self.dataset.audio = on ? 'on' : 'off';
      actions.metadata();
    };
    const toggleCam = () => {
      const on = media.toggle('video');
      if (on === null) return;
      press(cam, !on, on ? 'Camera' : 'Camera on', on ? 'Camera off (V)' : 'Camera on (V)');
      self.dataset.video = on ? 'on' : 'off';
      actions.metadata();
    };
    mute.addEventListener('click', toggleMute);
    cam.addEventListener('click', toggleCam);
    if (kind === 'voice' || !(media.local && media.local.getVideoTracks().length)) cam.hidden = true;
    share.hidden = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
    share.addEventListener('click', () => media.toggleShare((sharing) => {
      press(share, sharing, sharing ? 'Stop sharing' : 'Share');
    }));
    const settings = root.querySelector('dialog.call-settings');
    controls.querySelector('.devices').addEventListener('click', async () => {
      await listDevices();
      settings.showModal();
    });
    for (const sel of settings.querySelectorAll('select')) {
      sel.addEventListener('change', () => media.switchDevice(sel.classList.contains('camera') ? 'videoinput' : 'audioinput', sel.value));
    }
    chat.hidden = !beside;
    chat.addEventListener('click', () => {
      const open = !app.classList.contains('call-chat');
      app.classList.toggle('call-chat', open);
      press(chat, open, open ? 'Back to call' : 'Chat');
      if (open) document.querySelector('#composer textarea')?.focus();
    });
    controls.querySelector('.hangup').addEventListener('click', () => actions.hangup());
    root.querySelector('.close-call').addEventListener('click', () => hide());
    root.querySelector('.call-again').addEventListener('click', () => {
      const again = ui && ui.again;
      hide();
      if (again) actions.start(again.roomId, again.media);
    });
    // M, V and Esc while the call is open (not while typing).
    const keys = (e) => {
      if (!ui || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || document.querySelector('dialog[open]')) return;
      const typing = e.target.closest && e.target.closest('input, textarea, select, [contenteditable]');
      if (typing) return;
      if (ui.root.querySelector('.ended:not([hidden])')) { if (e.key === 'Escape') hide(); return; }
      if (e.key === 'm' || e.key === 'M') { e.preventDefault(); toggleMute(); }
      else if (e.key === 'h' || e.key === 'H') { e.preventDefault(); raise(); }
      else if ((e.key === 'v' || e.key === 'V') && !cam.hidden) { e.preventDefault(); toggleCam(); }
      else if (e.key === 'Escape') {
        e.preventDefault();
        ask({ title: 'Leave the call?', detail: `You will stop hearing and seeing the others in ${title}.`, action: 'Leave call' })
          .then((yes) => { if (yes) actions.hangup(); });
      }
    };
    document.addEventListener('keydown', keys);
    if (beside) { app.classList.add('in-call'); app.appendChild(root); } else document.body.appendChild(root);
    ui = {
      root, grid, status: root.querySelector('.status'), timer: root.querySelector('.timer'), settings,
      keys, app: beside ? app : null, again: { roomId, media: kind }, started: 0, clock: null,
      hand, endAll, pager, hands: root.querySelector('.hands'), toggleMute,
    };
    page = 0;
    spoke.clear();
    order = [];
    ui.onResize = () => layout();
    window.addEventListener('resize', ui.onResize);
    for (const t of tiles) grid.appendChild(t);
    layout();
    listen(self, media.local);
    statsTimer = setInterval(actions.tick, 2000);
    mute.focus();
  }

  // Closes the call screen; with `note` ("Ben declined"), it stays, saying so, with Close and
  // Call again, until the user closes it.
  function hide(note) {
    clearInterval(statsTimer);
    if (!ui) return;
    clearInterval(ui.clock);
    if (note) {
      ui.root.classList.add('ended');
      ui.root.querySelector('.ended-text').textContent = note;
      ui.root.querySelector('.ended').hidden = false;
      ui.root.querySelector('.controls').hidden = true;
      ui.grid.hidden = true;
      ui.status.textContent = '';
      ui.timer.textContent = 'Call ended';
      ui.settings.close();
      stopMeters();
      ui.root.querySelector('.call-again').focus();
      return;
    }
    document.removeEventListener('keydown', ui.keys);
    window.removeEventListener('resize', ui.onResize);
    state = { hands: [], muted: [], host: false };
    if (ui.app) ui.app.classList.remove('in-call', 'call-chat');
    ui.settings.close();
    ui.root.remove();
    ui = null;
    stopMeters();
  }

  async function listDevices() {
    if (!ui) return;
    const list = await media.inputs();
    if (!ui) return;
    const current = (kind) => {
      const track = media.local && (kind === 'videoinput' ? media.local.getVideoTracks() : media.local.getAudioTracks())[0];
      return track ? track.getSettings().deviceId : null;
    };
    for (const [sel, kind, none] of [[ui.settings.querySelector('.camera'), 'videoinput', 'No camera'], [ui.settings.querySelector('.microphone'), 'audioinput', 'No microphone']]) {
      const mine = list.filter((d) => d.kind === kind);
      sel.replaceChildren(...mine.map((d, i) => {
        const o = el('option', '', d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${i + 1}`);
        o.value = d.deviceId;
        o.selected = d.deviceId === current(kind);
        return o;
      }));
      if (!mine.length) sel.append(el('option', '', none));
      sel.disabled = !mine.length;
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

  // The people the media server hears speaking: their tiles marked (the layout may follow).
  function speakers(users) {
    if (!ui) return;
    const now = Date.now();
    for (const u of users) spoke.set(u, now);
    for (const t of ui.grid.querySelectorAll('.tile:not(.self)')) {
      t.classList.toggle('active-speaker', users.includes(t.dataset.user));
    }
    // A speaker off the first page takes the place of whoever on it spoke least recently, if
    // they have been quiet for a while (unless the viewer went to another page).
    if (page !== 0) return;
    const tiles = ordered();
    const size = pageSize();
    if (tiles.length <= size) return;
    let moved = false;
    for (const u of users) {
      const i = order.indexOf(u);
      const first = order.slice(0, size - 1); // the others on the first page (after oneself)
      if (i < 0 || i < size - 1) continue;
      const quiet = first.filter((x) => now - (spoke.get(x) || 0) > QUIET_MS)
        .sort((a, b) => (spoke.get(a) || 0) - (spoke.get(b) || 0))[0];
      if (!quiet) continue;
      const j = order.indexOf(quiet);
      [order[i], order[j]] = [order[j], order[i]];
      moved = true;
    }
    if (moved) layout();
  }

  return {
    ready, status, alert: alertUser, ring, unring, tile, play, quality, show, hide, connected, remoteState,
    placeCallBar, clearCallBar, showJoinButtons, renderedRosters, setupButtons, speakers, layout,
    callState, mutedBy,
  };
}
