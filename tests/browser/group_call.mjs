// A room call of five through the server's media server, in real headless Chromium pages with
// fake cameras: each decodes the four others' video (frames growing), the layer the server
// sends follows the size of the tile showing it, someone who leaves disappears for the others,
// and a member removed from the room loses the call and their media stops. Hands go up and
// the host (the room's creator) lowers them, mutes someone (whose microphone stops) and ends
// the call for everyone; tiles that do not fit go on pages and are not sent. Run by
// tests/browser.rs with the server's URL. Media goes straight to the server on 127.0.0.1 (the
// relay's path to it is calls.mjs's).
import { launchForCalls, mediaFlows } from './media.mjs';
import { mkdirSync } from 'node:fs';

const base = process.argv[2];
const shots = process.argv[3] || 'target/browser-shots';
if (!base) { console.error('usage: group_call.mjs URL [SHOT_DIR]'); process.exit(2); }
mkdirSync(shots, { recursive: true });

const browser = await launchForCalls();
const timeout = 30000;
const errors = [];
const fail = (msg) => { throw new Error(msg); };
const t0 = Date.now();
const log = (m) => console.log(`${((Date.now() - t0) / 1000).toFixed(1)}s ${m}`);

async function person(name) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 }, permissions: ['camera', 'microphone'] });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(`${name}: page error: ${e.message}`));
  page.on('dialog', (d) => errors.push(`${name}: dialog: ${d.message()}`));
  await page.goto(`${base}/register`);
  await page.fill('input[name=username]', name);
  await page.fill('input[name=password]', 'password123');
  await Promise.all([page.waitForURL(`${base}/rooms`), page.click('button[type=submit]')]);
  return { name, ctx, page };
}

// Frames decoded from each other person, by user id.
async function frames(p) {
  const s = await p.page.evaluate(() => window.chatCalls.stats());
  return Object.fromEntries(s.map((x) => [x.user, x]));
}

// Waits until `p` receives `user`'s camera at `height` pixels (the layer the server chose).
async function receivesAt(p, user, ok, what) {
  const deadline = Date.now() + timeout;
  let last = null;
  while (Date.now() < deadline) {
    last = (await frames(p))[user];
    if (last && ok(last.frameHeight)) return last.frameHeight;
    await p.page.waitForTimeout(300);
  }
  fail(`${p.name}: ${what}: ${JSON.stringify(last)}`);
}

try {
  const people = [];
  for (const n of ['ana', 'ben', 'cy', 'dan', 'eve']) people.push(await person(n));
  const [ana, , , , eve] = people;
  await ana.page.fill('#new input[name=name]', 'Standup');
  await Promise.all([ana.page.waitForURL(/\/rooms\/!/), ana.page.click('#new button[type=submit]')]);
  const roomUrl = ana.page.url();
  const roomId = decodeURIComponent(roomUrl.split('/rooms/')[1]);
  for (const p of people.slice(1)) {
    await p.page.goto(roomUrl);
    await Promise.all([p.page.waitForURL(roomUrl), p.page.click('button:has-text("Join room")')]);
    await p.page.waitForSelector('#conn[data-state="live"]', { timeout });
  }
  await ana.page.waitForSelector('#conn[data-state="live"]', { timeout });
  await ana.page.waitForSelector('#members li:has-text("eve")', { state: 'attached', timeout });

  log('ana starts the call; four join from the call bar');
  await ana.page.click('button[data-call="video"]');
  await ana.page.waitForSelector('#call', { timeout });
  for (const p of people.slice(1)) {
    await p.page.waitForSelector('#callbar button.join:not([hidden])', { timeout });
    await p.page.click('#callbar button.join');
    await p.page.waitForSelector('#call', { timeout });
  }
  const direct = (p, n) => mediaFlows(p, n, 'host', 'host');
  const all = await Promise.all(people.map((p) => direct(p, 4)));
  log(`frames decoded: ${all.map((s) => s.map((x) => x.framesDecoded).join('/')).join(', ')}`);
  // Still growing a moment later, from every one of the four.
  const before = await frames(ana);
  await ana.page.waitForTimeout(1500);
  const after = await frames(ana);
  for (const [u, s] of Object.entries(before)) {
    if (!(after[u] && after[u].framesDecoded > s.framesDecoded)) fail(`ana: frames from ${u} stopped`);
  }
  // Cy raises a hand; Ana (the room's creator: she hosts) mutes Ben.
  const cy = people[2];
  const idOf = (p) => p.page.evaluate(() => document.body.dataset.user);
  const [benId, cyId] = [await idOf(people[1]), await idOf(cy)];
  await cy.page.click('#call .ctl.hand');
  await ana.page.waitForSelector(`#call .tile[data-user="${cyId}"][data-hand="up"] .hand-badge:not([hidden])`, { timeout });
  await ana.page.waitForSelector('#call .hands:has-text("cy")', { timeout });
  await cy.page.waitForSelector('#call .ctl.hand[aria-pressed="true"]', { timeout });
  await ana.page.waitForSelector('#call .ctl.end-all:not([hidden])', { timeout });
  if (await people[1].page.$('#call .ctl.end-all:not([hidden])')) fail('ben (no moderator) is offered to end the call');
  if (await people[1].page.$('#call .host-mute:not([hidden])')) fail('ben (no moderator) is offered to mute others');
  await ana.page.click(`#call .tile[data-user="${benId}"] .host-mute`);
  await people[1].page.waitForSelector('#call .status:has-text("ana turned your microphone off")', { timeout });
  await people[1].page.waitForSelector('#call .ctl.mute[aria-pressed="true"]', { timeout });
  if (await people[1].page.evaluate(() => window.chatCalls.micEnabled()) !== false) fail('ben\'s microphone still sends');
  for (const p of [cy, eve]) await p.page.waitForSelector(`#call .tile[data-user="${benId}"][data-audio="off"]`, { timeout });
  log('hand raised, ben muted by ana');
  await ana.page.screenshot({ path: `${shots}/call-five-ana.png` });
  // The call screen at desktop and phone sizes, light and dark.
  for (const [w, h, size] of [[1366, 800, 'desktop'], [390, 844, 'phone']]) {
    await ana.page.setViewportSize({ width: w, height: h });
    for (const scheme of ['light', 'dark']) {
      await ana.page.emulateMedia({ colorScheme: scheme });
      await ana.page.waitForTimeout(400);
      await ana.page.screenshot({ path: `${shots}/design-call-five-${size}-${scheme}.png` });
    }
  }
  await cy.page.setViewportSize({ width: 390, height: 844 });
  await cy.page.emulateMedia({ colorScheme: 'dark' });
  await cy.page.waitForTimeout(400);
  await cy.page.screenshot({ path: `${shots}/design-call-five-hand-phone-dark.png` });
  await cy.page.setViewportSize({ width: 1000, height: 700 });
  await ana.page.setViewportSize({ width: 1000, height: 700 });
  await ana.page.emulateMedia({ colorScheme: 'light' });

  // Ana lowers Cy's hand; Ben turns his microphone on again.
  await ana.page.click(`#call .tile[data-user="${cyId}"] .hand-badge`);
  await cy.page.waitForSelector('#call .ctl.hand[aria-pressed="false"]', { timeout });
  await ana.page.waitForSelector('#call .hands', { state: 'hidden', timeout });
  await people[1].page.click('#call .ctl.mute');
  for (const p of [cy, eve]) await p.page.waitForSelector(`#call .tile[data-user="${benId}"][data-audio="on"]`, { timeout });


  // The layer follows the tile: Ana shrinks Ben's tile to a thumbnail (a lower layer), then
  // makes it large (back up; the full layer only when Ben's browser sends it and the estimate
  // towards Ana has room for it).
  const ben = people[1];
  const size = (h) => ana.page.evaluate(({ id, h }) => {
    const v = document.querySelector(`#call .tile[data-user="${CSS.escape(id)}"] video`);
    v.style.height = `${h}px`;
    v.style.width = `${Math.round((h * 4) / 3)}px`;
    v.style.flex = 'none';
  }, { id: benId, h });
  const normal = (await frames(ana))[benId].frameHeight;
  await size(60);
  const small = await receivesAt(ana, benId, (h) => h > 0 && h < normal, 'a small tile did not get a lower layer');
  await size(700);
  const large = await receivesAt(ana, benId, (h) => h >= normal, 'a large tile did not get its layer back');
  log(`ben's camera at ana: ${normal} px, thumbnail ${small} px, large ${large} px`);
  // What Ben's browser sends: the simulcast layers and their sizes, and its estimate of the
  // bandwidth towards the server (from the server's transport-wide feedback). The fake camera
  // is 640x480, for which Chrome's simulcast table allows two layers, so `f` is off here with
  // an estimate that has room for it.
  const sent = await ben.page.evaluate(async () => {
    const pc = window.chatCalls.publishConnection();
    const out = [];
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') out.push(`${r.rid}:${r.frameHeight || 0}px/${Math.round((r.targetBitrate || 0) / 1000)}kbps${r.qualityLimitationReason && r.qualityLimitationReason !== 'none' ? `(${r.qualityLimitationReason})` : ''}`);
      if (r.type === 'candidate-pair' && r.nominated && r.availableOutgoingBitrate) out.push(`estimate:${Math.round(r.availableOutgoingBitrate / 1000)}kbps`);
    });
    return out.sort().join(' ');
  });
  log(`ben sends ${sent}`);

  // A short screen holds 4 tiles: the fifth goes on a second page and is not sent while off
  // the page.
  await ana.page.setViewportSize({ width: 844, height: 390 });
  await ana.page.waitForSelector('#call .pager:not([hidden])', { timeout });
  const hidden = () => ana.page.evaluate(() => document.querySelector('#call .tile[hidden]')?.dataset.user);
  const stopped = async (p, user) => {
    let last = -1;
    for (let i = 0; i < 40; i += 1) {
      const n = (await frames(p))[user]?.videoBytes ?? 0;
      if (n === last) return true;
      last = n;
      await p.page.waitForTimeout(700);
    }
    return false;
  };
  // (Someone who starts speaking while off the page swaps places with someone quiet.)
  let away = null;
  for (let tries = 0; tries < 3 && !away; tries += 1) {
    const h = await hidden();
    if (!h) fail('no tile went to the second page');
    if (await stopped(ana, h) && (await hidden()) === h) away = h;
  }
  if (!away) fail('a tile off the page is still sent');
  const paused = (await frames(ana))[away].videoBytes;
  await ana.page.screenshot({ path: `${shots}/design-call-five-pages-desktop-light.png` });
  await ana.page.click('#call .pager .next');
  await ana.page.waitForSelector(`#call .tile[data-user="${away}"]:not([hidden])`, { timeout });
  const deadline = Date.now() + timeout;
  while ((await frames(ana))[away].videoBytes <= paused + 20000) {
    if (Date.now() > deadline) fail('the tile on the second page gets no video');
    await ana.page.waitForTimeout(300);
  }
  await ana.page.setViewportSize({ width: 1000, height: 700 });
  await ana.page.waitForSelector('#call .pager', { state: 'hidden', timeout });
  log('pages: ok');

  // A shared screen goes in the spotlight with the people in a strip beside it (four at a
  // time on a desktop, the rest on the strip's next page); on a phone the strip is a row
  // under it. When the sharing stops, the grid comes back.
  await ana.page.click('#call button.share');
  await ana.page.waitForSelector('#call button.share[aria-pressed="true"]', { timeout });
  await cy.page.waitForSelector('#call .grid[data-layout="spotlight"] .tile.screen.spot', { timeout });
  const boxes = () => cy.page.evaluate(() => {
    const box = (e) => { const r = e.getBoundingClientRect(); return { x: r.left, y: r.top, w: r.width, h: r.height }; };
    return {
      grid: box(document.querySelector('#call .grid')),
      spot: box(document.querySelector('#call .tile.spot')),
      strip: Array.from(document.querySelectorAll('#call .grid .tile:not(.spot):not([hidden])'), box),
    };
  });
  let b = await boxes();
  if (b.spot.w < b.grid.w * 0.6) fail(`the shared screen is not in the spotlight: ${JSON.stringify(b)}`);
  if (b.strip.length !== 4 || !b.strip.every((t) => t.x >= b.spot.x + b.spot.w - 1 && t.w < b.spot.w / 2)) fail(`no strip of four beside the screen: ${JSON.stringify(b)}`);
  await cy.page.waitForSelector('#call .pager:not([hidden])', { timeout });
  for (const scheme of ['light', 'dark']) {
    await cy.page.emulateMedia({ colorScheme: scheme });
    await cy.page.setViewportSize({ width: 1366, height: 800 });
    await cy.page.waitForTimeout(300);
    await cy.page.screenshot({ path: `${shots}/design-call-presenter-desktop-${scheme}.png` });
    await cy.page.setViewportSize({ width: 390, height: 844 });
    await cy.page.waitForTimeout(300);
    await cy.page.screenshot({ path: `${shots}/design-call-presenter-phone-${scheme}.png` });
  }
  b = await boxes();
  if (b.strip.length !== 3 || !b.strip.every((t) => t.y >= b.spot.y + b.spot.h - 1)) fail(`on a phone the strip is not a row under the screen: ${JSON.stringify(b)}`);
  await cy.page.setViewportSize({ width: 1000, height: 700 });
  await cy.page.emulateMedia({ colorScheme: 'light' });
  await ana.page.click('#call button.share');
  await cy.page.waitForSelector('#call .grid[data-layout="grid"]', { timeout });
  if (await cy.page.$('#call .tile.screen')) fail('the screen tile stayed after sharing stopped');
  log('presenter layout: ok');

  // Someone who leaves disappears for the others.
  const dan = people[3];
  const danId = await dan.page.evaluate(() => document.body.dataset.user);
  await dan.page.click('#call button.hangup');
  await dan.page.waitForSelector('#call', { state: 'detached', timeout });
  for (const p of [ana, ben, people[2], eve]) {
    await p.page.waitForSelector(`#call .tile[data-user="${danId}"]`, { state: 'detached', timeout });
  }

  // Ana removes Eve from the room: Eve's call ends and the others stop getting her.
  const eveId = await eve.page.evaluate(() => document.body.dataset.user);
  const kicked = await ana.page.evaluate(async ({ roomId, eveId }) => {
    const r = await fetch(`/api/v1/rooms/${encodeURIComponent(roomId)}/kick`, {
      method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: eveId }),
    });
    return r.status;
  }, { roomId, eveId });
  if (kicked !== 200) fail(`kick answered ${kicked}`);
  await eve.page.waitForSelector('#call', { state: 'detached', timeout });
  for (const p of [ana, ben, people[2]]) {
    await p.page.waitForSelector(`#call .tile[data-user="${eveId}"]`, { state: 'detached', timeout });
  }
  await direct(ana, 2);
  await ana.page.screenshot({ path: `${shots}/call-five-after-ana.png` });

  // Ana ends the call for everyone (after confirming).
  await ana.page.click('#call .ctl.end-all');
  await ana.page.click('dialog.confirm button[value="ok"]');
  for (const [p, text] of [[ana, 'You ended the call'], [ben, 'ana ended the call'], [cy, 'ana ended the call']]) {
    await p.page.waitForSelector(`#call .ended-text:has-text("${text}")`, { timeout });
    await p.page.click('#call .close-call');
    await p.page.waitForSelector('#call', { state: 'detached', timeout });
  }
  await ben.page.waitForSelector('#callbar', { state: 'hidden', timeout });
  if (errors.length) fail(errors.join('\n'));
  log('group call through the media server: ok');
} finally {
  await browser.close();
}
