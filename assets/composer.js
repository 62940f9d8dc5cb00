// The composer: sends what the user types, keeps unsent messages across reconnects and reloads
// (sessionStorage) until the server acknowledges them, and tells the room who is typing.

import { randomHex } from './dom.js';

const OUTBOX_KEY = 'chat.outbox';
const TYPING_RESEND_MS = 3000;
const TYPING_STOP_MS = 4000;

export function createComposer({ roomId, live, timeline }) {
  const outbox = new Map(); // txn_id -> {room_id, body}
  let typingSentAt = 0;
  let typingStopTimer = null;

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
    const form = document.getElementById('composer');
    if (!form || !roomId) return;
    const input = form.querySelector('textarea');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      const txn_id = randomHex(12);
      timeline.addPending(txn_id, text);
      timeline.scrollToBottom();
      outbox.set(txn_id, { room_id: roomId, body: text });
      save();
      typingSentAt = 0;
      clearTimeout(typingStopTimer);
      live.send({ t: 'send', room_id: roomId, body: text, txn_id });
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

  load();
  setup();
  return {
    // After (re)connecting: send again whatever was not acknowledged, in order.
    flush() {
      for (const [txn_id, m] of outbox) {
        if (!live.send({ t: 'send', room_id: m.room_id, body: m.body, txn_id })) break;
      }
    },
    acknowledged(txnId) { outbox.delete(txnId); save(); },
    refused(txnId) { outbox.delete(txnId); save(); },
  };
}
