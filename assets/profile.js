// A person's card: clicking a name or a face (in the timeline or the member list) opens the
// server's <template id="profile-card"> filled with their face, name and id, with buttons to
// write to them directly (the /dm form) or mention them in the composer. The name shown is
// the room's; the card then asks the server for the profile (which asks a remote user's own
// server) and shows the name they go by now. Esc or a click elsewhere closes it. A moderator
// also gets Remove from room and Ban, each asked about first (saying what happens).

import { ask } from './confirm.js';
import { avatarColour, displayName, localpart, me } from './dom.js';

let open = null;

export function setupProfiles({ mention, roomId, notice }) {
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
    moderation(card, user);
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

  // Remove (kick) and Ban, for a member of the room the viewer may moderate (the server has
  // the last word: a member of equal or higher power cannot be removed).
  function moderation(card, user) {
    const room = document.getElementById('room');
    const box = card.querySelector('.moderate');
    const member = document.querySelector(`#members li[title="${CSS.escape(user)}"]`);
    if (!room || !box || !roomId || user === me || !member) return;
    const roomName = (document.querySelector('.room-head h1')?.textContent || 'this room').trim();
    const acts = [
      ['kick', room.dataset.canKick === 'true', 'Remove', `Remove ${displayName(user)} from ${roomName}?`,
        'They leave the room now. They can come back if the room is public or someone invites them.'],
      ['ban', room.dataset.canBan === 'true', 'Ban', `Ban ${displayName(user)} from ${roomName}?`,
        'They leave the room now and cannot join again, even when invited, until a moderator lifts the ban.'],
    ];
    for (const [act, allowed, action, title, detail] of acts) {
      const b = box.querySelector(`[data-act="${act}"]`);
      if (!b || !allowed) continue;
      b.hidden = false;
      box.hidden = false;
      b.addEventListener('click', async () => {
        close();
        if (!(await ask({ title, detail, action }))) return;
        const res = await fetch(`/api/v1/rooms/${encodeURIComponent(roomId)}/${act}`, {
          method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ user_id: user }),
        });
        if (!res.ok) {
          const why = await res.json().catch(() => ({}));
          notice(`Not done: ${why.message || why.error || res.status}`);
        }
      });
    }
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
