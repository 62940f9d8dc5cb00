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
    if (e.addRoutes) routed = e.addRoutes([{ condition: { urlPattern: new URLPattern({ pathname: '/assets/*' }) }, source: 'network' }]);
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
