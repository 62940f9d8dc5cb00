// The actions on a message, in a small toolbar shown on hover or focus: edit (the viewer's
// own messages) and delete (their own, or anyone's for moderators). The toolbar's markup is
// the server's <template id="msg-actions">; deleting asks once more before it acts.

import { me } from './dom.js';

const CONFIRM_MS = 4000;

export function setupActions({ roomId, timeline, composer, notice }) {
  const tl = timeline.el();
  const tpl = document.getElementById('msg-actions');
  const room = document.getElementById('room');
  if (!tl || !tpl || !room || !roomId) return;
  const canRedact = room.dataset.canRedact === 'true';

  function attach(row) {
    if (!row || row.querySelector('.actions')) return;
    if (row.classList.contains('pending') || row.classList.contains('redacted') || !row.dataset.eventId) return;
    const mine = row.dataset.sender === me;
    if (!mine && !canRedact) return;
    const bar = tpl.content.firstElementChild.cloneNode(true);
    if (!mine) bar.querySelector('[data-act="edit"]').remove();
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
    try {
      const res = await fetch(`/api/v1/rooms/${encodeURIComponent(roomId)}/redact`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ event_id: row.dataset.eventId }),
      });
      if (!res.ok) {
        const err = await res.json().catch(() => ({}));
        notice(err.error || 'The message could not be deleted.');
        btn.disabled = false;
      }
    } catch {
      notice('The message could not be deleted: offline.');
      btn.disabled = false;
    }
  }

  tl.addEventListener('mouseover', (e) => attach(e.target.closest('li.msg')));
  tl.addEventListener('focusin', (e) => attach(e.target.closest('li.msg')));
  tl.addEventListener('click', (e) => {
    const btn = e.target.closest('.actions button');
    if (!btn) return;
    const row = btn.closest('li.msg');
    if (btn.dataset.act === 'edit') composer.startEdit(row);
    else if (btn.dataset.act === 'delete') remove(row, btn);
  });
}
