// chat live client: keeps server-rendered pages live over one WebSocket per tab.
// The server renders every fragment (same maud functions as the page); this file only places
// them, sends what the user types, and reconnects. No framework, no build step.

import { createCalls } from './call.js';

const body = document.body;
const me = body.dataset.user;
const roomEl = document.getElementById('room');
const currentRoom = roomEl ? roomEl.dataset.roomId : null;
const connEl = document.getElementById('conn');
let since = Number(body.dataset.since || 0);
let ws = null;
let attempt = 0;
let live = false;
const outbox = new Map(); // txn_id -> {room_id, body}
const pendingByEvent = new Map(); // event_id -> pending <li>

function timelineEl() { return document.getElementById('timeline'); }

function setConn(state, text) {
  if (!connEl) return;
  connEl.dataset.state = state;
  connEl.textContent = text || '';
  connEl.title = text || 'Live';
}

function localize(root) {
  for (const t of root.querySelectorAll('time[data-ts]')) {
    const d = new Date(Number(t.dataset.ts));
    t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    t.title = d.toLocaleString();
  }
  if (me) {
    for (const li of root.querySelectorAll('li.msg')) {
      if (li.dataset.sender === me) li.classList.add('mine');
    }
  }
}

function fragment(html) {
  const t = document.createElement('template');
  t.innerHTML = html;
  return t.content;
}

function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 120; }

function scrollToBottom() {
  const tl = timelineEl();
  if (tl) tl.scrollTop = tl.scrollHeight;
}

function lastPos() {
  const tl = timelineEl();
  const items = tl ? tl.querySelectorAll('li[data-pos]') : [];
  return items.length ? Number(items[items.length - 1].dataset.pos) : 0;
}

function markRead() {
  if (!currentRoom || document.visibilityState !== 'visible') return;
  const pos = lastPos();
  if (pos) send({ t: 'read', room_id: currentRoom, pos });
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN && live) {
    ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function bumpBadge(roomId, mentioned) {
  const link = document.querySelector(`#room-list a[data-room-id="${CSS.escape(roomId)}"]`);
  if (!link) { refreshRoomList(); return; }
  const badge = link.querySelector('.badge.unread');
  if (!badge) return;
  setBadge(link, '.badge.unread', Number(badge.dataset.count || 0) + 1, '');
  if (mentioned) {
    const m = link.querySelector('.badge.mention');
    setBadge(link, '.badge.mention', Number((m && m.dataset.count) || 0) + 1, '@');
  }
  const li = link.closest('li');
  if (li && li.parentElement) li.parentElement.prepend(li);
}

async function refreshRoomList() {
  const res = await fetch('/fragments/rooms', { credentials: 'same-origin' });
  if (!res.ok) return;
  const list = document.getElementById('room-list');
  if (!list) return;
  const next = fragment(await res.text()).firstElementChild;
  if (!next) return;
  if (currentRoom) {
    const a = next.querySelector(`a[data-room-id="${CSS.escape(currentRoom)}"]`);
    if (a) a.closest('li').classList.add('active');
  }
  list.replaceWith(next);
}

async function refreshMembers() {
  if (!currentRoom) return;
  const res = await fetch(`/rooms/${encodeURIComponent(currentRoom)}/members`, { credentials: 'same-origin' });
  const old = document.getElementById('members');
  if (!res.ok || !old) return;
  const next = fragment(await res.text()).firstElementChild;
  if (next) old.replaceWith(next);
}

// Places an event in stream order: before any later event already shown, and before this
// tab's own messages still waiting for their ack (which have no position yet).
function insertByPos(tl, node, pos) {
  const later = Array.from(tl.querySelectorAll('li.ev[data-pos]')).find((li) => Number(li.dataset.pos) > pos);
  const before = later || tl.querySelector('li.pending');
  if (before) tl.insertBefore(node, before); else tl.appendChild(node);
}

function mentionsMe(ev) {
  const m = ev.content && ev.content['m.mentions'];
  return !!(m && Array.isArray(m.user_ids) && m.user_ids.includes(me));
}

function onEvent(f) {
  if (f.pos > since) since = f.pos;
  const ev = f.event;
  if (calls && ev.type.startsWith('m.call.')) calls.onSignal(f);
  const isMember = ev.type === 'm.room.member';
  if (f.room_id !== currentRoom) {
    if (isMember && ev.state_key === me) refreshRoomList();
    else if (ev.type === 'm.room.message' && ev.sender !== me) bumpBadge(f.room_id, mentionsMe(ev));
    return;
  }
  const tl = timelineEl();
  if (!tl) { if (isMember && ev.state_key === me) location.reload(); return; }
  if (document.getElementById(`ev-${f.pos}`)) return;
  const stick = nearBottom(tl) || ev.sender === me;
  const node = fragment(f.html);
  localize(node);
  const pending = pendingByEvent.get(ev.event_id);
  if (pending) { pending.replaceWith(node); pendingByEvent.delete(ev.event_id); } else {
    if (document.visibilityState !== 'visible' && ev.type === 'm.room.message' && ev.sender !== me
        && !document.getElementById('new-divider')) {
      const d = document.createElement('li');
      d.className = 'divider';
      d.id = 'new-divider';
      const label = document.createElement('span');
      label.textContent = 'New messages';
      d.appendChild(label);
      insertByPos(tl, d, f.pos);
    }
    insertByPos(tl, node, f.pos);
  }
  if (ev.type === 'm.room.message') {
    // A typist who sent is no longer typing.
    const el = document.getElementById('typing');
    if (el && ev.sender !== me && el.textContent.startsWith(displayName(ev.sender) + ' ')) el.textContent = '';
  }
  if (stick) scrollToBottom();
  if (isMember) {
    refreshMembers();
    if (ev.state_key === me && ev.content.membership !== 'join') location.assign('/rooms');
  }
  markRead();
}

// A call signal on the priority lane: handled at once, and its timeline row (the end of a call)
// placed by position. It does not move `since`: messages before it may still be on their way.
function onCallFrame(f) {
  if (calls) calls.onSignal(f);
  const tl = timelineEl();
  if (f.room_id !== currentRoom || !tl || document.getElementById(`ev-${f.pos}`)) return;
  const stick = nearBottom(tl);
  const node = fragment(f.html);
  localize(node);
  insertByPos(tl, node, f.pos);
  if (stick) scrollToBottom();
}

// Unsent messages survive a reload: they are kept in sessionStorage until acknowledged.
const OUTBOX_KEY = 'chat.outbox';

function saveOutbox() {
  try { sessionStorage.setItem(OUTBOX_KEY, JSON.stringify(Array.from(outbox.entries()))); } catch { /* full or disabled */ }
}

function loadOutbox() {
  try {
    for (const [txn, m] of JSON.parse(sessionStorage.getItem(OUTBOX_KEY) || '[]')) outbox.set(txn, m);
  } catch { /* ignore a corrupt entry */ }
}

function onAck(f) {
  outbox.delete(f.txn_id);
  saveOutbox();
  const li = document.querySelector(`li.pending[data-txn="${CSS.escape(f.txn_id)}"]`);
  if (!li) return;
  const existing = document.querySelector(`li[data-event-id="${CSS.escape(f.event_id)}"]:not(.pending)`);
  if (existing) { li.remove(); return; }
  li.classList.remove('failed');
  li.classList.add('sent');
  pendingByEvent.set(f.event_id, li);
}

function onError(f) {
  const li = f.txn_id && document.querySelector(`li.pending[data-txn="${CSS.escape(f.txn_id)}"]`);
  if (li) {
    outbox.delete(f.txn_id);
    saveOutbox();
    li.classList.add('failed');
    li.title = f.message;
    const why = li.querySelector('.why');
    if (why) why.textContent = f.message;
  } else {
    console.warn('chat:', f.message);
  }
}

function flushOutbox() {
  for (const [txn_id, m] of outbox) {
    if (!send({ t: 'send', room_id: m.room_id, body: m.body, txn_id })) break;
  }
}

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  ws = new WebSocket(`${proto}//${location.host}/ws?since=${since}`);
  ws.onopen = () => { attempt = 0; };
  ws.onmessage = (m) => {
    let f;
    try { f = JSON.parse(m.data); } catch { return; }
    switch (f.t) {
      case 'event': onEvent(f); break;
      case 'call': onCallFrame(f); break;
      case 'call_roster': if (calls) calls.onRoster(f); break;
      case 'ready':
        since = Math.max(since, f.pos);
        live = true;
        setConn('live', '');
        flushOutbox();
        if (calls) calls.onReady();
        reportActivity(true);
        markRead();
        break;
      case 'resync': location.reload(); break;
      case 'room_deleted':
        if (f.room_id === currentRoom) location.assign('/rooms');
        else refreshRoomList();
        break;
      case 'ack': onAck(f); break;
      case 'error': onError(f); break;
      case 'presence': onPresence(f); break;
      case 'typing': onTyping(f); break;
      case 'receipt': onReceipt(f); break;
      case 'unread': onUnread(f); break;
      default: break;
    }
  };
  ws.onclose = (e) => {
    live = false;
    if (e.code === 4001) { location.assign('/login'); return; }
    setConn('reconnecting', navigator.onLine ? 'reconnecting…' : 'offline');
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random());
    attempt = Math.min(attempt + 1, 6);
    setTimeout(connect, delay);
  };
}

// --- presence ---------------------------------------------------------------------------
const IDLE_AFTER_MS = 5 * 60 * 1000;
let lastInput = Date.now();
let reported = null;

function setPresence(user, state) {
  for (const el of document.querySelectorAll(`[data-presence-user="${CSS.escape(user)}"]`)) {
    el.dataset.presence = state;
    el.title = state;
  }
}

function onPresence(f) {
  if (f.users) {
    // Snapshot after (re)connecting, in chunks: the first resets everyone to offline.
    if (f.reset) {
      for (const el of document.querySelectorAll('[data-presence-user]')) {
        el.dataset.presence = 'offline';
        el.title = 'offline';
      }
    }
    for (const [user, state] of Object.entries(f.users)) setPresence(user, state);
  } else {
    setPresence(f.user_id, f.presence);
  }
}

function currentActivity() {
  return document.visibilityState === 'visible' && Date.now() - lastInput < IDLE_AFTER_MS ? 'online' : 'idle';
}

function reportActivity(force) {
  const state = currentActivity();
  if (force || state !== reported) {
    if (send({ t: 'presence', state })) reported = state;
  }
}

for (const ev of ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart']) {
  window.addEventListener(ev, () => {
    lastInput = Date.now();
    if (reported === 'idle') reportActivity(false);
  }, { passive: true });
}
setInterval(() => reportActivity(false), 30000);

// --- typing -----------------------------------------------------------------------------
const TYPING_RESEND_MS = 3000;
const TYPING_STOP_MS = 4000;
let typingSentAt = 0;
let typingStopTimer = null;

function typingStarted() {
  const now = Date.now();
  if (now - typingSentAt > TYPING_RESEND_MS) {
    if (send({ t: 'typing', room_id: currentRoom, typing: true })) typingSentAt = now;
  }
  clearTimeout(typingStopTimer);
  typingStopTimer = setTimeout(typingStopped, TYPING_STOP_MS);
}

function typingStopped() {
  clearTimeout(typingStopTimer);
  if (typingSentAt) {
    send({ t: 'typing', room_id: currentRoom, typing: false });
    typingSentAt = 0;
  }
}

function displayName(id) { return id.replace(/^@/, '').split(':')[0]; }

function onTyping(f) {
  if (f.room_id !== currentRoom) return;
  const el = document.getElementById('typing');
  if (!el) return;
  const names = f.user_ids.filter((u) => u !== me).map(displayName);
  el.textContent = names.length === 0 ? ''
    : names.length === 1 ? `${names[0]} is typing…`
      : names.length === 2 ? `${names[0]} and ${names[1]} are typing…`
        : 'Several people are typing…';
}

// --- receipts and unread counts ---------------------------------------------------------
function onReceipt(f) {
  if (f.room_id !== currentRoom || f.user_id === me) return;
  const tl = timelineEl();
  if (!tl) return;
  const old = tl.querySelector(`li.seen .receipt[data-user="${CSS.escape(f.user_id)}"]`);
  if (old) {
    const row = old.parentElement;
    old.remove();
    if (row && !row.children.length) row.remove();
  }
  const msgs = Array.from(tl.querySelectorAll('li.msg[data-pos]')).filter((li) => Number(li.dataset.pos) <= f.pos);
  const at = msgs[msgs.length - 1];
  if (!at) return;
  let row = at.nextElementSibling;
  if (!row || !row.classList.contains('seen')) {
    row = document.createElement('li');
    row.className = 'seen';
    row.dataset.pos = at.dataset.pos;
    at.after(row);
  }
  row.appendChild(fragment(f.html));
}

function setBadge(link, selector, n, prefix) {
  const badge = link.querySelector(selector);
  if (!badge) return;
  badge.dataset.count = String(n);
  badge.textContent = prefix + (n >= 100 ? '99+' : String(n));
  badge.hidden = n === 0;
}

function onUnread(f) {
  const link = document.querySelector(`#room-list a[data-room-id="${CSS.escape(f.room_id)}"]`);
  if (link) {
    setBadge(link, '.badge.unread', f.unread, '');
    setBadge(link, '.badge.mention', f.mentions, '@');
  }
}

function txnId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function setupComposer() {
  const form = document.getElementById('composer');
  if (!form || !currentRoom) return;
  const input = form.querySelector('textarea');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    const txn_id = txnId();
    const li = document.createElement('li');
    li.className = 'ev msg mine pending';
    li.dataset.txn = txn_id;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = me ? me.slice(1).split(':')[0] : '';
    const bodyEl = document.createElement('div');
    bodyEl.className = 'body';
    bodyEl.textContent = text;
    const why = document.createElement('span');
    why.className = 'why';
    li.append(who, bodyEl, why);
    timelineEl().appendChild(li);
    scrollToBottom();
    outbox.set(txn_id, { room_id: currentRoom, body: text });
    saveOutbox();
    typingSentAt = 0;
    clearTimeout(typingStopTimer);
    send({ t: 'send', room_id: currentRoom, body: text, txn_id });
    input.value = '';
    input.style.height = '';
    input.focus();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  input.addEventListener('blur', typingStopped);
  input.addEventListener('input', () => {
    if (input.value.trim()) typingStarted(); else typingStopped();
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  });
}

function setupHistory() {
  const tl = timelineEl();
  if (!tl || !currentRoom) return;
  let loading = false;
  const loadOlder = async () => {
    const next = tl.dataset.next;
    if (loading || !next || tl.scrollTop > 150) return;
    loading = true;
    try {
      const res = await fetch(`/rooms/${encodeURIComponent(currentRoom)}/history?before=${encodeURIComponent(next)}`,
        { credentials: 'same-origin' });
      if (!res.ok) return;
      const tpl = fragment(await res.text()).querySelector('template');
      if (!tpl) return;
      const items = tpl.content;
      localize(items);
      const before = tl.scrollHeight;
      const start = tl.querySelector('li.start');
      if (start) start.remove();
      tl.prepend(items);
      tl.scrollTop += tl.scrollHeight - before;
      if (tpl.dataset.next) tl.dataset.next = tpl.dataset.next; else delete tl.dataset.next;
    } finally {
      loading = false;
    }
  };
  tl.addEventListener('scroll', loadOlder, { passive: true });
  // A short first page may not fill the screen: keep loading until it scrolls or ends.
  requestAnimationFrame(loadOlder);
}

let calls = null;
localize(document);
if (me) {
  calls = createCalls({ me, send, displayName, currentRoom });
  window.chatCalls = calls;
  loadOutbox();
  setupComposer();
  setupHistory();
  scrollToBottom();
  connect();
  document.addEventListener('visibilitychange', () => {
    reportActivity(false);
    markRead();
    if (document.visibilityState === 'visible') setTimeout(() => {
      const d = document.getElementById('new-divider');
      if (d && document.visibilityState === 'visible') d.remove();
    }, 5000);
  });
}
