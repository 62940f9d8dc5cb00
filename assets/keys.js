// Getting around by keyboard and the room's panels:
// - Ctrl/Cmd+K: the room switcher (type to find a room, ↑/↓, Enter); Alt+↑/↓: the room above
//   or below in the list; Esc: closes what is open (a menu, the room info drawer).
// - The room info drawer (members, invite, settings, leave): the header's people button opens
//   it on narrow screens and hides or shows the column on wide ones; the focus goes in and
//   comes back.
// - The room list's filter box; the home page's action panels; the room's setup line.
// - `announce(text)`: a polite live region for screen readers (new messages in the room).

const narrow = window.matchMedia('(max-width: 1100px)');

function app() { return document.querySelector('.app'); }

// The room info drawer / column.
function infoButton() { return document.getElementById('room-info'); }

function setInfo(open, { focus = true } = {}) {
  const a = app();
  const btn = infoButton();
  const aside = document.getElementById('members');
  if (!a || !btn || !aside) return;
  if (narrow.matches) {
    a.classList.toggle('info-open', open);
    a.classList.remove('info-closed');
  } else {
    a.classList.toggle('info-closed', !open);
    a.classList.remove('info-open');
  }
  btn.setAttribute('aria-expanded', String(open));
  if (!focus) return;
  if (open) {
    const first = aside.querySelector('.close-drawer:not([hidden])');
    (narrow.matches && first ? first : aside.querySelector('input, button, summary, a[href]'))?.focus();
  } else {
    btn.focus();
  }
}

function infoOpen() {
  const a = app();
  if (!a) return false;
  return narrow.matches ? a.classList.contains('info-open') : !a.classList.contains('info-closed');
}

// Focus stays in the open drawer (on narrow screens, where it covers the room).
function trapDrawer(e) {
  const a = app();
  if (e.key !== 'Tab' || !a || !a.classList.contains('info-open') || !narrow.matches) return;
  const aside = document.getElementById('members');
  const items = Array.from(aside.querySelectorAll('a[href], button, input, select, textarea, summary'))
    .filter((el) => !el.disabled && el.getClientRects().length);
  if (!items.length) return;
  const [first, last] = [items[0], items[items.length - 1]];
  if (!aside.contains(document.activeElement)) { e.preventDefault(); first.focus(); return; }
  if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
  else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
}

// The rooms in the list, in its order: [{ href, name, active, badge }] (badge: the first shown).
function rooms() {
  return Array.from(document.querySelectorAll('#room-list li > a[data-room-id]')).map((a) => ({
    href: a.getAttribute('href'),
    name: a.querySelector('.name')?.textContent || '',
    active: !!a.closest('li.active'),
    badge: a.querySelector('.badge:not([hidden])')?.textContent || '',
  }));
}

// Lowercase without accents, for matching what people type ("cafe" finds "Café").
function fold(s) { return s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase(); }

// Ctrl/Cmd+K: a dialog listing the rooms, filtered as one types.
let switcher = null;
function openSwitcher() {
  if (!switcher) {
    switcher = document.createElement('dialog');
    switcher.className = 'switcher';
    switcher.setAttribute('aria-label', 'Switch room');
    const input = document.createElement('input');
    input.type = 'search';
    input.placeholder = 'Go to a room…';
    input.setAttribute('aria-label', 'Room name');
    input.setAttribute('role', 'combobox');
    input.setAttribute('aria-controls', 'switcher-list');
    input.setAttribute('aria-expanded', 'true');
    input.autocomplete = 'off';
    const list = document.createElement('ul');
    list.id = 'switcher-list';
    list.setAttribute('role', 'listbox');
    list.setAttribute('aria-label', 'Rooms');
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.textContent = '↑ ↓ to choose · Enter to open · Esc to close';
    switcher.append(input, list, hint);
    document.body.append(switcher);
    let selected = 0;
    const show = () => {
      const q = fold(input.value.trim());
      const found = rooms().filter((r) => !q || fold(r.name).includes(q));
      selected = Math.min(selected, Math.max(found.length - 1, 0));
      list.replaceChildren(...found.map((r, i) => {
        const li = document.createElement('li');
        li.id = `switch-${i}`;
        li.setAttribute('role', 'option');
        li.setAttribute('aria-selected', String(i === selected));
        li.dataset.href = r.href;
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = r.name;
        li.append(name);
        if (r.badge) {
          const b = document.createElement('span');
          b.className = 'badge unread';
          b.textContent = r.badge;
          li.append(b);
        }
        li.addEventListener('click', () => { location.assign(r.href); });
        return li;
      }));
      if (!found.length) {
        const li = document.createElement('li');
        li.className = 'empty';
        li.textContent = 'No room matches.';
        list.append(li);
      }
      input.setAttribute('aria-activedescendant', found.length ? `switch-${selected}` : '');
    };
    input.addEventListener('input', () => { selected = 0; show(); });
    input.addEventListener('keydown', (e) => {
      const options = list.querySelectorAll('li[role="option"]');
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        if (!options.length) return;
        selected = (selected + (e.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length;
        show();
        list.querySelector('[aria-selected="true"]')?.scrollIntoView({ block: 'nearest' });
      } else if (e.key === 'Enter') {
        e.preventDefault();
        const pick = options[selected];
        if (pick) location.assign(pick.dataset.href);
      }
    });
    switcher.addEventListener('click', (e) => { if (e.target === switcher) switcher.close(); });
    switcher.show = show;
  }
  if (switcher.open) return;
  const input = switcher.querySelector('input');
  input.value = '';
  switcher.show();
  switcher.showModal();
  input.focus();
}

// Alt+↑/↓: the room above or below the current one in the list.
function stepRoom(delta) {
  const list = rooms();
  if (!list.length) return;
  const at = list.findIndex((r) => r.active);
  const next = at < 0 ? (delta > 0 ? 0 : list.length - 1) : at + delta;
  if (next >= 0 && next < list.length && next !== at) location.assign(list[next].href);
}

// Esc: the innermost open thing closes (dialogs close themselves).
function escape() {
  const open = document.querySelector('.room-head details[open], .welcome details.action[open]:not(#new)');
  if (open) {
    open.open = false;
    open.querySelector('summary')?.focus();
    return true;
  }
  const a = app();
  if (a && narrow.matches && a.classList.contains('info-open')) { setInfo(false); return true; }
  return false;
}

// The room list's filter: rooms whose name has what is typed; Enter opens the first.
function filterRooms(input) {
  const q = fold(input.value.trim());
  let shown = 0;
  let first = null;
  for (const li of document.querySelectorAll('#room-items > li')) {
    const name = li.querySelector('.name');
    if (!name) continue;
    const hit = !q || fold(name.textContent).includes(q);
    li.hidden = !hit;
    if (hit) { shown += 1; if (!first) first = li.querySelector('a'); }
  }
  const none = document.getElementById('room-filter-none');
  if (none) none.hidden = shown > 0;
  return first;
}

let region = null;
// Says `text` to screen readers, once, politely.
export function announce(text) {
  if (!region) region = document.getElementById('announce');
  if (!region || !text) return;
  region.textContent = '';
  // A new text node each time, so the same words are said again.
  setTimeout(() => { region.textContent = text; }, 50);
}

export function setupKeys() {
  document.addEventListener('keydown', (e) => {
    const mod = e.ctrlKey || e.metaKey;
    if (mod && !e.altKey && !e.shiftKey && (e.key === 'k' || e.key === 'K') && document.body.dataset.user) {
      e.preventDefault();
      openSwitcher();
    } else if (e.altKey && !mod && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
      e.preventDefault();
      stepRoom(e.key === 'ArrowUp' ? -1 : 1);
    } else if (e.key === 'Escape' && !e.defaultPrevented && !document.querySelector('dialog[open]')) {
      if (escape()) e.preventDefault();
    } else if (e.key === 'Tab') {
      trapDrawer(e);
    }
  });

  document.addEventListener('click', (e) => {
    if (e.target.closest('#room-info')) { setInfo(!infoOpen()); return; }
    if (e.target.closest('.close-drawer')) { setInfo(false); return; }
    // The scrim around the open drawer.
    const a = app();
    if (a && e.target === a && a.classList.contains('info-open')) { setInfo(false); return; }
    const show = e.target.closest('button.show-setup');
    if (show) {
      const tl = document.getElementById('timeline');
      const on = tl.classList.toggle('show-setup');
      show.setAttribute('aria-expanded', String(on));
      show.textContent = on ? 'Hide setup changes' : show.dataset.label;
    }
  });
  // Remember the setup button's first label for "Hide" to go back to.
  for (const b of document.querySelectorAll('button.show-setup')) b.dataset.label = b.textContent;

  document.addEventListener('input', (e) => { if (e.target.id === 'room-filter') filterRooms(e.target); });
  document.addEventListener('keydown', (e) => {
    if (e.target.id !== 'room-filter') return;
    if (e.key === 'Enter') { const first = filterRooms(e.target); if (first) { e.preventDefault(); first.click(); } }
    if (e.key === 'Escape' && e.target.value) { e.target.value = ''; filterRooms(e.target); e.preventDefault(); }
  });

  // The drawer follows the window: crossing the breakpoint closes the drawer, keeps the column.
  narrow.addEventListener('change', () => {
    const a = app();
    if (!a) return;
    a.classList.remove('info-open', 'info-closed');
    infoButton()?.setAttribute('aria-expanded', String(!narrow.matches));
  });
  infoButton()?.setAttribute('aria-expanded', String(!narrow.matches && !!document.getElementById('members')));

  // Home: "/rooms#new" (the room list's "+ New") opens the create panel; an opened panel
  // puts the focus in its first field.
  const openNew = () => {
    const d = document.getElementById('new');
    if (location.hash === '#new' && d && d.tagName === 'DETAILS') { d.open = true; d.querySelector('input')?.focus(); }
  };
  openNew();
  window.addEventListener('hashchange', openNew);
  for (const d of document.querySelectorAll('details.action')) {
    d.addEventListener('toggle', () => { if (d.open) d.querySelector('input:not([type=radio])')?.focus(); });
  }
}
