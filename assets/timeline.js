// The room's timeline, keyed by event id: rows are inserted in stream order, replaced in place
// and removed by event id, so edits, reactions, redactions and threads have one place to go.
// Every row is a server fragment; the pending row of an unsent message is a clone of the
// server's <template id="pending-item">.

import { fragment, localize, me, showReactions } from './dom.js';

const GROUP_MS = 5 * 60 * 1000;

export function createTimeline(roomId) {
  const el = () => document.getElementById('timeline');
  const pendingByEvent = new Map(); // event_id -> pending row, acknowledged, not yet seen live
  let loading = false; // a page of older history is on its way
  let loadingNewer = false; // a page of newer history is on its way (a room opened at a message)
  let newSince = 0; // messages arrived while scrolled up
  let jumpUpdate = null;

  function rows() { const tl = el(); return tl ? Array.from(tl.querySelectorAll('li.ev[data-pos]')) : []; }

  // Opened at a message in the middle of history, the timeline stops short of the newest
  // (`data-newer` is the cursor of the page after it) until scrolling down reaches the newest
  // or "Jump to latest" loads it. Meanwhile live events are not placed (they would leave a
  // gap): the newer pages bring them.
  function detached() { const tl = el(); return !!(tl && tl.dataset.newer); }

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
    updateQuotes(original.dataset.eventId, body.textContent.replace(/\s+/g, ' ').trim().slice(0, 240), false);
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

  // The quotes of replies to `eventId` show its text now (or that it was deleted).
  function updateQuotes(eventId, text, deleted) {
    const tl = el();
    if (!tl) return;
    for (const q of tl.querySelectorAll(`.quote[data-quote-of="${CSS.escape(eventId)}"] .text`)) {
      const t = document.createElement(deleted ? 'em' : 'span');
      t.className = 'text';
      t.textContent = deleted ? 'Message deleted' : text;
      q.replaceWith(t);
    }
  }

  // A page of the room's history as the server renders it (`query`: `?before=`, `?after=` or
  // none for the newest): a <template> of rows, localized, with its cursor; null if the server
  // did not answer with one.
  async function historyPage(query) {
    const res = await fetch(`/rooms/${encodeURIComponent(roomId)}/history${query}`, { credentials: 'same-origin' });
    if (!res.ok) return null;
    const tpl = fragment(await res.text()).querySelector('template');
    if (tpl) localize(tpl.content);
    return tpl;
  }

  // A row as the server renders it now (from the page of history that ends with it).
  async function rerender(li) {
    const pos = Number(li.dataset.pos);
    if (!roomId || !pos) return;
    try {
      const tpl = await historyPage(`?before=${pos + 1}`);
      if (!tpl) return;
      const fresh = tpl.content.querySelector(`li[data-event-id="${CSS.escape(li.dataset.eventId)}"]`);
      if (!fresh || !li.isConnected) return;
      li.replaceWith(fresh);
      decorate();
    } catch { /* offline: the next reload shows it */ }
  }

  // A reaction's row (hidden) names the message, the key and the sender: the message's button
  // for that key counts it, once per sender.
  function applyReaction(reactionRow) {
    const target = byEvent(reactionRow.dataset.reactsTo);
    const { key, sender, eventId } = reactionRow.dataset;
    if (!target || !target.classList.contains('msg') || target.classList.contains('redacted') || !key) return;
    let box = target.querySelector('.reactions');
    if (!box) {
      const rowTpl = document.getElementById('reaction-row');
      if (!rowTpl) return;
      box = rowTpl.content.firstElementChild.cloneNode(true);
      const actions = target.querySelector('.actions');
      if (actions) target.insertBefore(box, actions); else target.appendChild(box);
    }
    let chip = Array.from(box.querySelectorAll('.reaction')).find((c) => c.dataset.key === key);
    if (!chip) {
      const chipTpl = document.getElementById('reaction-chip');
      if (!chipTpl) return;
      chip = chipTpl.content.firstElementChild.cloneNode(true);
      chip.dataset.key = key;
      chip.querySelector('.key').textContent = key;
      box.insertBefore(chip, box.querySelector('.add-reaction'));
    }
    const by = JSON.parse(chip.dataset.by || '[]');
    if (by.some(([s, id]) => s === sender || id === eventId)) return;
    by.push([sender, eventId]);
    chip.dataset.by = JSON.stringify(by);
    showReactions(chip);
  }

  // A reaction taken back: it leaves the count it was in.
  function unreact(eventId) {
    const tl = el();
    if (!tl) return;
    for (const chip of tl.querySelectorAll('.reactions .reaction')) {
      const by = JSON.parse(chip.dataset.by || '[]');
      const left = by.filter(([, id]) => id !== eventId);
      if (left.length === by.length) continue;
      chip.dataset.by = JSON.stringify(left);
      const box = chip.parentElement;
      if (left.length) showReactions(chip); else chip.remove();
      if (box && !box.querySelector('.reaction')) box.remove();
    }
  }

  // A deletion: the message's text leaves the row; "Message deleted" stays in its place.
  function applyRedaction(eventId) {
    unreact(eventId);
    updateQuotes(eventId, '', true);
    const row = byEvent(eventId);
    if (!row) return;
    if (row.dataset.kind === 'm.replace') {
      // A deleted edit: the message shows the edit before it (or its own text) again.
      const original = byEvent(row.dataset.replaces);
      row.remove();
      if (original) rerender(original);
      return;
    }
    if (!row.classList.contains('msg')) { row.remove(); return; }
    row.classList.add('redacted');
    row.classList.remove('editing');
    for (const e of row.querySelectorAll('.edited, .actions, .reactions, .quote')) e.remove();
    const body = document.createElement('div');
    body.className = 'body';
    const em = document.createElement('em');
    em.textContent = 'Message deleted';
    body.appendChild(em);
    const old = row.querySelector('.body');
    if (old) old.replaceWith(body); else row.appendChild(body);
  }

  // Day separators ("Today", "Yesterday", a date, in the viewer's zone) before the first row
  // of each day, and groups: a message from the sender of the message just before it, within
  // GROUP_MS and the same day, shows without their name and time (`cont`). A note, a divider
  // or a reply starts a new group. Run over the whole list after rows come or go; it only
  // touches what changed.
  function decorate() {
    const tl = el();
    if (!tl) return;
    const stale = new Set(tl.querySelectorAll(':scope > li.day'));
    let prevDay = null;
    let prev = null; // the last message shown, while a group can go on
    for (const li of Array.from(tl.children)) {
      if (li.classList.contains('day') || li.classList.contains('seen') || li.hidden) continue;
      if (li.classList.contains('divider')) { prev = null; continue; }
      const ts = Number(li.dataset.ts || 0);
      if (!ts) continue;
      const d = new Date(ts);
      const day = `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
      if (day !== prevDay) {
        let sep = li.previousElementSibling;
        while (sep && sep.classList.contains('seen')) sep = sep.previousElementSibling;
        if (sep && sep.classList.contains('day') && sep.dataset.day === day) stale.delete(sep);
        else li.before(daySeparator(day, d));
        prevDay = day;
        prev = null;
      }
      if (!li.classList.contains('msg')) { prev = null; continue; }
      const cont = !!prev && prev.dataset.sender === li.dataset.sender && ts - Number(prev.dataset.ts) < GROUP_MS
        && !li.querySelector('.quote');
      li.classList.toggle('cont', cont);
      prev = li;
    }
    for (const sep of stale) sep.remove();
  }

  function daySeparator(day, d) {
    const li = document.createElement('li');
    li.className = 'day';
    li.dataset.day = day;
    const label = document.createElement('span');
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    const same = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
    label.textContent = same(d, today) ? 'Today' : same(d, yesterday) ? 'Yesterday'
      : d.toLocaleDateString([], {
        weekday: 'long', month: 'long', day: 'numeric', year: d.getFullYear() === today.getFullYear() ? undefined : 'numeric',
      });
    li.appendChild(label);
    return li;
  }

  return {
    el,
    byEvent,
    applyRedaction,
    decorate,
    // The viewer's newest message that can still be edited.
    lastOwnMessage() {
      const mine = rows().filter((r) => r.classList.contains('msg') && r.dataset.sender === me
        && !r.classList.contains('redacted'));
      return mine.length ? mine[mine.length - 1] : null;
    },
    // The "Jump to latest" button: shown while scrolled up, with how many messages came since.
    setupJump() {
      const tl = el();
      const btn = document.getElementById('jump-latest');
      if (!tl || !btn) return;
      const update = () => {
        const away = detached() || !this.nearBottom();
        if (!away) { newSince = 0; btn.classList.remove('has-new'); }
        btn.hidden = !away;
        btn.querySelector('.count').textContent = newSince ? `${newSince} new ${newSince === 1 ? 'message' : 'messages'} · ` : '';
      };
      jumpUpdate = update;
      tl.addEventListener('scroll', update, { passive: true });
      btn.addEventListener('click', async () => {
        if (detached()) await this.toLatest();
        else tl.scrollTo({ top: tl.scrollHeight, behavior: 'smooth' });
        newSince = 0;
        update();
      });
      update();
    },
    // A message arrived while the viewer reads older ones: the button counts it.
    arrivedWhileAway() {
      newSince += 1;
      const btn = document.getElementById('jump-latest');
      if (btn) btn.classList.add('has-new');
      if (jumpUpdate) jumpUpdate();
    },
    nearBottom() { const tl = el(); return !tl || tl.scrollHeight - tl.scrollTop - tl.clientHeight < 120; },
    detached,
    // Replaces a detached window with the newest page (as the room opens), keeping this tab's
    // unsent messages; the timeline follows live events again.
    async toLatest() {
      const tl = el();
      if (!tl || !detached() || !roomId) return;
      delete tl.dataset.newer;
      try {
        const tpl = await historyPage('');
        if (!tpl) throw new Error('no page');
        const items = tpl.content;
        const fetched = Array.from(items.querySelectorAll('li.ev[data-pos]'));
        const newest = fetched.length ? Number(fetched[fetched.length - 1].dataset.pos) : 0;
        // Rows placed live since the window was let go and newer than the page stay.
        const kept = rows().filter((r) => Number(r.dataset.pos) > newest && !items.querySelector(`li[data-event-id="${CSS.escape(r.dataset.eventId)}"]`));
        const pending = Array.from(tl.querySelectorAll('li.pending'));
        tl.replaceChildren(items, ...kept, ...pending);
        if (tpl.dataset.next) tl.dataset.next = tpl.dataset.next; else delete tl.dataset.next;
        decorate();
        this.scrollToBottom();
      } catch {
        location.assign(`/rooms/${encodeURIComponent(roomId)}`);
      }
    },
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
      const reaction = node.querySelector('li[data-kind="m.reaction"]');
      if (reaction) applyReaction(reaction);
      const pending = pendingByEvent.get(eventId);
      const shown = byEvent(eventId);
      if (pending) { pending.replaceWith(node); pendingByEvent.delete(eventId); } else if (shown) shown.replaceWith(node);
      else if (detached()) return;
      else {
        if (beforeInsert) beforeInsert(pos);
        insertByPos(node, pos);
      }
      decorate();
    },

    remove(eventId) { const row = byEvent(eventId); if (row) { row.remove(); decorate(); } },

    // A row of this tab's own unsent message, from the server's template.
    addPending(txnId, text) {
      const tpl = document.getElementById('pending-item');
      const tl = el();
      if (!tpl || !tl) return;
      const li = tpl.content.firstElementChild.cloneNode(true);
      li.dataset.txn = txnId;
      li.querySelector('.body').textContent = text;
      tl.appendChild(li);
      // Sending from a message far back: the newest comes, with the message after it.
      if (detached()) this.toLatest();
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
      tl.addEventListener('scroll', () => {
        if (tl.scrollTop <= 150) loadOlder();
        if (detached() && tl.scrollHeight - tl.scrollTop - tl.clientHeight < 150) loadNewer();
      }, { passive: true });
      // A short first page may not fill the screen: keep loading until it scrolls or ends.
      requestAnimationFrame(() => { if (tl.scrollTop <= 150) loadOlder(); });
    },

    // Shows the message `eventId` (at stream position `pos`): loading a few pages of older
    // history if it is close, else opening the room at it (the page of the events around it);
    // it stays marked, and flashes for a moment.
    async jumpTo(eventId, pos) {
      const tl = el();
      if (!tl) return;
      for (let i = 0; i < 3 && !byEvent(eventId) && tl.dataset.next; i += 1) {
        const first = rows()[0];
        if (first && pos && Number(first.dataset.pos) < pos) break;
        if (!await loadOlder()) break;
      }
      const row = byEvent(eventId);
      if (!row) {
        const first = rows()[0];
        if (tl.dataset.next && !(first && pos && Number(first.dataset.pos) < pos)) {
          location.assign(`/rooms/${encodeURIComponent(roomId)}/events/${encodeURIComponent(eventId)}`);
        }
        return;
      }
      for (const t of tl.querySelectorAll('li.target')) t.classList.remove('target');
      row.classList.add('target');
      row.scrollIntoView({ block: 'center' });
      row.classList.remove('flash');
      void row.offsetWidth;
      row.classList.add('flash');
      setTimeout(() => row.classList.remove('flash'), 2000);
    },
  };

  // Loads one page of newer events after the last shown, while detached; false when there is
  // none (or it failed, or a load is running). Rows already shown (placed live) are kept.
  async function loadNewer() {
    const tl = el();
    const newer = tl && tl.dataset.newer;
    if (loadingNewer || !newer) return false;
    loadingNewer = true;
    try {
      const tpl = await historyPage(`?after=${encodeURIComponent(newer)}`);
      if (!tpl) return false;
      const items = tpl.content;
      for (const li of Array.from(items.querySelectorAll('li[data-event-id]'))) {
        if (byEvent(li.dataset.eventId)) li.remove();
      }
      const pending = tl.querySelector('li.pending');
      if (pending) tl.insertBefore(items, pending); else tl.appendChild(items);
      if (tpl.dataset.newer) tl.dataset.newer = tpl.dataset.newer; else delete tl.dataset.newer;
      decorate();
      if (jumpUpdate) jumpUpdate();
      return true;
    } catch {
      return false;
    } finally {
      loadingNewer = false;
    }
  }

  // Loads one page of older events before the first shown; false when there is none (or it
  // failed, or a load is running).
  async function loadOlder() {
    const tl = el();
    const next = tl && tl.dataset.next;
    if (loading || !next) return false;
    loading = true;
    try {
      const tpl = await historyPage(`?before=${encodeURIComponent(next)}`);
      if (!tpl) return false;
      const items = tpl.content;
      const before = tl.scrollHeight;
      const start = tl.querySelector('li.start');
      if (start) start.remove();
      tl.prepend(items);
      decorate();
      tl.scrollTop += tl.scrollHeight - before;
      if (tpl.dataset.next) tl.dataset.next = tpl.dataset.next; else delete tl.dataset.next;
      return true;
    } catch {
      return false;
    } finally {
      loading = false;
    }
  }
}
