// The service worker (served at /sw.js, with this release's version and app shell filled in
// by the server). It keeps the shell, the versioned assets and the offline page, so a page
// that cannot reach the server shows the offline page (with the messages waiting in the tab)
// instead of the browser's error. Nothing else is cached: pages, the API, files and the live
// channel always go to the server.
const VERSION = '__VERSION__';
const SHELL = __SHELL__;
const CACHE = `chat-${VERSION}`;

self.addEventListener('install', (e) => {
  const kept = caches.open(CACHE).then((c) => c.addAll(SHELL));
  // Where the browser can, the versioned files skip this worker altogether (its HTTP cache
  // keeps them for good): a page loads as fast as without a worker.
  let routed = Promise.resolve();
  try {
    if (e.addRoutes) {
      routed = e.addRoutes([
        { condition: { urlPattern: new URLPattern({ pathname: '/assets/*' }) }, source: 'network' },
        // Pages: the network and this worker race (the worker only matters when the network
        // fails: then it answers with the offline page), so a page does not wait for the
        // worker to start.
        { condition: { requestMode: 'navigate' }, source: 'race-network-and-fetch-handler' },
      ]);
    }
  } catch { /* no static routing here */ }
  e.waitUntil(Promise.all([kept, routed.catch(() => {})]).then(() => self.skipWaiting()));
});

// A new release's worker drops the older releases' shells. Pages load through navigation
// preload (the request starts while the worker wakes up).
self.addEventListener('activate', (e) => {
  e.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith('chat-') && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.registration.navigationPreload && self.registration.navigationPreload.enable())
    .then(() => self.clients.claim()));
});

// Pages shown the offline page: their files come from the kept shell. Other pages' files are
// left to the browser (its HTTP cache keeps them, named by version): no detour through here.
const offlinePages = new Set();

self.addEventListener('fetch', (e) => {
  const req = e.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.mode === 'navigate') {
    e.respondWith((async () => {
      try {
        return (await e.preloadResponse) || await fetch(req);
      } catch {
        offlinePages.add(e.resultingClientId);
        return caches.match('/offline', { ignoreSearch: true });
      }
    })());
  } else if (offlinePages.has(e.clientId) && url.pathname.startsWith(`/assets/${VERSION}/`)) {
    e.respondWith(caches.match(req).then((hit) => hit || fetch(req)));
  }
});

// Web Push: the server sends (encrypted, the browser decrypts) a direct message, a mention, a
// keyword or a call for someone with no tab of the app in view. A tab in view shows the
// message itself; otherwise a notification, one per room (a newer one replaces it).
self.addEventListener('push', (e) => {
  let p = {};
  try { p = e.data ? e.data.json() : {}; } catch { return; }
  if (!p.room_id) return;
  e.waitUntil((async () => {
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    if (wins.some((w) => w.visibilityState === 'visible' && w.focused)) return;
    const who = p.sender_name || p.sender || 'Someone';
    const call = p.kind === 'call';
    const title = call ? `${who} is calling` : (p.direct || !p.room_name ? who : p.room_name);
    let body;
    if (call) body = p.video ? 'Video call' : 'Voice call';
    else if (p.body === undefined) body = p.direct ? 'New message' : `New message from ${who}`;
    else body = p.direct || !p.room_name ? p.body : `${who}: ${p.body}`;
    await self.registration.showNotification(title, {
      body,
      tag: call ? `call:${p.room_id}` : p.room_id,
      renotify: true,
      requireInteraction: call,
      icon: `/assets/${VERSION}/icon-192.png`,
      badge: `/assets/${VERSION}/icon-192.png`,
      data: { url: `/rooms/${encodeURIComponent(p.room_id)}` },
    });
  })());
});

// A click opens the room: in a tab of the app if one is open, else a new one.
self.addEventListener('notificationclick', (e) => {
  e.notification.close();
  const url = (e.notification.data && e.notification.data.url) || '/rooms';
  e.waitUntil((async () => {
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const win = wins.find((w) => new URL(w.url).origin === self.location.origin);
    if (win) {
      await win.focus();
      if (new URL(win.url).pathname !== url) await win.navigate(url).catch(() => {});
      return;
    }
    await self.clients.openWindow(url);
  })());
});
