// The actions on a message, in a small toolbar shown on hover or focus: quick reactions, the
// reaction picker, reply, pin, copy link, edit (the viewer's own messages) and delete (their
// own, or anyone's for moderators). The toolbar's markup is the server's <template id="msg-actions">; deleting
// asks once more before it acts. A reaction button under a message adds the viewer's
// reaction with that key, or takes it back (a redaction of their reaction).

import { me, randomHex } from './dom.js';
import { openPicker } from './picker.js';

const CONFIRM_MS = 4000;

export function setupActions({ roomId, timeline, composer, notice }) {
  const tl = timeline.el();
  const tpl = document.getElementById('msg-actions');
  const room = document.getElementById('room');
  if (!tl || !tpl || !room || !roomId) return;
  const canRedact = room.dataset.canRedact === 'true';
  const canPin = room.dataset.canPin === 'true';
  const pinnedIds = () => ((document.getElementById('pins') || {}).dataset || {}).pinned || '';
  const api = (what) => `/api/v1/rooms/${encodeURIComponent(roomId)}/${what}`;

  async function post(what, body, failed) {
    try {
      const res = await fetch(api(what), {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.ok) return true;
      const err = await res.json().catch(() => ({}));
      notice(err.message || err.error || failed);
    } catch {
      notice(`${failed} You are offline.`);
    }
    return false;
  }

  // Copies the address of the message (/rooms/{id}/events/{event}); where the clipboard API
  // is not offered (plain HTTP on another host) through a selected field and the copy command.
  async function copyLink(row) {
    const url = `${location.origin}/rooms/${encodeURIComponent(roomId)}/events/${encodeURIComponent(row.dataset.eventId)}`;
    try {
      await navigator.clipboard.writeText(url);
    } catch {
      const field = document.createElement('textarea');
      field.value = url;
      field.setAttribute('readonly', '');
      field.style.position = 'fixed';
      field.style.opacity = '0';
      document.body.appendChild(field);
      field.select();
      const copied = document.execCommand('copy');
      field.remove();
      if (!copied) { notice(`Link: ${url}`, true); return; }
    }
    notice('Link copied.', true);
  }

  function attach(row) {
    if (!row || row.querySelector('.actions')) return;
    if (row.classList.contains('pending') || row.classList.contains('redacted') || !row.dataset.eventId) return;
    const mine = row.dataset.sender === me;
    const bar = tpl.content.firstElementChild.cloneNode(true);
    if (!mine) bar.querySelector('[data-act="edit"]').remove();
    if (!mine && !canRedact) bar.querySelector('[data-act="delete"]').remove();
    const pin = bar.querySelector('[data-act="pin"]');
    if (!canPin) pin.remove();
    else if (pinnedIds().split(' ').includes(row.dataset.eventId)) {
      pin.dataset.pinned = 'true';
      pin.textContent = 'Unpin';
      pin.setAttribute('aria-label', 'Unpin message');
    }
    row.appendChild(bar);
  }

  async function remove(row, btn) {
    if (!btn.classList.contains('confirm')) {
      btn.classList.add('confirm');
      btn.textContent = 'Delete?';
      btn.setAttribute('aria-label', 'Confirm: delete this message');
      setTimeout(() => {
        btn.classList.remove('confirm');
        btn.textContent = 'Delete';
        btn.setAttribute('aria-label', 'Delete message');
      }, CONFIRM_MS);
      return;
    }
    btn.disabled = true;
    if (!await post('redact', { event_id: row.dataset.eventId }, 'The message could not be deleted.')) btn.disabled = false;
  }

  // The viewer's reaction with `key` on `row`, if they have one: its event id.
  function myReaction(row, key) {
    for (const chip of row.querySelectorAll('.reactions .reaction')) {
      if (chip.dataset.key !== key) continue;
      const by = JSON.parse(chip.dataset.by || '[]');
      const own = by.find(([sender]) => sender === me);
      return own ? own[1] : null;
    }
    return null;
  }

  // Adds the viewer's reaction, or takes it back if they have one with that key.
  function toggle(row, key) {
    if (!row || !row.dataset.eventId || row.classList.contains('redacted')) return;
    const own = myReaction(row, key);
    if (own) post('redact', { event_id: own }, 'The reaction could not be removed.');
    else post('reactions', { event_id: row.dataset.eventId, key, txn_id: randomHex(12) }, 'The reaction could not be added.');
  }

  // A pinned message in the header: go to it.
  const head = room.querySelector('.room-head');
  if (head) {
    head.addEventListener('click', (e) => {
      const a = e.target.closest('.pins a[data-jump]');
      if (!a) return;
      e.preventDefault();
      const d = a.closest('details');
      if (d) d.open = false;
      timeline.jumpTo(a.dataset.jump, Number(a.dataset.pos || 0));
    });
  }

  tl.addEventListener('mouseover', (e) => attach(e.target.closest('li.msg')));
  // A long press on a touch screen opens the toolbar (instead of the browser's menu), as a
  // tap on the message does.
  tl.addEventListener('contextmenu', (e) => {
    const row = e.target.closest('li.msg');
    if (!row || !window.matchMedia('(pointer: coarse)').matches || e.target.closest('a')) return;
    e.preventDefault();
    attach(row);
    row.focus();
  });
  tl.addEventListener('focusin', (e) => attach(e.target.closest('li.msg')));
  tl.addEventListener('click', (e) => {
    const quote = e.target.closest('.quote[data-quote-of]');
    if (quote) {
      e.preventDefault();
      timeline.jumpTo(quote.dataset.quoteOf, Number(quote.dataset.pos || 0));
      return;
    }
    const chip = e.target.closest('.reactions .reaction');
    if (chip) { toggle(chip.closest('li.msg'), chip.dataset.key); return; }
    const btn = e.target.closest('.actions button, .reactions .add-reaction');
    if (!btn) return;
    const row = btn.closest('li.msg');
    switch (btn.dataset.act) {
      case 'quick': toggle(row, btn.dataset.key); break;
      case 'react': openPicker(btn, (key) => { if (!myReaction(row, key)) toggle(row, key); }); break;
      case 'reply': composer.startReply(row); break;
      case 'edit': composer.startEdit(row); break;
      case 'pin':
        btn.closest('.actions').remove(); // rebuilt, with Pin or Unpin, on the next hover
        post('pins', { event_id: row.dataset.eventId, pinned: btn.dataset.pinned !== 'true' }, 'The pins could not be changed.');
        break;
      case 'delete': remove(row, btn); break;
      case 'link': copyLink(row); break;
      default: break;
    }
  });
}
