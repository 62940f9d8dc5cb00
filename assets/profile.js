// A person's card: clicking a name or a face (in the timeline or the member list) opens the
// server's <template id="profile-card"> filled with their face, name and id, with buttons to
// write to them directly (the /dm form) or mention them in the composer. The name shown is
// the room's; the card then asks the server for the profile (which asks a remote user's own
// server) and shows the name they go by now. Esc or a click elsewhere closes it.

import { avatarColour, displayName, localpart, me } from './dom.js';

let open = null;

export function setupProfiles({ mention }) {
  const tpl = document.getElementById('profile-card');
  if (!tpl) return;
  const localServer = me ? me.slice(me.indexOf(':') + 1) : '';

  function close() {
    if (!open) return;
    open.remove();
    open = null;
  }

  function show(user, anchor) {
    close();
    const card = tpl.content.firstElementChild.cloneNode(true);
    const face = card.querySelector('.avatar');
    face.classList.add(`c${avatarColour(user)}`);
    face.textContent = Array.from(displayName(user))[0].toUpperCase();
    card.querySelector('.name').textContent = displayName(user);
    card.querySelector('.id').textContent = user;
    card.querySelector('input[name="user"]').value = user;
    if (user === me) {
      card.querySelector('.buttons').remove();
      card.querySelector('.self').hidden = false;
    }
    const mentionBtn = card.querySelector('[data-act="mention"]');
    if (mentionBtn) {
      mentionBtn.addEventListener('click', () => {
        close();
        mention(user.endsWith(`:${localServer}`) ? `@${localpart(user)}` : user);
      });
    }
    document.body.appendChild(card);
    const r = anchor.getBoundingClientRect();
    const top = Math.min(r.bottom + 6, window.innerHeight - card.offsetHeight - 6);
    const left = Math.min(Math.max(6, r.left), window.innerWidth - card.offsetWidth - 6);
    card.style.top = `${Math.max(6, top)}px`;
    card.style.left = `${left}px`;
    open = card;
    const first = card.querySelector('button');
    if (first) first.focus();
    refresh(card, user);
  }

  async function refresh(card, user) {
    try {
      const res = await fetch(`/api/v1/profile/${encodeURIComponent(user)}`, { credentials: 'same-origin' });
      if (!res.ok || open !== card) return;
      const p = await res.json();
      const name = typeof p.display_name === 'string' && p.display_name.trim() ? p.display_name.trim() : localpart(user);
      card.querySelector('.name').textContent = name;
      card.querySelector('.avatar').textContent = Array.from(name)[0].toUpperCase();
    } catch (_) { /* the room's name stays */ }
  }

  document.addEventListener('click', (e) => {
    if (open && open.contains(e.target)) return;
    const who = e.target.closest('#timeline li.msg > .who[data-name-of], #timeline li.msg > .avatar[data-initial-of], '
      + '#members .name[data-name-of], #members li > .avatar');
    if (!who) { close(); return; }
    const user = who.dataset.nameOf || who.dataset.initialOf || who.closest('li').getAttribute('title');
    if (!user || !user.startsWith('@')) return;
    e.preventDefault();
    show(user, who);
  });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && open) { close(); } });
}
