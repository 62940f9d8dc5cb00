// The reaction picker: the server's <template id="emoji-picker">, opened by a message. The
// emoji list (emoji.js, about 35 KB) loads the first time it opens. Typing filters by name;
// arrows move through the results, Enter picks, Esc closes. Picks are remembered (most
// recent first) in localStorage, and shown first.

const RECENT_KEY = 'chat.recentEmoji';
const RECENT_MAX = 16;
const SHOWN_MAX = 240;

let emojiList = null;
let open = null; // {el, close}

export function recentEmoji() {
  try { const r = JSON.parse(localStorage.getItem(RECENT_KEY) || '[]'); return Array.isArray(r) ? r : []; } catch { return []; }
}

export function rememberEmoji(key) {
  const r = [key, ...recentEmoji().filter((k) => k !== key)].slice(0, RECENT_MAX);
  try { localStorage.setItem(RECENT_KEY, JSON.stringify(r)); } catch { /* full or disabled */ }
}

export function closePicker() { if (open) open.close(); }

// Opens the picker by `anchor`; `onPick(key)` gets the chosen emoji.
export async function openPicker(anchor, onPick) {
  closePicker();
  const tpl = document.getElementById('emoji-picker');
  if (!tpl) return;
  const el = tpl.content.firstElementChild.cloneNode(true);
  const input = el.querySelector('input');
  const all = el.querySelector('.grid.all');
  const recent = el.querySelector('.grid.recent');
  const recentTitle = el.querySelector('.recent-title');
  const empty = el.querySelector('.empty');
  document.body.appendChild(el);
  place(el, anchor);

  const pick = (key) => { rememberEmoji(key); close(); onPick(key); };
  const button = ([ch, name]) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'emoji';
    b.setAttribute('role', 'option');
    b.dataset.key = ch;
    b.title = name;
    b.setAttribute('aria-label', name);
    b.textContent = ch;
    return b;
  };
  const names = new Map();

  function render() {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    const list = emojiList || [];
    const hits = words.length
      ? list.filter(([ch, name]) => words.every((w) => name.includes(w) || ch === w))
      : list;
    all.replaceChildren(...hits.slice(0, SHOWN_MAX).map(button));
    const mine = words.length ? [] : recentEmoji();
    recent.replaceChildren(...mine.map((k) => button([k, names.get(k) || k])));
    recent.hidden = recentTitle.hidden = mine.length === 0;
    empty.hidden = hits.length > 0 || !emojiList;
  }

  function buttons() { return Array.from(el.querySelectorAll('button.emoji')); }

  el.addEventListener('click', (e) => {
    const b = e.target.closest('button.emoji');
    if (b) pick(b.dataset.key);
  });
  el.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.preventDefault(); close(); anchor.focus(); return; }
    const list = buttons();
    const i = list.indexOf(document.activeElement);
    if (e.key === 'Enter' && e.target === input) {
      e.preventDefault();
      if (list.length) pick(list[0].dataset.key);
      return;
    }
    const cols = Math.max(1, Math.round(all.clientWidth / ((list[0] && list[0].offsetWidth) || 36)));
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols }[e.key];
    if (step === undefined || !list.length) return;
    e.preventDefault();
    if (i < 0) { if (step > 0) list[0].focus(); return; }
    const next = i + step;
    if (next < 0) input.focus(); else list[Math.min(next, list.length - 1)].focus();
  });
  input.addEventListener('input', render);

  const outside = (e) => { if (!el.contains(e.target) && e.target !== anchor) close(); };
  function close() {
    el.remove();
    document.removeEventListener('pointerdown', outside, true);
    window.removeEventListener('resize', close);
    if (open && open.el === el) open = null;
  }
  document.addEventListener('pointerdown', outside, true);
  window.addEventListener('resize', close);
  open = { el, close };
  render();
  input.focus();
  if (!emojiList) {
    try { emojiList = (await import('./emoji.js')).EMOJI; } catch { emojiList = []; }
  }
  for (const [ch, name] of emojiList) names.set(ch, name);
  if (open && open.el === el) render();
}

// Below the anchor when there is room, else above; kept inside the window. On a narrow
// screen the stylesheet makes it a sheet at the bottom instead.
function place(el, anchor) {
  const r = anchor.getBoundingClientRect();
  const h = el.offsetHeight;
  const w = el.offsetWidth;
  const top = r.bottom + 6 + h < window.innerHeight ? r.bottom + 6 : Math.max(6, r.top - h - 6);
  const left = Math.min(Math.max(6, r.right - w), window.innerWidth - w - 6);
  el.style.top = `${top}px`;
  el.style.left = `${left}px`;
}
