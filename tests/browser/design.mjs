// Every page and main state, checked the way a person with a phone, a desktop, a screen reader
// or a keyboard meets them:
// - axe-core (run inside the page) at 1366×800 and 390×844, light and dark: no serious or
//   critical violation;
// - no horizontal scrolling at 320, 390 and 768 px;
// - a screenshot of each (desktop and phone, light and dark) into the shots folder.
// Usage: design.mjs URL SHOT_DIR, with CHAT_ADMIN=name:password (a server administrator).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { start, register } from './people.mjs';

// Calls as in calls.mjs: fake camera and microphone, loopback WebRTC, media through our relay.
const { base, browser, shots } = await start('design.mjs', {
  args: ['--disable-quic', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required', '--disable-features=WebRtcHideLocalIpsWithMdns'],
});
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const [adminName, adminPassword] = (process.env.CHAT_ADMIN || ':').split(':');
const SIZES = [[1366, 800, 'desktop'], [390, 844, 'phone']];
const problems = [];
let audited = 0;

const api = (page, path, body) => page.evaluate(async ([path, body]) => {
  const r = await fetch(path, { method: body ? 'POST' : 'GET', headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}, [path, body]);

// axe-core's serious and critical findings on what `page` shows now.
async function axe(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const r = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
    resultTypes: ['violations'],
  }));
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help}\n      ${v.nodes.slice(0, 4).map((n) => `${n.target.join(' ')}: ${(n.failureSummary || '').replace(/\s+/g, ' ').slice(0, 220)}`).join('\n      ')}`);
}

// Two frames, for what a viewport change or a colour scheme sets off (media query listeners,
// layout) to have run. Motion is reduced for the audits, so no transition is half-way.
async function frames(page) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

// What scrolls sideways at `width`: the page, and the widest element sticking out.
async function sideways(page, width) {
  return page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth <= w) return null;
    let worst = null;
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.right > w + 1 && (!worst || r.right > worst.right) && getComputedStyle(el).position !== 'fixed') {
        worst = { right: Math.round(r.right), what: `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${[...el.classList].join('.')}` };
      }
    }
    return `scrollWidth ${document.documentElement.scrollWidth} > ${w}; widest: ${worst ? `${worst.what} to ${worst.right}px` : '?'}`;
  });
}

// Audits the state `page` is in (set up again by `prepare` after each viewport change, when
// the state does not survive one, e.g. an open dialog).
async function audit(page, name, { prepare = async () => {}, widths = [320, 390, 768] } = {}) {
  await page.emulateMedia({ reducedMotion: 'reduce' });
  for (const [w, h, tag] of SIZES) {
    await page.setViewportSize({ width: w, height: h });
    await frames(page);
    await prepare(page, tag);
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme, reducedMotion: 'reduce' });
      await frames(page);
      for (const v of await axe(page)) problems.push(`${name} ${tag} ${scheme}: ${v}`);
      await page.screenshot({ path: `${shots}/design-${name}-${tag}-${scheme}.png` });
      audited++;
    }
    await page.emulateMedia({ colorScheme: 'light' });
  }
  for (const width of widths) {
    await page.setViewportSize({ width, height: 800 });
    await frames(page);
    await prepare(page, width < 700 ? 'phone' : 'desktop');
    const s = await sideways(page, width);
    if (s) problems.push(`${name} at ${width}px scrolls sideways: ${s}`);
  }
  await page.setViewportSize({ width: 1366, height: 800 });
}

try {
  const sfx = String(Date.now() % 100000);
  // Signed out.
  const anon = await (await browser.newContext()).newPage();
  await anon.goto(`${base}/login`);
  await audit(anon, 'sign-in');
  await anon.goto(`${base}/register`);
  await audit(anon, 'register');

  // First run: a new account with no rooms.
  const media = { viewport: { width: 1366, height: 800 }, permissions: ['camera', 'microphone'] };
  const ana = await register(browser, base, `ana${sfx}`, media);
  const ben = await register(browser, base, `ben${sfx}`, media);
  // Calls relay through the server's TURN on 127.0.0.1, as in calls.mjs.
  for (const p of [ana, ben]) await p.ctx.addInitScript(() => { window.CHAT_FORCE_RELAY = true; });
  await audit(ana.page, 'home-first-run');

  // A room with a conversation in it.
  const room = (await api(ana.page, '/api/v1/rooms', { name: 'Garden club', topic: 'Seeds, soil and the spring plan', visibility: 'public' })).room_id;
  const r = encodeURIComponent(room);
  await api(ben.page, `/api/v1/rooms/${r}/join`, {});
  const lines = ['Morning! Who has the **tomato** seeds?', 'I do — three kinds.', 'Bring them on Saturday, please 🌱', `@ben${sfx} can you water on Sunday?`];
  let last;
  for (const [i, body] of lines.entries()) {
    last = (await api(i % 2 ? ben.page : ana.page, `/api/v1/rooms/${r}/messages`, { body, txn_id: `t${i}${sfx}` })).event_id;
  }
  await api(ana.page, `/api/v1/rooms/${r}/messages`, { body: 'Sure.', txn_id: `reply${sfx}`, reply_to: last });
  const dm = (await api(ben.page, '/api/v1/dm', { user_id: `ana${sfx}` })).room_id;
  await api(ben.page, `/api/v1/rooms/${encodeURIComponent(dm)}/messages`, { body: 'Are you coming tonight?', txn_id: `dm${sfx}` });

  await ana.page.goto(`${base}/rooms`);
  await audit(ana.page, 'home');
  await ana.page.goto(`${base}/rooms/${r}`);
  await ana.page.waitForSelector('#conn[data-state="live"]');
  await audit(ana.page, 'room');
  await api(ana.page, `/api/v1/rooms/${encodeURIComponent(dm)}/join`, {});
  await api(ana.page, `/api/v1/rooms/${encodeURIComponent(dm)}/messages`, { body: 'Yes! Bringing the seeds.', txn_id: `dm2${sfx}` });
  await ana.page.goto(`${base}/rooms/${encodeURIComponent(dm)}`);
  await audit(ana.page, 'direct');
  await ana.page.goto(`${base}/rooms/${r}`);
  // Room info: a column on desktop, a drawer over the room on a phone.
  const openInfo = async (page) => {
    if (await page.$('dialog[open]')) await page.keyboard.press('Escape');
    if (await page.getAttribute('#room-info', 'aria-expanded') !== 'true') await page.click('#room-info');
    await page.waitForSelector('#members form.leave button', { state: 'visible' });
  };
  await audit(ana.page, 'room-info', { prepare: openInfo });
  await audit(ana.page, 'leave-dialog', {
    prepare: async (page) => {
      await openInfo(page);
      await page.click('#members form.leave button');
      await page.waitForSelector('dialog.confirm[open]');
    },
  });
  await ana.page.keyboard.press('Escape');
  await ana.page.reload();
  await audit(ana.page, 'switcher', {
    prepare: async (page) => {
      if (!(await page.$('dialog.switcher[open]'))) {
        await page.keyboard.press('Control+k');
        await page.waitForSelector('dialog.switcher[open]');
      }
    },
  });
  await ana.page.keyboard.press('Escape');
  await ana.page.goto(`${base}/settings`);
  await audit(ana.page, 'settings');

  // Search: the page before a search, results with the words marked (filters open), and a
  // message opened from a result (marked, the timeline short of the newest).
  await ana.page.goto(`${base}/search`);
  await audit(ana.page, 'search-empty');
  let hits = [];
  for (let i = 0; i < 100 && !hits.length; i += 1) {
    const res = await ana.page.request.get(`${base}/api/v1/search?q=seeds`);
    hits = (await res.json()).results || [];
    if (!hits.length) await ana.page.waitForTimeout(100);
  }
  if (!hits.length) throw new Error('search found nothing for "seeds"');
  await ana.page.goto(`${base}/search?q=seeds&since=2020-01-01`);
  await audit(ana.page, 'search');
  const first = hits[hits.length - 1].event.event_id;
  await ana.page.goto(`${base}/rooms/${r}/events/${encodeURIComponent(first)}`);
  await ana.page.waitForSelector('#timeline li.msg.target');
  await audit(ana.page, 'message-opened');

  // An invitation.
  const secret = (await api(ana.page, '/api/v1/rooms', { name: 'Surprise party', topic: 'Do not tell Ben… oh', visibility: 'private' })).room_id;
  await api(ana.page, `/api/v1/rooms/${encodeURIComponent(secret)}/invite`, { user_id: `ben${sfx}` });
  await ben.page.goto(`${base}/rooms/${encodeURIComponent(secret)}`);
  await audit(ben.page, 'invitation');

  // Asking to join: a room that takes requests, as someone outside it sees it; the request
  // sent (through the page's form, with a message); the moderator's room info with the
  // request and "Let in"; the room's settings offering who can join.
  const porch = (await api(ana.page, '/api/v1/rooms', { name: 'Book club', topic: 'One book a month', visibility: 'private' })).room_id;
  const pr = encodeURIComponent(porch);
  await api(ana.page, `/api/v1/rooms/${pr}/settings`, { visibility: 'knock' });
  await ben.page.goto(`${base}/rooms/${pr}`);
  await ben.page.waitForSelector('form[action="/knock"] button');
  await audit(ben.page, 'ask-to-join');
  await ben.page.fill('form[action="/knock"] input[name="reason"]', 'Hi, it is Ben from the garden club');
  await Promise.all([ben.page.waitForNavigation(), ben.page.click('form[action="/knock"] button')]);
  await ben.page.waitForSelector('text=You asked to join Book club');
  await audit(ben.page, 'asked-to-join');
  await ana.page.goto(`${base}/rooms/${pr}`);
  const openRequests = async (page) => {
    if (await page.getAttribute('#room-info', 'aria-expanded') !== 'true') await page.click('#room-info');
    await page.waitForSelector('#members section.requests button[value="yes"]', { state: 'visible' });
  };
  await audit(ana.page, 'requests', { prepare: openRequests });
  await audit(ana.page, 'room-settings-join', {
    prepare: async (page) => {
      await openRequests(page);
      if (!(await page.$('#members details.settings[open]'))) await page.click('#members details.settings summary');
      await page.waitForSelector('#members input[value="knock"]:checked', { state: 'attached' });
    },
  });
  await ana.page.setViewportSize({ width: 1366, height: 800 });
  await openRequests(ana.page);
  await Promise.all([ana.page.waitForNavigation(), ana.page.click('#members section.requests button[value="yes"]')]);
  const invited = await api(ben.page, '/api/v1/rooms');
  if (!JSON.stringify(invited).includes(porch)) problems.push('the request let in: no invitation for Ben');

  // Keyboard and screen readers, on the room page.
  const p = ana.page;
  const fail = (m) => { problems.push(`keys: ${m}`); };
  const timeout = 10000;
  await p.setViewportSize({ width: 1366, height: 800 });
  await p.goto(`${base}/rooms/${r}`);
  await p.waitForSelector('#conn[data-state="live"]', { timeout });
  // Ctrl+K: the switcher, type to narrow, Enter opens; Esc closes it and gives the focus back.
  await p.focus('#composer textarea');
  await p.keyboard.press('Control+k');
  await p.waitForSelector('dialog.switcher[open]', { timeout });
  await p.keyboard.press('Escape');
  await p.waitForSelector('dialog.switcher:not([open])', { state: 'attached', timeout });
  if (!(await p.evaluate(() => document.activeElement && document.activeElement.matches('#composer textarea')))) fail('Esc did not give the focus back to the composer');
  await p.keyboard.press('Control+k');
  await p.keyboard.type(`BEN${sfx}`);
  const listed = await p.$$eval('dialog.switcher li[role="option"] .name', (els) => els.map((e) => e.textContent));
  if (listed.length !== 1 || listed[0] !== `ben${sfx}`) fail(`switcher for "BEN${sfx}": ${JSON.stringify(listed)}`);
  await Promise.all([p.waitForURL(`${base}/rooms/${encodeURIComponent(dm)}`, { timeout }), p.keyboard.press('Enter')]);
  // Alt+↑/↓: the neighbouring rooms of the list.
  const order = await p.$$eval('#room-list li > a[data-room-id]', (as) => as.map((a) => a.dataset.roomId));
  const at = order.indexOf(dm);
  const neighbour = order[at + 1] ?? order[at - 1];
  await Promise.all([p.waitForURL(`${base}/rooms/${encodeURIComponent(neighbour)}`, { timeout }),
    p.keyboard.press(order[at + 1] ? 'Alt+ArrowDown' : 'Alt+ArrowUp')]);
  await Promise.all([p.waitForURL(`${base}/rooms/${encodeURIComponent(dm)}`, { timeout }),
    p.keyboard.press(order[at + 1] ? 'Alt+ArrowUp' : 'Alt+ArrowDown')]);
  // Esc closes the bell's menu, the focus back on the bell.
  await p.click('.notify-menu summary');
  await p.waitForSelector('.notify-menu[open]', { timeout });
  await p.keyboard.press('Escape');
  await p.waitForSelector('.notify-menu:not([open])', { timeout });
  if (!(await p.evaluate(() => document.activeElement.matches('.notify-menu summary')))) fail('Esc did not return the focus to the bell');
  // A message from Ben in the room Ana has open: the screen reader hears who and what.
  await p.goto(`${base}/rooms/${r}`);
  await p.waitForSelector('#conn[data-state="live"]', { timeout });
  await api(ben.page, `/api/v1/rooms/${r}/messages`, { body: 'Saturday at ten?', txn_id: `live${sfx}` });
  await p.waitForFunction((t) => document.getElementById('announce').textContent === t, `ben${sfx}: Saturday at ten?`, { timeout });
  // A message in the other room: its preview in the list changes, and on a phone the way
  // back to the list counts it.
  await p.setViewportSize({ width: 390, height: 844 });
  await api(ben.page, `/api/v1/rooms/${encodeURIComponent(dm)}/messages`, { body: 'Bring gloves too', txn_id: `live2${sfx}` });
  await p.waitForFunction((id) => document.querySelector(`[data-preview-of="${CSS.escape(id)}"]`).textContent === 'Bring gloves too', dm, { timeout });
  await p.waitForSelector('#back-unread:not([hidden])', { timeout });
  // The drawer on a phone: the focus goes in, Tab stays in, Esc closes it and the focus
  // returns to the button that opened it.
  await p.click('#room-info');
  await p.waitForFunction(() => document.getElementById('members').contains(document.activeElement), null, { timeout });
  for (let i = 0; i < 12; i++) await p.keyboard.press('Tab');
  if (!(await p.evaluate(() => document.getElementById('members').contains(document.activeElement)))) fail('Tab left the open drawer');
  await p.keyboard.press('Escape');
  await p.waitForFunction(() => document.activeElement && document.activeElement.id === 'room-info', null, { timeout });
  if (await p.getAttribute('#room-info', 'aria-expanded') !== 'false') fail('the drawer button still says expanded');
  // The room's setup: one line, the rest on demand.
  const hiddenSetup = await p.$$eval('li.ev.setup', (els) => els.filter((e) => e.getClientRects().length === 0).length);
  if (hiddenSetup < 3) fail(`setup rows hidden: ${hiddenSetup}`);
  await p.click('button.show-setup');
  await p.waitForSelector('li.ev.setup[data-kind="m.room.name"]', { state: 'visible', timeout });
  // The room list's filter (home, desktop).
  await p.setViewportSize({ width: 1366, height: 800 });
  await p.goto(`${base}/rooms`);
  await p.fill('#room-filter', 'garden');
  const visible = await p.$$eval('#room-items > li:not([hidden]) .name', (els) => els.map((e) => e.textContent));
  if (JSON.stringify(visible) !== JSON.stringify(['Garden club'])) fail(`filter "garden": ${JSON.stringify(visible)}`);
  await p.fill('#room-filter', 'zzzz');
  await p.waitForSelector('#room-filter-none:not([hidden])', { timeout });

  // A call: Ben's phone rings; Ana's screen with the room beside it (desktop) or the call
  // full screen with the room one tap away (phone); then a call Ben declines.
  await p.goto(`${base}/rooms/${r}`);
  await ben.page.goto(`${base}/rooms`);
  for (const q of [p, ben.page]) await q.waitForSelector('#conn[data-state="live"]', { timeout });
  await p.click('button[data-call="video"]');
  await ben.page.waitForSelector('#ringing .ring button.accept', { timeout });
  await audit(ben.page, 'incoming-call');
  if (!(await ben.page.evaluate(() => document.activeElement && document.activeElement.matches('#ringing button.accept')))) fail('the incoming call did not take the focus');
  await ben.page.click('#ringing .ring button.accept');
  await p.waitForFunction(() => /^\d+:\d\d$/.test(document.querySelector('#call .timer').textContent), null, { timeout: 20000 });
  // Ben's video on Ana's screen before the pictures are taken.
  await p.waitForFunction(() => { const v = document.querySelector('#call .tile:not(.self) video'); return v && v.videoWidth > 0; }, null, { timeout: 20000 }).catch(async (e) => {
    console.error(JSON.stringify(await p.evaluate(async () => ({ stats: await window.chatCalls.stats(), tiles: Array.from(document.querySelectorAll('#call .tile'), (t) => [t.dataset.user, t.dataset.state, t.querySelector('video').readyState, !!t.querySelector('video').srcObject]) }))));
    throw e;
  });
  await audit(p, 'call', {
    prepare: async (page, tag) => {
      const chat = await page.$('#call .ctl.chat[aria-pressed="true"]:visible');
      if (chat) await chat.click();
      if (tag === 'phone' && await page.$('#call .ctl.chat:visible') === null) fail('no Chat button in a call on a phone');
    },
  });
  await audit(p, 'call-chat', {
    prepare: async (page, tag) => {
      if (tag === 'phone' && !(await page.$('#call .ctl.chat[aria-pressed="true"]:visible'))) await page.click('#call .ctl.chat');
    },
  });
  const chatOn = await p.$('#call .ctl.chat[aria-pressed="true"]:visible');
  if (chatOn) await chatOn.click();
  await p.click('#call .ctl.hangup');
  await p.waitForSelector('#call', { state: 'detached', timeout });
  await p.click('button[data-call="voice"]');
  await ben.page.waitForSelector('#ringing .ring button.decline', { timeout });
  await ben.page.click('#ringing .ring button.decline');
  await p.waitForSelector('#call .ended-text', { timeout });
  await audit(p, 'call-declined');
  await p.click('#call .close-call');

  // Moderation: Ana (the room's creator) removes Ben from his card in the member list; the
  // dialog says what it means, Cancel keeps him, Remove takes him out.
  await p.goto(`${base}/rooms/${r}`);
  const benRow = `#members li[title="@ben${sfx}:${new URL(base).host}"]`;
  await p.click(`${benRow} .name`);
  await p.waitForSelector('.profile-card [data-act="kick"]:visible', { timeout });
  await audit(p, 'profile-card', {
    // The card opens by the name clicked: again at each size (in the drawer on a phone).
    prepare: async (page) => {
      if (await page.$('.profile-card')) await page.keyboard.press('Escape');
      await page.waitForSelector('.profile-card', { state: 'detached', timeout });
      if (!(await page.$(`${benRow} .name:visible`))) await page.click('#room-info');
      await page.click(`${benRow} .name`);
      await page.waitForSelector('.profile-card [data-act="kick"]:visible', { timeout });
    },
  });
  await p.setViewportSize({ width: 1366, height: 800 });
  await p.reload();
  await p.click(`${benRow} .name`);
  await p.click('.profile-card [data-act="kick"]');
  await p.waitForSelector(`dialog.confirm[open] #confirm-title:text-is("Remove ben${sfx} from Garden club?")`, { timeout });
  if (!(await p.textContent('#confirm-detail')).includes('can come back')) fail('the remove dialog does not say what it means');
  await p.click('dialog.confirm button[value="cancel"]');
  await p.waitForSelector('dialog.confirm:not([open])', { state: 'attached', timeout });
  if (!(await p.$(benRow))) fail('Cancel removed Ben');
  await p.click(`${benRow} .name`);
  await p.click('.profile-card [data-act="kick"]');
  await p.click('dialog.confirm button[value="ok"]');
  await p.waitForSelector(benRow, { state: 'detached', timeout });
  await ben.page.goto(`${base}/rooms/${r}`);
  if (!(await ben.page.textContent('main')).includes('removed')) fail('Ben is not told he was removed');

  // The administrator's page.
  if (adminName) {
    const admin = await (await browser.newContext()).newPage();
    await admin.goto(`${base}/login`);
    await admin.fill('input[name=username]', adminName);
    await admin.fill('input[name=password]', adminPassword);
    await Promise.all([admin.waitForURL(`${base}/rooms`), admin.click('button[type=submit]')]);
    await admin.goto(`${base}/admin`);
    await audit(admin, 'admin');
  }

  // Error pages.
  await ana.page.goto(`${base}/rooms/!nothing:nowhere`);
  await audit(ana.page, 'not-found');

  // The component sheet (docs/design.md shows it): the product's stylesheet on a page of
  // every token and component, audited like the pages.
  await anon.goto(`${base}/login`);
  const css = await anon.$eval('link[rel="stylesheet"]', (l) => l.href);
  // A blank page of its own (the server's pages allow no inline styles; the sheet has some).
  const sheet = await (await browser.newContext({ viewport: { width: 1100, height: 800 } })).newPage();
  await sheet.setContent(componentSheet(css), { waitUntil: 'load' });
  for (const scheme of ['light', 'dark']) {
    await sheet.emulateMedia({ colorScheme: scheme });
    await frames(sheet);
    for (const v of await axe(sheet)) problems.push(`component sheet ${scheme}: ${v}`);
    await sheet.screenshot({ path: `${shots}/design-components-${scheme}.png`, fullPage: true });
  }

  if (problems.length) {
    console.error(`${problems.length} problem(s) in ${audited} audited views:\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`design ok: ${audited} views audited (axe-core serious/critical: 0), no sideways scrolling at 320/390/768 px; shots in ${shots}`);
} finally { await browser.close(); }

// Every token and component of the design system on one page, with the product's classes.
function componentSheet(css) {
  const swatch = (v) => `<div class="swatch"><span style-var="${v}"></span><code>--${v}</code></div>`;
  const colours = ['bg', 'panel', 'raised', 'text', 'muted', 'line', 'edge', 'hover', 'mine', 'accent', 'accent-bg', 'danger', 'danger-bg', 'ok', 'warn', 'mention', 'focus-ring'];
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Component sheet · chat</title>
<link rel="stylesheet" href="${css}">
<style>
  body { display: block; overflow: auto; }
  main.sheet { padding: 24px 32px; max-width: 1040px; }
  .sheet section { margin-bottom: 28px; }
  .sheet .row { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 8px 0; }
  .swatch { display: flex; flex-direction: column; gap: 4px; font-size: 12px; }
  .swatch span { width: 88px; height: 40px; border-radius: 6px; border: 1px solid var(--line); }
  ${colours.map((v) => `[style-var="${v}"] { background: var(--${v}); }`).join('\n  ')}
  .space { background: var(--accent-bg); height: 12px; border-radius: 2px; }
  ${['s1', 's2', 's3', 's4', 's5', 's6', 's7'].map((v) => `.sp-${v} { width: var(--${v}); }`).join('\n  ')}
  .sheet .row > code { width: 3em; }
  .t2xl { font-size: var(--text-2xl); font-weight: 700; }
  dialog.confirm.static { position: static; display: block; margin: 0; }
  .sheet nav.rooms { width: 280px; border: 1px solid var(--line); border-radius: var(--radius); }
</style></head><body>
<main class="sheet">
  <h1>chat · component sheet</h1>
  <section><h2>Type</h2>
    <div class="row"><span class="t2xl">Heading 2xl · 28</span></div>
    <h1>Heading xl · 22 — Welcome to the room</h1>
    <h2>Heading lg · 18 — Public rooms</h2>
    <p>Body md · 15 — Messages, forms and lists. The quick brown fox jumps over the lazy dog.</p>
    <p class="muted">Muted sm — secondary text: topics, times, hints.</p>
  </section>
  <section><h2>Colour</h2><div class="row">${colours.map(swatch).join('')}</div></section>
  <section><h2>Space (4 / 8 px steps)</h2>
    ${['s1', 's2', 's3', 's4', 's5', 's6', 's7'].map((v) => `<div class="row"><code>--${v}</code><div class="space sp-${v}"></div></div>`).join('')}
  </section>
  <section><h2>Buttons</h2>
    <div class="row"><button>Primary</button><button class="secondary">Secondary</button><button class="danger">Danger</button>
      <button class="ghost">Ghost</button><button class="link">Link</button><button class="secondary danger-text">Leave room</button><button disabled>Disabled</button></div>
    <div class="row"><button class="small">Small</button><button class="secondary small">Small secondary</button><button class="danger small">Small danger</button>
      <button class="ghost icon" aria-label="Close"><svg class="icon" viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg></button></div>
  </section>
  <section><h2>Fields</h2>
    <label>Name <input placeholder="Family, Book club, Team…"></label>
    <label>Topic <textarea rows="2">Seeds, soil and the spring plan</textarea></label>
    <label>Mute for <select><option>1 hour</option></select></label>
    <label class="check"><input type="checkbox" checked> Sound</label><label class="check"><input type="radio" name="r" checked> Anyone</label><label class="check"><input type="radio" name="r"> Invited only</label>
  </section>
  <section><h2>Badges, avatars, room list</h2>
    <div class="row"><span class="badge unread">3</span><span class="badge mention">@1</span><span class="badge invite">invited</span>
      <span class="avatar c0">A</span><span class="avatar c2">B</span><span class="avatar c4">C</span><span class="avatar c5">D</span><span class="avatar room c3">G</span></div>
    <nav class="rooms" aria-label="Example rooms"><ul>
      <li class="active"><a href="#x"><span class="avatar room c3" aria-hidden="true">G</span><span class="text"><span class="name">Garden club</span><span class="preview">You: Sure.</span></span></a></li>
      <li class="unread"><a href="#y"><span class="avatar c5" aria-hidden="true">B</span><span class="text"><span class="name">ben</span><span class="preview">Bring gloves too</span></span><span class="badge mention">@1</span><span class="badge unread">2</span></a></li>
    </ul></nav>
  </section>
  <section><h2>Card and dialog</h2>
    <div class="row">
      <form class="card" action="#"><label>Invite someone <span class="field-row"><input placeholder="username or @name:server"><button class="secondary">Invite</button></span></label></form>
      <dialog class="confirm static" open aria-labelledby="dt"><form method="dialog"><h2 id="dt">Leave Garden club?</h2><p>You will stop getting its messages.</p><div class="actions"><button class="secondary">Cancel</button><button class="danger">Leave</button></div></form></dialog>
    </div>
  </section>
</main></body></html>`;
}
