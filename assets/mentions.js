// Mentions: typing "@" in the composer suggests the room's members (and "@room" to those who
// may notify everyone); arrows move, Enter or Tab picks, Esc closes. A member of this server is
// written "@name", another server's "@name:server" (the server recognises both). Messages that
// mention the viewer (or everyone) are marked, with the viewer's name as a pill: see
// `markMentions`, run by dom.js's `localize` on every row.

import { displayName, localpart, me } from './dom.js';

const MAX_SHOWN = 8;
const MEMBERS_TTL_MS = 30000;

export function setupMentions({ roomId, input }) {
  const list = document.getElementById('mention-suggest');
  const room = document.getElementById('room');
  if (!input || !list || !roomId) return;
  const canRoom = room && room.dataset.canMentionRoom === 'true';
  const localServer = me ? me.slice(me.indexOf(':') + 1) : '';
  let members = [];
  let fetchedAt = 0;
  let shown = []; // [{id, label, text}]
  let active = 0;
  let token = null; // {start, end} of the "@…" being typed

  async function loadMembers() {
    if (Date.now() - fetchedAt < MEMBERS_TTL_MS) return;
    fetchedAt = Date.now();
    try {
      const res = await fetch(`/api/v1/rooms/${encodeURIComponent(roomId)}/members`, { credentials: 'same-origin' });
      if (!res.ok) return;
      const v = await res.json();
      members = v.members.filter((m) => m.membership === 'join' && m.user_id !== me).map((m) => m.user_id);
    } catch { /* offline: keep what we had */ }
  }

  // The "@word" that ends at the caret, if any.
  function currentToken() {
    const caret = input.selectionStart;
    if (caret !== input.selectionEnd) return null;
    const before = input.value.slice(0, caret);
    const m = /(^|[\s(])@([\w.\-:[\]]*)$/.exec(before);
    if (!m) return null;
    return { start: caret - m[2].length - 1, end: caret, query: m[2].toLowerCase() };
  }

  function close() { list.hidden = true; list.replaceChildren(); shown = []; token = null; input.removeAttribute('aria-activedescendant'); }

  function render() {
    list.replaceChildren(...shown.map((s, i) => {
      const li = document.createElement('li');
      li.id = `mention-${i}`;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', i === active ? 'true' : 'false');
      li.dataset.i = String(i);
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = s.label;
      const id = document.createElement('span');
      id.className = 'id';
      id.textContent = s.id;
      li.append(name, id);
      return li;
    }));
    list.hidden = shown.length === 0;
    if (shown.length) input.setAttribute('aria-activedescendant', `mention-${active}`);
  }

  async function update() {
    token = currentToken();
    if (!token) { close(); return; }
    await loadMembers();
    token = currentToken();
    if (!token) { close(); return; }
    const q = token.query;
    const hits = members
      .map((id) => ({ id, label: displayName(id), text: id.endsWith(`:${localServer}`) ? `@${localpart(id)}` : id }))
      .filter((s) => s.label.toLowerCase().startsWith(q) || s.id.toLowerCase().startsWith(`@${q}`)
        || (q.length > 1 && s.label.toLowerCase().includes(q)));
    hits.sort((a, b) => a.label.localeCompare(b.label));
    if (canRoom && 'room'.startsWith(q)) hits.push({ id: '@room', label: 'room', text: '@room', everyone: true });
    shown = hits.slice(0, MAX_SHOWN);
    active = Math.min(active, Math.max(0, shown.length - 1));
    render();
  }

  function pick(i) {
    const s = shown[i];
    if (!s || !token) return;
    const v = input.value;
    input.value = `${v.slice(0, token.start)}${s.text} ${v.slice(token.end)}`;
    const caret = token.start + s.text.length + 1;
    input.setSelectionRange(caret, caret);
    close();
    input.dispatchEvent(new Event('input'));
    input.focus();
  }

  input.addEventListener('input', update);
  input.addEventListener('click', update);
  input.addEventListener('blur', () => setTimeout(close, 150));
  // Before the composer's own keys (Enter sends, Up edits): capture, at the target.
  input.addEventListener('keydown', (e) => {
    if (list.hidden || !shown.length) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      active = (active + (e.key === 'ArrowDown' ? 1 : shown.length - 1)) % shown.length;
      render();
    } else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
      pick(active);
    } else if (e.key === 'Escape') {
      close();
    } else {
      return;
    }
    e.preventDefault();
    e.stopImmediatePropagation();
  }, { capture: true });
  list.addEventListener('mousedown', (e) => {
    const li = e.target.closest('li[data-i]');
    if (li) { e.preventDefault(); pick(Number(li.dataset.i)); }
  });
}

// Marks the rows of `root` whose message mentions the viewer (their `data-mentions`), and
// shows the viewer's name in their text as a pill.
export function markMentions(root) {
  if (!me) return;
  const mine = [me, `@${localpart(me)}`, '@room'];
  for (const li of root.querySelectorAll('li.msg[data-mentions]')) {
    const named = li.dataset.mentions.split(' ');
    if (!named.includes(me) && !named.includes('@room') || li.dataset.sender === me) continue;
    li.classList.add('mentions-me');
    const body = li.querySelector('.body');
    if (body) pill(body, mine);
  }
}

function pill(body, names) {
  const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
  const nodes = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement.closest('.pill, code, pre, a')) nodes.push(n);
  }
  for (const n of nodes) {
    const text = n.nodeValue;
    let at = -1;
    let name = '';
    for (const c of names) {
      const i = text.indexOf(c);
      if (i >= 0 && (at < 0 || i < at) && !/[\w.\-:]/.test(text.charAt(i + c.length) || ' ')) { at = i; name = c; }
    }
    if (at < 0) continue;
    const rest = n.splitText(at);
    rest.splitText(name.length);
    const span = document.createElement('span');
    span.className = 'pill me';
    span.textContent = name;
    rest.replaceWith(span);
  }
}
