// The installable app: Chromium finds the manifest installable (no installability errors),
// the service worker installs and controls the page, shows a Web Push as a notification, and once the server is stopped (this
// script stops it: CHAT_PID) a message typed is kept, and a reload shows the offline page with
// it, not the browser's error. Screenshots of the offline page at desktop and phone widths,
// light and dark. Run by tests/browser.rs.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { start } from './people.mjs';

// A persistent profile: Chromium never finds an app installable in an incognito context (a
// fresh context is one).
const { base, browser, shootSchemes } = await start('app.mjs');
const profile = mkdtempSync(join(tmpdir(), 'chat-app-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  viewport: { width: 1366, height: 800 },
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});
const pid = Number(process.env.CHAT_PID);
if (!pid) { console.error('app.mjs needs CHAT_PID (the server to stop)'); process.exit(2); }
function fail(msg) { throw new Error(msg); }
const timeout = 10000;

try {
  const p = ctx.pages()[0] || await ctx.newPage();
  p.on('pageerror', (e) => { throw new Error(`page error: ${e.message}`); });
  await p.goto(`${base}/register`);
  await p.fill('input[name=username]', 'ana');
  await p.fill('input[name=password]', 'password123');
  await Promise.all([p.waitForURL(`${base}/rooms`), p.click('button[type=submit]')]);
  await p.fill('#new input[name=name]', 'Home');
  await Promise.all([p.waitForURL(/\/rooms\/!/), p.click('#new button[type=submit]')]);
  const roomUrl = p.url();
  await p.waitForSelector('#conn[data-state="live"]', { timeout });

  // The manifest, as Chromium reads it, and its installability checks.
  const cdp = await ctx.newCDPSession(p);
  const manifest = await cdp.send('Page.getAppManifest');
  if (!manifest.url.endsWith('/manifest.webmanifest') || manifest.errors.length) fail(`manifest: ${JSON.stringify(manifest)}`);
  await p.waitForFunction(async () => !!(await navigator.serviceWorker.ready).active, null, { timeout });
  await p.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout });
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  if (installabilityErrors.length) fail(`not installable: ${JSON.stringify(installabilityErrors)}`);
  const cached = await p.evaluate(async () => (await Promise.all((await caches.keys()).map(async (k) => (await (await caches.open(k)).keys()).map((r) => new URL(r.url).pathname)))).flat());
  if (!cached.includes('/offline') || !cached.some((u) => /\/assets\/[0-9a-f]{12}\/app\.js$/.test(u))) fail(`the shell is not kept: ${JSON.stringify(cached)}`);

  // A push for a closed browser (delivered to the worker as the push service would, through
  // DevTools; headless Chromium has no push service): with no tab of the app in view the
  // worker shows it as a notification, titled by the sender of a direct message.
  await ctx.grantPermissions(['notifications'], { origin: base });
  const regs = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => e.registrations.forEach((r) => regs.set(r.scopeURL, r.registrationId)));
  await cdp.send('ServiceWorker.enable');
  const deadline = Date.now() + timeout;
  while (!regs.has(`${base}/`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (!regs.has(`${base}/`)) fail(`no worker registration for ${base}/: ${JSON.stringify([...regs])}`);
  await p.goto('about:blank');
  const push = { kind: 'message', room_id: '!dm:example', event_id: '$e', room_name: '', direct: true,
    sender: '@ben:example', sender_name: 'Ben', body: 'dinner at 8?' };
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: base, registrationId: regs.get(`${base}/`), data: JSON.stringify(push) });
  await p.goto(roomUrl);
  await p.waitForSelector('#conn[data-state="live"]', { timeout });
  const shown = await p.waitForFunction(async () => {
    const list = await (await navigator.serviceWorker.ready).getNotifications();
    return list.length ? list.map((n) => `${n.title} | ${n.body} | ${n.tag} | ${n.data && n.data.url}`) : null;
  }, null, { timeout });
  const notes = await shown.jsonValue();
  if (JSON.stringify(notes) !== JSON.stringify([`Ben | dinner at 8? | !dm:example | /rooms/${encodeURIComponent('!dm:example')}`])) fail(`push notification: ${JSON.stringify(notes)}`);

  // The server goes away: a message typed now waits in the tab; a reload shows the offline page.
  process.kill(pid, 'SIGTERM');
  await p.waitForSelector('#conn:not([data-state="live"])', { timeout });
  await p.fill('#composer textarea', 'see you at dinner');
  await p.press('#composer textarea', 'Enter');
  await p.waitForSelector('#timeline li.msg.pending .body:text-is("see you at dinner")', { timeout });
  await p.goto(roomUrl).catch(() => {});
  await p.waitForSelector('#offline h1:text-is("You are offline")', { timeout });
  await p.waitForSelector('#queued li:text-is("see you at dinner")', { timeout });
  await shootSchemes(p, 'offline-desktop');
  await p.setViewportSize({ width: 390, height: 844 });
  await shootSchemes(p, 'offline-phone');
  console.log('app: installable, offline page ok');
} finally {
  await ctx.close();
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
