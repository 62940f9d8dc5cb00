// Desktop notifications. The server decides which messages alert this user (`notify` frames:
// their direct chats, messages that mention them or the room); while the tab is hidden each
// one shows as a notification, once the user has allowed them with the button under the room
// list (never asked on page load). One per room at a time (the tag), so several tabs show one;
// a click brings the tab forward in that room.
import { displayName } from './dom.js';

const supported = 'Notification' in window;

// The ask button is in the room list, which is swapped in again when it changes: shown again
// then while the user has not decided.
function showAsk() {
  const ask = document.getElementById('notify-ask');
  if (ask) ask.hidden = !supported || Notification.permission !== 'default';
}

export function createNotifications({ currentRoom }) {
  const iconLink = document.querySelector('link[rel="icon"]');
  const icon = iconLink ? iconLink.href : undefined;
  const shown = new Set();
  showAsk();
  const app = document.querySelector('.app');
  if (app) new MutationObserver(showAsk).observe(app, { childList: true });
  document.addEventListener('click', async (e) => {
    if (!e.target.closest('#notify-ask') || !supported) return;
    try { await Notification.requestPermission(); } catch { /* refused or unavailable */ }
    showAsk();
  });

  return {
    onNotify(f) {
      if (!supported || Notification.permission !== 'granted' || document.visibilityState === 'visible') return;
      if (shown.has(f.event_id)) return;
      shown.add(f.event_id);
      const who = displayName(f.sender);
      const title = f.direct || !f.room_name ? who : f.room_name;
      const body = f.direct || !f.room_name ? f.body : `${who}: ${f.body}`;
      const n = new Notification(title, { body, tag: f.room_id, icon });
      n.onclick = () => {
        window.focus();
        n.close();
        if (f.room_id !== currentRoom) location.href = `/rooms/${encodeURIComponent(f.room_id)}`;
      };
    },
  };
}
