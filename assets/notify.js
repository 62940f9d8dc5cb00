// Desktop notifications. The server decides which messages alert this user (`notify` frames:
// their direct chats, messages that mention them or the room); while the tab is hidden each
// one shows as a notification, once the user has allowed them with the button under the room
// list (never asked on page load). One per room at a time (the tag), so several tabs show one;
// a click brings the tab forward in that room. Calls ring the same way, and with the sound
// setting on, a chime plays.
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
      const call = f.kind === 'call';
      const title = call ? `${who} is calling` : f.direct || !f.room_name ? who : f.room_name;
      const body = call ? 'Open the room to answer' : f.direct || !f.room_name ? f.body : `${who}: ${f.body}`;
      const n = new Notification(title, {
        body, tag: call ? `call:${f.room_id}` : f.room_id, icon, requireInteraction: call, silent: !!f.sound,
      });
      if (f.sound) chime(call);
      n.onclick = () => {
        window.focus();
        n.close();
        if (f.room_id !== currentRoom) location.href = `/rooms/${encodeURIComponent(f.room_id)}`;
      };
    },
  };
}

// A short chime (two notes; three for a call), made with Web Audio: no sound file to load.
// Browsers allow it once the page has had a click or key press; otherwise it stays silent.
let audio = null;
function chime(call) {
  try {
    audio = audio || new AudioContext();
    const t0 = audio.currentTime + 0.01;
    const notes = call ? [660, 880, 660] : [880, 1320];
    notes.forEach((hz, i) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = hz;
      const t = t0 + i * 0.14;
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.15, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.12);
      osc.connect(gain).connect(audio.destination);
      osc.start(t);
      osc.stop(t + 0.13);
    });
  } catch { /* no audio here */ }
}
