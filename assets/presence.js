// What the live channel says about people and rooms besides events: presence dots, who is
// typing, read receipts, and the room list's unread and mention badges and previews.

import { displayName, fragment, me, swapIn } from './dom.js';

const IDLE_AFTER_MS = 5 * 60 * 1000;

export function createPresence({ roomId, live, timeline }) {
  let lastInput = Date.now();
  let reported = null;

  function setPresence(user, state) {
    for (const el of document.querySelectorAll(`[data-presence-user="${CSS.escape(user)}"]`)) {
      el.dataset.presence = state;
      el.title = state;
    }
  }

  function currentActivity() {
    return document.visibilityState === 'visible' && Date.now() - lastInput < IDLE_AFTER_MS ? 'online' : 'idle';
  }

  function report(force) {
    const state = currentActivity();
    if (force || state !== reported) {
      if (live.send({ t: 'presence', state })) reported = state;
    }
  }

  for (const ev of ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart']) {
    window.addEventListener(ev, () => {
      lastInput = Date.now();
      if (reported === 'idle') report(false);
    }, { passive: true });
  }
  setInterval(() => report(false), 30000);

  function setBadge(link, selector, n, prefix) {
    const badge = link.querySelector(selector);
    if (!badge) return;
    badge.dataset.count = String(n);
    badge.textContent = prefix + (n >= 100 ? '99+' : String(n));
    badge.hidden = n === 0;
  }

  function refreshRoomList() {
    return swapIn('/fragments/rooms', 'room-list', (next) => {
      const a = roomId && next.querySelector(`a[data-room-id="${CSS.escape(roomId)}"]`);
      if (a) a.closest('li').classList.add('active');
    });
  }

  function refreshMembers() {
    if (roomId) swapIn(`/rooms/${encodeURIComponent(roomId)}/members`, 'members');
  }

  return {
    report,
    refreshRoomList,
    refreshMembers,

    onPresence(f) {
      if (f.users) {
        // Snapshot after (re)connecting, in chunks: the first resets everyone to offline.
        if (f.reset) {
          for (const el of document.querySelectorAll('[data-presence-user]')) {
            el.dataset.presence = 'offline';
            el.title = 'offline';
          }
        }
        for (const [user, state] of Object.entries(f.users)) setPresence(user, state);
      } else {
        setPresence(f.user_id, f.presence);
      }
    },

    onTyping(f) {
      if (f.room_id !== roomId) return;
      const el = document.getElementById('typing');
      if (!el) return;
      const names = f.user_ids.filter((u) => u !== me).map(displayName);
      el.textContent = names.length === 0 ? ''
        : names.length === 1 ? `${names[0]} is typing…`
          : names.length === 2 ? `${names[0]} and ${names[1]} are typing…`
            : 'Several people are typing…';
    },

    // A message from someone who was typing ends their notice.
    messageFrom(sender) {
      const el = document.getElementById('typing');
      if (el && sender !== me && el.textContent.startsWith(displayName(sender) + ' ')) el.textContent = '';
    },

    onReceipt(f) {
      if (f.room_id !== roomId || f.user_id === me) return;
      const tl = timeline.el();
      if (!tl) return;
      const old = tl.querySelector(`li.seen .receipt[data-user="${CSS.escape(f.user_id)}"]`);
      if (old) {
        const row = old.parentElement;
        old.remove();
        if (row && !row.children.length) row.remove();
      }
      const msgs = Array.from(tl.querySelectorAll('li.msg[data-pos]')).filter((li) => Number(li.dataset.pos) <= f.pos);
      const at = msgs[msgs.length - 1];
      if (!at) return;
      let row = at.nextElementSibling;
      if (!row || !row.classList.contains('seen')) {
        row = document.createElement('li');
        row.className = 'seen';
        row.dataset.pos = at.dataset.pos;
        at.after(row);
      }
      row.appendChild(fragment(f.html));
    },

    onUnread(f) {
      const link = document.querySelector(`#room-list a[data-room-id="${CSS.escape(f.room_id)}"]`);
      if (link) {
        setBadge(link, '.badge.unread', f.unread, '');
        setBadge(link, '.badge.mention', f.mentions, '@');
      }
    },

    // A message in a room: the room list shows its start (`text`, the frame's `preview`)
    // under the room's name.
    preview(roomIdOfMessage, ev, text) {
      const el = document.querySelector(`#room-list [data-preview-of="${CSS.escape(roomIdOfMessage)}"]`);
      if (!el || typeof text !== 'string') return;
      const direct = !el.closest('a').querySelector('.avatar.room');
      el.textContent = ev.sender === me ? `You: ${text}` : direct ? text : `${displayName(ev.sender)}: ${text}`;
    },

    // A message in another room: its badge goes up and the room moves to the top.
    bump(roomIdOfMessage, mentioned) {
      const link = document.querySelector(`#room-list a[data-room-id="${CSS.escape(roomIdOfMessage)}"]`);
      if (!link) { refreshRoomList(); return; }
      const badge = link.querySelector('.badge.unread');
      if (!badge) return;
      setBadge(link, '.badge.unread', Number(badge.dataset.count || 0) + 1, '');
      if (mentioned) {
        const m = link.querySelector('.badge.mention');
        setBadge(link, '.badge.mention', Number((m && m.dataset.count) || 0) + 1, '@');
      }
      const li = link.closest('li');
      if (li && li.parentElement) li.parentElement.prepend(li);
    },
  };
}
