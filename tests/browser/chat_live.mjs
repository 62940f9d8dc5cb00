// Two people in two browser contexts register, meet in one room and see each other's messages
// appear live, without reloading. Run by tests/browser.rs with the server's URL as argument.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { register } from './people.mjs';

const base = process.argv[2];
const shots = process.argv[3] || 'target/browser-shots';
if (!base) { console.error('usage: chat_live.mjs URL [SHOT_DIR]'); process.exit(2); }
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});

function fail(msg) { throw new Error(msg); }

const person = (name, extra = {}) => register(browser, base, name, { viewport: { width: 1100, height: 760 }, ...extra });

const timeout = 10000;
try {
  const ana = await person('ana');
  // Ben has allowed notifications; Ana has not been asked yet, so her page offers to.
  const ben = await person('ben', { permissions: ['notifications'], watchNotifications: true });
  if (await ben.page.locator('#notify-ask').isVisible()) fail('Ben, who allowed notifications, is asked again');
  const anaAsked = await ana.page.evaluate(() => Notification.permission);
  if (anaAsked === 'default' && !await ana.page.locator('#notify-ask').isVisible()) fail('Ana is not offered notifications');

  // Ana creates a public room and lands in it.
  await ana.page.fill('#new input[name=name]', 'Lobby');
  await ana.page.fill('#new input[name=topic]', 'Say hi');
  await Promise.all([ana.page.waitForURL(/\/rooms\/!/), ana.page.click('#new button[type=submit]')]);
  const roomUrl = ana.page.url();

  // The client's files, named by their version, are kept (by the HTTP cache and the service
  // worker): this second page fetched none of them again. (That they travel gzipped is checked
  // in tests/pages.rs: a body from the worker's cache shows no transfer encoding.)
  const assets = await ana.page.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => new URL(e.name).pathname.startsWith('/assets/'))
    .map((e) => ({ path: new URL(e.name).pathname, transfer: e.transferSize })));
  if (!assets.some((e) => /^\/assets\/[0-9a-f]{12}\/app\.js$/.test(e.path))) fail(`app.js not versioned: ${JSON.stringify(assets)}`);
  const fetched = assets.filter((e) => e.transfer > 0);
  if (assets.length < 5 || fetched.length) fail(`assets fetched again: ${JSON.stringify(fetched)} of ${assets.length}`);

  // Ben finds it in the directory and joins.
  await ben.page.reload();
  await Promise.all([ben.page.waitForURL(roomUrl), ben.page.click('#public-rooms a:has-text("Lobby")')]);
  await Promise.all([ben.page.waitForURL(roomUrl), ben.page.click('button:has-text("Join room")')]);

  for (const p of [ana.page, ben.page]) {
    await p.waitForSelector('#conn[data-state="live"]', { timeout });
    await p.evaluate(() => { window.__noReload = true; });
  }

  // Ana sees Ben join live.
  await ana.page.waitForSelector('#timeline li.note:has-text("ben joined")', { timeout });
  await ana.page.waitForSelector('#members li:has-text("ben")', { state: 'attached', timeout });

  // Ana -> Ben, live, and Ana's own message is confirmed (no longer pending).
  await ana.page.fill('#composer textarea', 'hello from ana');
  await ana.page.press('#composer textarea', 'Enter');
  await ben.page.waitForSelector('#timeline li.msg .body:text-is("hello from ana")', { timeout });
  await ana.page.waitForSelector('#timeline li.msg:not(.pending) .body:text-is("hello from ana")', { timeout });

  // Ben -> Ana, including markup that must stay inert text.
  const evil = '<img src=x onerror="alert(1)"> hi ana';
  await ben.page.fill('#composer textarea', evil);
  await ben.page.click('#composer button[type=submit]');
  await ana.page.waitForSelector('#timeline li.msg .body:text-is(\'<img src=x onerror="alert(1)"> hi ana\')', { timeout });
  if (await ana.page.locator('#timeline img').count() !== 0) fail('markup from a message was rendered as HTML');

  // Typing: Ben types without sending; Ana sees it; sending clears it.
  await ben.page.fill('#composer textarea', 'typing something');
  await ben.page.type('#composer textarea', '…');
  await ana.page.waitForSelector('#typing:text-is("ben is typing…")', { timeout });
  await ben.page.press('#composer textarea', 'Enter');
  await ana.page.waitForSelector('#timeline li.msg .body:text-is("typing something…")', { timeout });
  await ana.page.waitForSelector('#typing:empty', { timeout });

  // Presence: each sees the other online in the member list.
  await ana.page.waitForSelector(`#members .dot[data-presence-user^="@ben:"][data-presence="online"]`, { state: 'attached', timeout });
  await ben.page.waitForSelector(`#members .dot[data-presence-user^="@ana:"][data-presence="online"]`, { state: 'attached', timeout });

  // Unread badge on another tab of Ben, on the home page, updates live while Ben's room tab is
  // elsewhere; opening the room in that tab clears the badge on the home tab.
  const benHome = await ben.ctx.newPage();
  await benHome.goto(`${base}/rooms`);
  await benHome.waitForSelector('#conn[data-state="live"]', { timeout });
  await ben.page.goto(`${base}/settings`);
  // The home tab is hidden: the mention shows as a desktop notification there.
  await benHome.evaluate(() => { window.__hidden = true; });
  await ana.page.fill('#composer textarea', 'are you there, @ben?');
  await ana.page.press('#composer textarea', 'Enter');
  await benHome.waitForSelector('#room-list a:has-text("Lobby") .badge.unread:text-is("1")', { timeout });
  await benHome.waitForSelector('#room-list a:has-text("Lobby") .badge.mention:text-is("@1")', { timeout });
  // The tab says so too: the count in its title, a badge on its icon.
  await benHome.waitForFunction(() => document.title.startsWith('(1) ')
    && document.querySelector('link[rel="icon"]').href.startsWith('data:image/png'), null, { timeout });
  await ben.page.goto(roomUrl);
  // The message mentions Ben: his page marks it, his name as a pill.
  await ben.page.waitForSelector('#timeline li.msg.mentions-me .body:has(.pill.me:text-is("@ben")):has-text("are you there, @ben?")', { timeout });
  await benHome.waitForSelector('#room-list a:has-text("Lobby") .badge.unread[hidden]', { state: 'attached', timeout });
  await benHome.waitForSelector('#room-list a:has-text("Lobby") .badge.mention[hidden]', { state: 'attached', timeout });
  await benHome.waitForFunction(() => !document.title.startsWith('(')
    && document.querySelector('link[rel="icon"]').href.endsWith('/icon.svg'), null, { timeout });
  const notes = await benHome.evaluate(() => window.__notes.map((n) => `${n.title} | ${n.body}`));
  if (JSON.stringify(notes) !== JSON.stringify(['Lobby | ana: are you there, @ben?'])) fail(`Ben's notifications: ${JSON.stringify(notes)}`);
  // A click on it opens the room in that tab.
  await Promise.all([benHome.waitForURL(roomUrl), benHome.evaluate(() => window.__notes[0].onclick())]);
  await benHome.waitForSelector('#conn[data-state="live"]', { timeout });
  // Ana sees that Ben has read it.
  await ana.page.waitForSelector('#timeline li.seen .receipt[data-user^="@ben:"]', { timeout });
  await ben.page.evaluate(() => { window.__noReload = true; });

  for (const p of [ana.page, ben.page]) {
    const same = await p.evaluate(() => window.__noReload === true);
    if (!same) fail('a page reloaded; messages must arrive live');
    const order = await p.$$eval('#timeline li.msg .body', (els) => els.map((e) => e.textContent));
    const want = ['hello from ana', evil, 'typing something…', 'are you there, @ben?'];
    if (JSON.stringify(order) !== JSON.stringify(want)) fail(`timeline order ${JSON.stringify(order)}`);
  }

  // Ben mutes the room from its bell: a mention there no longer notifies him, a direct
  // message from Ana does (its title is her name).
  await ben.page.click('.notify-menu summary');
  await ben.page.check('.notify-menu input[value="mute"]');
  await Promise.all([ben.page.waitForNavigation(), ben.page.click('.notify-menu button[type="submit"]')]);
  await ben.page.waitForSelector('.notify-menu summary[aria-label$="Muted"]', { timeout });
  await benHome.evaluate(() => { window.__notes.length = 0; window.__hidden = true; });
  await ana.page.fill('#composer textarea', 'muted, @ben?');
  await ana.page.press('#composer textarea', 'Enter');
  await ana.page.waitForSelector('#timeline li.msg .body:text-is("muted, @ben?")', { timeout });
  const api = (page, path, body) => page.evaluate(async ([path, body]) => {
    const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return r.json();
  }, [path, body]);
  const dm = (await api(ana.page, '/api/v1/dm', { user_id: 'ben' })).room_id;
  await api(ben.page, '/api/v1/dm', { user_id: 'ana' });
  await api(ana.page, `/api/v1/rooms/${encodeURIComponent(dm)}/messages`, { body: 'psst, just us', txn_id: 'dm1' });
  await benHome.waitForFunction(() => window.__notes.length > 0, null, { timeout });
  const later = await benHome.evaluate(() => window.__notes.map((n) => `${n.title} | ${n.body}`));
  if (JSON.stringify(later) !== JSON.stringify(['ana | psst, just us'])) fail(`Ben's notifications with Lobby muted: ${JSON.stringify(later)}`);

  await ana.page.screenshot({ path: `${shots}/ana-room.png` });
  await benHome.screenshot({ path: `${shots}/ben-home.png` });
  await ana.page.emulateMedia({ colorScheme: 'dark' });
  await ana.page.setViewportSize({ width: 390, height: 740 });
  await ana.page.screenshot({ path: `${shots}/ana-room-phone-dark.png` });

  // Leaving asks first and says what it means; the focus starts on Cancel, Esc keeps the
  // room; confirmed, Ana is out.
  await ana.page.emulateMedia({ colorScheme: 'light' });
  await ana.page.setViewportSize({ width: 1280, height: 760 });
  await ana.page.click('#members form.leave button');
  await ana.page.waitForSelector('dialog.confirm[open] #confirm-title:text-is("Leave Lobby?")', { timeout });
  const detail = await ana.page.textContent('#confirm-detail');
  if (!detail.includes('stop getting its messages')) fail(`leave detail: ${detail}`);
  if (await ana.page.evaluate(() => document.activeElement.textContent) !== 'Cancel') fail('the focus is not on Cancel');
  await ana.page.screenshot({ path: `${shots}/ana-leave-confirm.png` });
  await ana.page.keyboard.press('Escape');
  await ana.page.waitForSelector('dialog.confirm:not([open])', { state: 'attached', timeout });
  if (ana.page.url() !== roomUrl) fail(`Esc left the room: ${ana.page.url()}`);
  await ana.page.click('#members form.leave button');
  await ana.page.click('dialog.confirm button[value="ok"]');
  // The room list (the live client may also move the page there as the leave comes back).
  await ana.page.waitForSelector('main.home .welcome', { timeout });
  if (new URL(ana.page.url()).pathname !== '/rooms') fail(`after leaving: ${ana.page.url()}`);
  if (await ana.page.locator('#room-list a:has-text("Lobby")').count()) fail('Lobby is still in the room list');
  console.log('browser chat: ok');
} finally {
  await browser.close();
}
