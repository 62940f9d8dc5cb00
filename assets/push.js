// Web Push on the settings page: turns push on for this browser. The browser subscribes with
// the server's key (VAPID) at its vendor's push service; the server is given the endpoint and
// the keys to encrypt for it, and lists the device with the others. Push needs a secure page
// (HTTPS, or localhost) with a service worker, and the user's permission.

function b64urlToBytes(text) {
  const pad = '='.repeat((4 - (text.length % 4)) % 4);
  const raw = atob((text + pad).replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

// "Chrome on Linux" and the like, for the list of devices.
function deviceLabel() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox'
    : /Chrome\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'A browser';
  const system = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS X/.test(ua) ? 'macOS'
    : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : '';
  return system ? `${browser} on ${system}` : browser;
}

export async function setupPush() {
  const section = document.getElementById('push');
  const button = document.getElementById('push-on');
  const state = document.getElementById('push-state');
  if (!section || !button) return;
  const say = (t) => { if (state) state.textContent = t; };
  if (!('serviceWorker' in navigator) || !('PushManager' in window) || !window.isSecureContext) {
    say('This browser (or this page, without HTTPS) cannot receive push.');
    return;
  }
  const reg = await navigator.serviceWorker.ready;
  const existing = await reg.pushManager.getSubscription();
  const mine = section.querySelector('li[data-this]');
  button.hidden = !!(existing && mine);
  if (existing && mine) say('Push is on for this browser.');
  button.addEventListener('click', async () => {
    button.disabled = true;
    say('Turning push on…');
    try {
      if (Notification.permission !== 'granted' && await Notification.requestPermission() !== 'granted') {
        say('Notifications are blocked for this site in the browser’s settings.');
        return;
      }
      const sub = (await reg.pushManager.getSubscription())
        || await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlToBytes(section.dataset.key) });
      const res = await fetch('/api/v1/push/subscriptions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...sub.toJSON(), label: deviceLabel() }),
      });
      const out = await res.json().catch(() => ({}));
      if (!res.ok) { say(out.message || 'The server refused it.'); return; }
      location.reload();
    } catch (e) {
      say(`Push could not be turned on: ${e.message || e}`);
    } finally {
      button.disabled = false;
    }
  });
}
