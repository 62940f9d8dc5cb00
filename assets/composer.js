// The composer: sends what the user types (a message, a reply, or an edit; files through
// uploads.js), keeps unsent
// messages across reconnects and reloads (sessionStorage) until the server acknowledges them,
// and tells the room who is typing.

import { displayName, randomHex } from './dom.js';

const OUTBOX_KEY = 'chat.outbox';
const TYPING_RESEND_MS = 3000;
const TYPING_STOP_MS = 4000;

export function createComposer({ roomId, live, timeline }) {
  const outbox = new Map(); // txn_id -> {room_id, body, replaces?, reply_to?}
  let typingSentAt = 0;
  let typingStopTimer = null;
  let editing = null; // {row, eventId} while the composer edits a message
  let replying = null; // {row, eventId} while the composer answers a message
  let attachments = null; // the files waiting in the composer (uploads.js)
  const form = document.getElementById('composer');
  const input = form ? form.querySelector('textarea') : null;
  const bar = document.getElementById('composer-mode');

  function showBar(what) {
    if (!bar) return;
    bar.querySelector('.what').textContent = what;
    bar.hidden = false;
  }

  function stopEdit() {
    if (!editing) return;
    editing.row.classList.remove('editing');
    editing = null;
    if (bar) bar.hidden = true;
    if (input) { input.value = ''; input.style.height = ''; }
  }

  function stopReply() {
    if (!replying) return;
    replying.row.classList.remove('replying');
    replying = null;
    if (bar) bar.hidden = true;
  }

  // Answer a message: the bar above the composer says to whom; the text typed stays.
  function startReply(row) {
    if (!input || !row || !row.dataset.eventId) return;
    stopEdit();
    stopReply();
    replying = { row, eventId: row.dataset.eventId };
    row.classList.add('replying');
    const body = row.querySelector('.body');
    const text = body ? body.textContent.replace(/\s+/g, ' ').trim() : '';
    showBar(`Replying to ${displayName(row.dataset.sender || '')}: ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`);
    input.focus();
  }

  // Edit one of the viewer's messages: its text (the newest, from the API) in the composer.
  async function startEdit(row) {
    if (!input || !row || !row.dataset.eventId) return;
    stopEdit();
    stopReply();
    const res = await fetch(`/api/v1/rooms/${encodeURIComponent(roomId)}/events/${encodeURIComponent(row.dataset.eventId)}`,
      { credentials: 'same-origin' });
    if (!res.ok) return;
    const ev = await res.json();
    const content = ev.content_now || ev.content || {};
    if (typeof content.body !== 'string') return;
    editing = { row, eventId: row.dataset.eventId };
    row.classList.add('editing');
    showBar('Editing message');
    input.value = content.body;
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  function save() {
    try { sessionStorage.setItem(OUTBOX_KEY, JSON.stringify(Array.from(outbox.entries()))); } catch { /* full or disabled */ }
  }

  function load() {
    try {
      for (const [txn, m] of JSON.parse(sessionStorage.getItem(OUTBOX_KEY) || '[]')) outbox.set(txn, m);
    } catch { /* ignore a corrupt entry */ }
  }

  function typingStarted() {
    const now = Date.now();
    if (now - typingSentAt > TYPING_RESEND_MS) {
      if (live.send({ t: 'typing', room_id: roomId, typing: true })) typingSentAt = now;
    }
    clearTimeout(typingStopTimer);
    typingStopTimer = setTimeout(typingStopped, TYPING_STOP_MS);
  }

  function typingStopped() {
    clearTimeout(typingStopTimer);
    if (typingSentAt) {
      live.send({ t: 'typing', room_id: roomId, typing: false });
      typingSentAt = 0;
    }
  }

  function setup() {
    if (!form || !roomId) return;
    if (bar) {
      const cancel = bar.querySelector('button');
      if (cancel) cancel.addEventListener('click', () => { stopEdit(); stopReply(); input.focus(); });
    }
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      let text = input.value;
      if (!editing && attachments && attachments.pending()) {
        // Files first (the text captions a single one), then what text is left.
        input.value = '';
        input.style.height = '';
        stopReply();
        typingStopped();
        text = await attachments.send(text);
      }
      if (!text.trim()) return;
      const txn_id = randomHex(12);
      if (editing) {
        const replaces = editing.eventId;
        outbox.set(txn_id, { room_id: roomId, body: text, replaces });
        save();
        live.send({ t: 'send', room_id: roomId, body: text, txn_id, replaces });
        stopEdit();
        input.focus();
        return;
      }
      timeline.addPending(txn_id, text);
      timeline.scrollToBottom();
      const m = { room_id: roomId, body: text };
      if (replying) m.reply_to = replying.eventId;
      stopReply();
      outbox.set(txn_id, m);
      save();
      typingSentAt = 0;
      clearTimeout(typingStopTimer);
      live.send({ t: 'send', txn_id, ...m });
      input.value = '';
      input.style.height = '';
      input.focus();
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      } else if (e.key === 'ArrowUp' && !input.value && !editing && !e.isComposing) {
        // Up in an empty composer edits the viewer's last message, as in Slack and Element.
        const row = timeline.lastOwnMessage();
        if (row) { e.preventDefault(); startEdit(row); }
      } else if (e.key === 'Escape' && (editing || replying)) {
        e.preventDefault();
        stopEdit();
        stopReply();
      }
    });
    input.addEventListener('blur', typingStopped);
    input.addEventListener('input', () => {
      if (input.value.trim()) typingStarted(); else typingStopped();
      input.style.height = 'auto';
      input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
    });
  }

  load();
  setup();
  return {
    // After (re)connecting: send again whatever was not acknowledged, in order.
    flush() {
      for (const [txn_id, m] of outbox) {
        const frame = { t: 'send', room_id: m.room_id, body: m.body, txn_id };
        if (m.replaces) frame.replaces = m.replaces;
        if (m.reply_to) frame.reply_to = m.reply_to;
        if (!live.send(frame)) break;
      }
    },
    startEdit,
    startReply,
    // Files waiting in the composer go with the next Send.
    attach(uploads) { attachments = uploads; },
    // Puts `text` (a mention) at the caret, with a space after it.
    insert(text) {
      if (!input) return;
      const at = input.selectionStart ?? input.value.length;
      const before = input.value.slice(0, at);
      const pad = before && !/\s$/.test(before) ? ' ' : '';
      input.value = `${before}${pad}${text} ${input.value.slice(input.selectionEnd ?? at)}`;
      const caret = before.length + pad.length + text.length + 1;
      input.focus();
      input.setSelectionRange(caret, caret);
      input.dispatchEvent(new Event('input'));
    },
    isEdit(txnId) { const m = outbox.get(txnId); return !!(m && m.replaces); },
    acknowledged(txnId) { outbox.delete(txnId); save(); },
    refused(txnId) { outbox.delete(txnId); save(); },
  };
}
