// The room's timeline, keyed by event id: rows are inserted in stream order, replaced in place
// and removed by event id, so edits, reactions, redactions and threads have one place to go.
// Every row is a server fragment; the pending row of an unsent message is a clone of the
// server's <template id="pending-item">.

import { fragment, localize, me } from './dom.js';

export function createTimeline(roomId) {
  const el = () => document.getElementById('timeline');
  const pendingByEvent = new Map(); // event_id -> pending row, acknowledged, not yet seen live

  function rows() { const tl = el(); return tl ? Array.from(tl.querySelectorAll('li.ev[data-pos]')) : []; }

  function byEvent(id) {
    const tl = el();
    return tl ? tl.querySelector(`li[data-event-id="${CSS.escape(id)}"]:not(.pending)`) : null;
  }

  // Places a row in stream order: before the first later row (binary search over the rows,
  // which are in order), and before this tab's own messages waiting for their ack.
  function insertByPos(node, pos) {
    const tl = el();
    const all = rows();
    let lo = 0;
    let hi = all.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Number(all[mid].dataset.pos) > pos) hi = mid; else lo = mid + 1;
    }
    const before = all[lo] || tl.querySelector('li.pending');
    if (before) tl.insertBefore(node, before); else tl.appendChild(node);
  }

  // An edit's row (hidden) carries the new body in a <template>: it goes into the edited
  // message's row, if that row is shown, is the same sender's and was not deleted.
  function applyEdit(editRow) {
    const original = byEvent(editRow.dataset.replaces);
    const tpl = editRow.querySelector('template');
    if (!original || !tpl || original.classList.contains('redacted')) return;
    if (original.dataset.sender !== editRow.dataset.sender) return;
    const since = Number(original.dataset.editTs || 0);
    const ts = Number(editRow.dataset.ts || 0);
    if (ts < since) return; // an older edit, arrived late
    original.dataset.editTs = String(ts);
    const body = tpl.content.querySelector('.body');
    const old = original.querySelector('.body');
    if (!body || !old) return;
    old.replaceWith(body.cloneNode(true));
    let mark = original.querySelector('.edited');
    if (!mark) {
      mark = document.createElement('span');
      mark.className = 'edited';
      mark.textContent = '(edited)';
      original.querySelector('.body').after(mark);
    }
    mark.dataset.ts = String(ts);
    mark.title = `Edited ${new Date(ts).toLocaleString()}`;
  }

  // A deletion: the message's text leaves the row; "Message deleted" stays in its place.
  function applyRedaction(eventId) {
    const row = byEvent(eventId);
    if (!row) return;
    if (!row.classList.contains('msg')) { row.remove(); return; }
    row.classList.add('redacted');
    row.classList.remove('editing');
    for (const e of row.querySelectorAll('.edited, .actions')) e.remove();
    const body = document.createElement('div');
    body.className = 'body';
    const em = document.createElement('em');
    em.textContent = 'Message deleted';
    body.appendChild(em);
    const old = row.querySelector('.body');
    if (old) old.replaceWith(body); else row.appendChild(body);
  }

  return {
    el,
    byEvent,
    applyRedaction,
    // The viewer's newest message that can still be edited.
    lastOwnMessage() {
      const mine = rows().filter((r) => r.classList.contains('msg') && r.dataset.sender === me
        && !r.classList.contains('redacted'));
      return mine.length ? mine[mine.length - 1] : null;
    },
    nearBottom() { const tl = el(); return !tl || tl.scrollHeight - tl.scrollTop - tl.clientHeight < 120; },
    scrollToBottom() { const tl = el(); if (tl) tl.scrollTop = tl.scrollHeight; },
    lastPos() { const all = rows(); return all.length ? Number(all[all.length - 1].dataset.pos) : 0; },
    has(eventId) { return !!byEvent(eventId); },

    // A committed event's row (server HTML): replaces the tab's pending row for it, or the row
    // already shown for the same event, or goes in by position.
    put(eventId, pos, html, { beforeInsert } = {}) {
      const node = fragment(html);
      localize(node);
      const edit = node.querySelector('li[data-kind="m.replace"]');
      if (edit) applyEdit(edit);
      const pending = pendingByEvent.get(eventId);
      if (pending) { pending.replaceWith(node); pendingByEvent.delete(eventId); return; }
      const shown = byEvent(eventId);
      if (shown) { shown.replaceWith(node); return; }
      if (beforeInsert) beforeInsert(pos);
      insertByPos(node, pos);
    },

    remove(eventId) { const row = byEvent(eventId); if (row) row.remove(); },

    // A row of this tab's own unsent message, from the server's template.
    addPending(txnId, text) {
      const tpl = document.getElementById('pending-item');
      const tl = el();
      if (!tpl || !tl) return;
      const li = tpl.content.firstElementChild.cloneNode(true);
      li.dataset.txn = txnId;
      li.querySelector('.body').textContent = text;
      tl.appendChild(li);
    },
    pendingRow(txnId) { return document.querySelector(`li.pending[data-txn="${CSS.escape(txnId)}"]`); },
    // The send was committed as `eventId`: its live row replaces the pending one when it comes.
    acknowledged(txnId, eventId) {
      const li = this.pendingRow(txnId);
      if (!li) return;
      if (byEvent(eventId)) { li.remove(); return; }
      li.classList.remove('failed');
      li.classList.add('sent');
      pendingByEvent.set(eventId, li);
    },
    failed(txnId, message) {
      const li = this.pendingRow(txnId);
      if (!li) return false;
      li.classList.add('failed');
      li.title = message;
      const why = li.querySelector('.why');
      if (why) why.textContent = message;
      return true;
    },

    // "New messages" divider (while the tab is hidden).
    divider(pos) {
      if (document.getElementById('new-divider')) return;
      const d = document.createElement('li');
      d.className = 'divider';
      d.id = 'new-divider';
      const label = document.createElement('span');
      label.textContent = 'New messages';
      d.appendChild(label);
      insertByPos(d, pos);
    },

    // Older history on scrolling up (server fragments in a <template>).
    setupHistory() {
      const tl = el();
      if (!tl || !roomId) return;
      let loading = false;
      const loadOlder = async () => {
        const next = tl.dataset.next;
        if (loading || !next || tl.scrollTop > 150) return;
        loading = true;
        try {
          const res = await fetch(`/rooms/${encodeURIComponent(roomId)}/history?before=${encodeURIComponent(next)}`,
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
    },
  };
}
