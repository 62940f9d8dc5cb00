// A room call of five through the server's media server, in real headless Chromium pages with
// fake cameras: each decodes the four others' video (frames growing), the layer the server
// sends follows the size of the tile showing it, someone who leaves disappears for the others,
// and a member removed from the room loses the call and their media stops. Run by
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
  await ana.page.setViewportSize({ width: 1000, height: 700 });
  await ana.page.emulateMedia({ colorScheme: 'light' });

  // The layer follows the tile: Ana shrinks Ben's tile to a thumbnail (a lower layer), then
  // makes it large (back up; the full layer only when Ben's browser sends it and the estimate
  // towards Ana has room for it).
  const ben = people[1];
  const benId = await ben.page.evaluate(() => document.body.dataset.user);
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
  // What Ben's browser sends: the simulcast layers and their sizes.
  const sent = await ben.page.evaluate(async () => {
    const pc = window.chatCalls.publishConnection();
    const out = [];
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') out.push(`${r.rid}:${r.frameHeight || 0}px/${Math.round((r.targetBitrate || 0) / 1000)}kbps${r.qualityLimitationReason && r.qualityLimitationReason !== 'none' ? `(${r.qualityLimitationReason})` : ''}`);
    });
    return out.sort().join(' ');
  });
  log(`ben sends ${sent}`);

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

  for (const p of [ana, ben, people[2]]) {
    await p.page.click('#call button.hangup');
    await p.page.waitForSelector('#call', { state: 'detached', timeout });
  }
  if (errors.length) fail(errors.join('\n'));
  log('group call through the media server: ok');
} finally {
  await browser.close();
}
