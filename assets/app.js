// chat live client: keeps server-rendered pages live over one WebSocket per tab. The server
// renders every fragment (the same maud functions as the page); the modules place them, send
// what the user types, and reconnect. No framework, no build step.
//
//   live.js      the connection: resume, reconnect, send
//   timeline.js  the room's rows keyed by event id: insert, replace, remove; pending rows
//   composer.js  sending and editing, the unsent-message outbox, typing notices
//   actions.js   the toolbar on a message: react, reply, edit, delete; reaction buttons
//   picker.js    the emoji picker for reactions (emoji.js: the list, loaded when it opens)
//   mentions.js  "@" suggestions in the composer; rows that mention the viewer marked
//   profile.js   a person's card (message them, mention them) from a name or a face
//   uploads.js   files into the composer (attach, paste, drop), uploaded with progress
//   viewer.js    an image shown large over the page, arrows for the room's others
//   voice.js     voice messages: record (click, or hold), level, length, waveform
//   presence.js  presence, typing, receipts, unread badges, room list and members
//   notify.js    desktop notifications (and their sound); push.js: Web Push on the settings page
//   confirm.js   a dialog before what is not easily undone (forms with data-confirm)
//   keys.js      Ctrl/Cmd+K switcher, Alt+↑/↓, Esc; the room info drawer; the room filter;
//                the screen reader's live region
//   call.js      calls (WebRTC): call_signals.js, call_media.js and call_ui.js

import { setupActions } from './actions.js';
import { createCalls } from './call.js';
import { createComposer } from './composer.js';
import { setupConfirm } from './confirm.js';
import { announce, setupKeys } from './keys.js';
import { displayName, localize, me, onLocalize, setName, swapIn } from './dom.js';
import { createLive } from './live.js';
import { createNotifications } from './notify.js';
import { setupPush } from './push.js';
import { showQueued } from './offline.js';
import { markMentions, setupMentions } from './mentions.js';
import { setupProfiles } from './profile.js';
import { createPresence } from './presence.js';
import { createTimeline } from './timeline.js';
import { setupUploads } from './uploads.js';
import { setupViewer } from './viewer.js';
import { setupVoice } from './voice.js';

const roomEl = document.getElementById('room');
const currentRoom = roomEl ? roomEl.dataset.roomId : null;
const connEl = document.getElementById('conn');

function setConn(state) {
  if (!connEl) return;
  const text = state === 'live' ? '' : state === 'offline' ? 'offline' : 'reconnecting…';
  connEl.dataset.state = state === 'offline' ? 'reconnecting' : state;
  connEl.textContent = text;
  connEl.title = text || 'Live';
}

// An edit (`m.replace`) is no new message: it changes one.
function isEdit(ev) {
  const rel = ev.content && ev.content['m.relates_to'];
  return !!(rel && rel.rel_type === 'm.replace');
}

// A short message under the timeline (an action that failed), gone after a while.
let noticeTimer = null;
// Shows `text` under the timeline for a few seconds: a problem, or with `ok` a confirmation.
function notice(text, ok = false) {
  const el = document.getElementById('notice');
  if (!el) { console.warn('chat:', text); return; }
  el.textContent = text;
  el.classList.toggle('ok', ok);
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

function mentionsMe(ev) {
  const m = ev.content && ev.content['m.mentions'];
  return !!(m && Array.isArray(m.user_ids) && m.user_ids.includes(me));
}

// The tab's title counts what is unread: the other rooms' badges, and messages that came in
// this room while the tab was hidden ("(3) Lobby · chat").
const baseTitle = document.title;
let hiddenNew = 0;
function showTitle() {
  let n = hiddenNew;
  for (const b of document.querySelectorAll('#room-list .badge.unread')) {
    const link = b.closest('a[data-room-id]');
    if (link && link.dataset.roomId !== currentRoom) n += Number(b.dataset.count || 0);
  }
  document.title = n ? `(${n > 99 ? '99+' : n}) ${baseTitle}` : baseTitle;
  showFavicon(n);
  // The room header's way back to the list (phones) counts the other rooms' unread.
  const back = document.getElementById('back-unread');
  if (back) {
    const elsewhere = n - hiddenNew;
    back.textContent = elsewhere > 99 ? '99+' : String(elsewhere);
    back.hidden = elsewhere <= 0;
  }
}

// The tab's icon with a red badge while something is unread (drawn once per count).
const iconLink = document.querySelector('link[rel="icon"]');
const iconHref = iconLink ? iconLink.href : null;
let iconImage = null;
let iconShown = 0;
function showFavicon(n) {
  if (!iconLink || n === iconShown) return;
  iconShown = n;
  if (!n) { iconLink.href = iconHref; iconLink.type = 'image/svg+xml'; return; }
  const draw = () => {
    if (iconShown !== n) return;
    const c = document.createElement('canvas');
    c.width = 64;
    c.height = 64;
    const g = c.getContext('2d');
    if (!g) return;
    g.drawImage(iconImage, 0, 0, 64, 64);
    g.fillStyle = '#d92d20';
    g.beginPath();
    g.arc(44, 20, 20, 0, 2 * Math.PI);
    g.fill();
    g.fillStyle = '#ffffff';
    g.font = 'bold 26px system-ui, sans-serif';
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.fillText(n > 9 ? '9+' : String(n), 44, 21);
    iconLink.type = 'image/png';
    iconLink.href = c.toDataURL('image/png');
  };
  if (iconImage && iconImage.complete) { draw(); return; }
  iconImage = new Image();
  iconImage.onload = draw;
  iconImage.src = iconHref;
}

if (me) {
  const timeline = createTimeline(currentRoom);
  const live = createLive({ since: Number(document.body.dataset.since || 0), onFrame, onState: setConn });
  const composer = createComposer({ roomId: currentRoom, live, timeline });
  const presence = createPresence({ roomId: currentRoom, live, timeline });
  const calls = createCalls({ me, send: live.send, displayName, currentRoom, notice });
  const notifications = createNotifications({ currentRoom });
  window.chatCalls = calls;

  const markRead = () => {
    if (!currentRoom || document.visibilityState !== 'visible') return;
    const pos = timeline.lastPos();
    if (pos) live.send({ t: 'read', room_id: currentRoom, pos });
  };

  // A committed event (`event` frame).
  function onEvent(f) {
    live.seen(f.pos);
    const ev = f.event;
    if (ev.type.startsWith('m.call.')) calls.onSignal(f);
    const isMember = ev.type === 'm.room.member';
    if (ev.type === 'm.room.message' && !isEdit(ev)) presence.preview(f.room_id, ev, f.preview);
    if (f.room_id !== currentRoom) {
      if (isMember && ev.state_key === me) presence.refreshRoomList();
      else if (ev.type === 'm.room.message' && ev.sender !== me && !isEdit(ev)) {
        presence.bump(f.room_id, mentionsMe(ev));
        showTitle();
      }
      return;
    }
    if (!timeline.el()) { if (isMember && ev.state_key === me) location.reload(); return; }
    const stick = !timeline.detached() && (timeline.nearBottom() || (ev.sender === me && !isEdit(ev)));
    const unseen = document.visibilityState !== 'visible' && ev.type === 'm.room.message' && ev.sender !== me
      && !isEdit(ev);
    timeline.put(ev.event_id, f.pos, f.html, { beforeInsert: (pos) => { if (unseen) timeline.divider(pos); } });
    // A redaction: the message it takes back says "Message deleted" in its place.
    if (ev.type === 'm.room.redaction' && typeof ev.content.redacts === 'string') timeline.applyRedaction(ev.content.redacts);
    if (ev.type === 'm.room.message' && !isEdit(ev)) {
      presence.messageFrom(ev.sender);
      if (ev.sender !== me && f.preview) announce(`${displayName(ev.sender)}: ${f.preview}`);
    }
    if (stick) timeline.scrollToBottom();
    else if (ev.type === 'm.room.message' && !isEdit(ev)) timeline.arrivedWhileAway();
    if (unseen) { hiddenNew += 1; showTitle(); }
    // The pins changed, or a pinned message did: the header's list comes again.
    const pins = document.getElementById('pins');
    const touched = ev.type === 'm.room.redaction' ? ev.content.redacts
      : ev.content && ev.content['m.relates_to'] && ev.content['m.relates_to'].event_id;
    if (ev.type === 'm.room.pinned_events' || (pins && touched && pins.dataset.pinned.split(' ').includes(touched))) {
      swapIn(`/rooms/${encodeURIComponent(currentRoom)}/pins`, 'pins');
    }
    if (isMember) {
      // A name that changes shows everywhere on the page at once.
      if (setName(ev.state_key, ev.content.membership === 'join' || ev.content.membership === 'invite'
        ? ev.content.displayname : null)) localize(document);
      presence.refreshMembers();
      if (ev.state_key === me && ev.content.membership !== 'join') location.assign('/rooms');
    }
    markRead();
  }

  // A call signal on the priority lane: handled at once, and its timeline row (the end of a
  // call) placed by position. It does not move the resume position: messages before it may
  // still be on their way.
  function onCallFrame(f) {
    calls.onSignal(f);
    if (f.room_id !== currentRoom || !timeline.el()) return;
    const stick = !timeline.detached() && timeline.nearBottom();
    timeline.put(f.event.event_id, f.pos, f.html);
    if (stick) timeline.scrollToBottom();
  }

  function onFrame(f) {
    // Room calls' rosters, the media server's frames, a host's actions and their refusals.
    if (calls.onFrame(f)) return;
    switch (f.t) {
      case 'event': onEvent(f); break;
      case 'call': onCallFrame(f); break;
      case 'ready':
        composer.flush();
        calls.onReady(f);
        presence.report(true);
        markRead();
        break;
      case 'resync': location.reload(); break;
      case 'room_deleted':
        if (f.room_id === currentRoom) location.assign('/rooms');
        else presence.refreshRoomList();
        break;
      case 'ack':
        composer.acknowledged(f.txn_id);
        timeline.acknowledged(f.txn_id, f.event_id);
        break;
      case 'error':
        if (f.txn_id && composer.isEdit(f.txn_id)) { composer.refused(f.txn_id); notice(`Not edited: ${f.message}`); }
        else if (f.txn_id && timeline.failed(f.txn_id, f.message)) composer.refused(f.txn_id);
        else console.warn('chat:', f.message);
        break;
      case 'notify': notifications.onNotify(f); break;
      case 'presence': presence.onPresence(f); break;
      case 'typing': presence.onTyping(f); break;
      case 'receipt': presence.onReceipt(f); break;
      case 'unread': presence.onUnread(f); showTitle(); break;
      default: break;
    }
  }

  setupActions({ roomId: currentRoom, timeline, composer, notice });
  const uploads = setupUploads({ roomId: currentRoom, notice, timeline });
  if (uploads) composer.attach(uploads);
  setupVoice({ uploads, notice });
  setupViewer();
  setupMentions({ roomId: currentRoom, input: document.querySelector('#composer textarea') });
  onLocalize(markMentions);
  setupProfiles({ mention: composer.insert, roomId: currentRoom, notice });
  localize(document);
  timeline.decorate();
  timeline.setupHistory();
  timeline.setupJump();
  timeline.scrollToBottom();
  // A link to a message (/rooms/{id}/events/{event}) opens the room there.
  if (roomEl && roomEl.dataset.jump) timeline.jumpTo(roomEl.dataset.jump, Number(roomEl.dataset.jumpPos || 0));
  showTitle();
  live.connect();
  document.addEventListener('visibilitychange', () => {
    presence.report(false);
    markRead();
    if (document.visibilityState === 'visible') { hiddenNew = 0; showTitle(); }
    if (document.visibilityState === 'visible') setTimeout(() => {
      const d = document.getElementById('new-divider');
      if (d && document.visibilityState === 'visible') d.remove();
    }, 5000);
  });
} else {
  localize(document);
  if (document.getElementById('offline')) showQueued();
}
if (document.getElementById('push')) setupPush();
setupConfirm();
setupKeys();

// The service worker: the app shell kept for offline use (secure origins only), registered
// once the page has loaded so its downloads do not compete with the page's.
if ('serviceWorker' in navigator && window.isSecureContext) {
  const register = () => navigator.serviceWorker.register('/sw.js').catch(() => { /* no offline page then */ });
  if (document.readyState === 'complete') register(); else window.addEventListener('load', register, { once: true });
}
