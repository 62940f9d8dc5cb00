// The service worker (served at /sw.js, with this release's version and app shell filled in
// by the server). It keeps the shell, the versioned assets and the offline page, so a page
// that cannot reach the server shows the offline page (with the messages waiting in the tab)
// instead of the browser's error. Nothing else is cached: pages, the API, files and the live
// channel always go to the server.
const VERSION = '__VERSION__';
const SHELL = __SHELL__;
const CACHE = `chat-${VERSION}`;

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

// A new release's worker drops the older releases' shells.
self.addEventListener('activate', (e) => {
  e.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith('chat-') && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (e) => {
  const req = e.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.mode === 'navigate') {
    e.respondWith(fetch(req).catch(() => caches.match('/offline', { ignoreSearch: true })));
  } else if (url.pathname.startsWith(`/assets/${VERSION}/`)) {
    e.respondWith(caches.match(req).then((hit) => hit || fetch(req)));
  }
});
