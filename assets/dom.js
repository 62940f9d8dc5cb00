// Small DOM helpers shared by the modules: server fragments to nodes, local times.

export const me = document.body.dataset.user;

// Server-rendered HTML (a fragment from a page, a live frame or a <template>) to nodes.
export function fragment(html) {
  const t = document.createElement('template');
  t.innerHTML = html;
  return t.content;
}

// Replaces the element `id` with the server's fragment at `url` (its first element), after
// `prepare(next)` if given: the room list, the member list and the pinned list come so.
export async function swapIn(url, id, prepare) {
  const res = await fetch(url, { credentials: 'same-origin' });
  const old = document.getElementById(id);
  if (!res.ok || !old) return;
  const next = fragment(await res.text()).firstElementChild;
  if (!next) return;
  if (prepare) prepare(next);
  old.replaceWith(next);
}

// Times in the viewer's zone, and "mine" on the viewer's own messages.
export function localize(root) {
  for (const t of root.querySelectorAll('time[data-ts]')) {
    const d = new Date(Number(t.dataset.ts));
    t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    t.title = d.toLocaleString();
  }
  // A date and time (search results): the day, and the time for this year's.
  for (const t of root.querySelectorAll('time[data-date-ts]')) {
    const d = new Date(Number(t.dataset.dateTs));
    const thisYear = d.getFullYear() === new Date().getFullYear();
    t.textContent = d.toLocaleDateString([], { day: 'numeric', month: 'short', year: thisYear ? undefined : 'numeric' })
      + (thisYear ? `, ${d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}` : '');
    t.title = d.toLocaleString();
  }
  for (const e of root.querySelectorAll('span.edited[data-ts]')) {
    e.title = `Edited ${new Date(Number(e.dataset.ts)).toLocaleString()}`;
  }
  if (me) {
    for (const li of root.querySelectorAll('li.msg')) {
      if (li.dataset.sender === me) li.classList.add('mine');
    }
  }
  for (const chip of root.querySelectorAll('.reactions .reaction')) showReactions(chip);
  for (const e of root.querySelectorAll('[data-name-of]')) e.textContent = displayName(e.dataset.nameOf);
  for (const e of root.querySelectorAll('[data-initial-of]')) {
    e.textContent = Array.from(displayName(e.dataset.initialOf))[0].toUpperCase();
  }
  if (markMentionsHook) markMentionsHook(root);
}

// Set by app.js (mentions.js marks the rows that mention the viewer), so every fragment put
// through `localize` is marked.
let markMentionsHook = null;
export function onLocalize(f) { markMentionsHook = f; }

// A reaction button as its `data-by` ([sender, reaction id] pairs) says: the count, who
// reacted (on hover and for screen readers), and whether the viewer is among them.
export function showReactions(chip) {
  let by = [];
  try { by = JSON.parse(chip.dataset.by || '[]'); } catch { /* leave it empty */ }
  const key = chip.dataset.key || '';
  const mine = by.some(([s]) => s === me);
  const count = chip.querySelector('.count');
  if (count) count.textContent = String(by.length);
  const names = by.map(([s]) => (s === me ? 'you' : displayName(s)));
  chip.title = names.length ? `${names.join(', ')} reacted with ${key}` : '';
  chip.setAttribute('aria-label', `${key} ${by.length}${mine ? ', including you' : ''}`);
  chip.setAttribute('aria-pressed', mine ? 'true' : 'false');
  chip.classList.toggle('mine', mine);
}

// The names people go by on the page (its `data-names`: a room's members, a search's senders;
// then the member events that come live); anyone else shows as their localpart.
const names = new Map();
try {
  const holder = document.querySelector('main[data-names]');
  for (const [id, name] of Object.entries(JSON.parse((holder && holder.dataset.names) || '{}'))) names.set(id, name);
} catch { /* no names: localparts */ }

// Which of the eight avatar colours is `user`'s: as the server picks it (render::avatar_colour).
export function avatarColour(user) {
  let h = 0;
  for (const b of new TextEncoder().encode(user)) h = (Math.imul(h, 31) + b) >>> 0;
  return h % 8;
}

export function localpart(id) { return id.replace(/^@/, '').split(':')[0]; }
export function displayName(id) { return names.get(id) || localpart(id); }

// A member event's name (or none) for `id`; true when it changed.
export function setName(id, name) {
  const clean = typeof name === 'string' ? name.replace(/\p{Cc}/gu, '').trim().slice(0, 64) : '';
  if ((names.get(id) || '') === clean) return false;
  if (clean) names.set(id, clean); else names.delete(id);
  return true;
}

export function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
