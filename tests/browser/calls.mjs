// Video calls between real headless Chromium pages, media forced through our own TURN relay
// (iceTransportPolicy "relay"), with fake camera and microphone. Run by tests/browser.rs with
// the server's URL. Everything stays on 127.0.0.1: the relay listens there and relay-only ICE
// never tries another address.
//
// Scenarios: Ana calls Ben and Ben accepts (frames decoded through relay/relay pairs, Ben's
// second tab stops ringing, Ben hangs up); Ben declines; nobody answers (missed call); the caller
// hangs up; three people through the server's media server, each receiving two video streams.
import { launchForCalls, mediaFlows } from './media.mjs';
import { mkdirSync } from 'node:fs';

const base = process.argv[2];
const shots = process.argv[3] || 'target/browser-shots';
if (!base) { console.error('usage: calls.mjs URL [SHOT_DIR]'); process.exit(2); }
mkdirSync(shots, { recursive: true });

const browser = await launchForCalls();

const timeout = 20000;
const errors = [];
function fail(msg) { throw new Error(msg); }
const t0 = Date.now();
const log = (m) => console.log(`${((Date.now() - t0) / 1000).toFixed(1)}s ${m}`);

async function tab(ctx, name, url) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(`${name}: page error: ${e.message}`));
  page.on('dialog', (d) => errors.push(`${name}: dialog: ${d.message()}`));
  page.on('console', (m) => { if (m.type() === 'warning' || m.type() === 'error') log(`${name} console: ${m.text()}`); });
  if (url) {
    await page.goto(url);
    await page.waitForSelector('#conn[data-state="live"]', { timeout });
  }
  return page;
}

async function person(name) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 }, permissions: ['camera', 'microphone'] });
  await ctx.addInitScript(() => { window.CHAT_FORCE_RELAY = true; window.CHAT_CALL_LIFETIME_MS = 8000; });
  const page = await tab(ctx, name);
  await page.goto(`${base}/register`);
  await page.fill('input[name=username]', name);
  await page.fill('input[name=password]', 'password123');
  await Promise.all([page.waitForURL(`${base}/rooms`), page.click('button[type=submit]')]);
  return { name, ctx, page };
}

async function clickCall(p) {
  await p.page.click('button[data-call="video"]');
  await p.page.waitForSelector('#call', { timeout });
}

async function accept(p) {
  await p.page.waitForSelector('#ringing .ring button.accept', { timeout });
  await p.page.click('#ringing .ring button.accept');
  await p.page.waitForSelector('#call', { timeout });
}

async function callEnded(p) {
  await p.page.waitForSelector('#call', { state: 'detached', timeout });
}

try {
  const ana = await person('ana');
  const ben = await person('ben');
  const cy = await person('cy');

  await ana.page.fill('#new input[name=name]', 'Calls');
  await Promise.all([ana.page.waitForURL(/\/rooms\/!/), ana.page.click('#new button[type=submit]')]);
  const roomUrl = ana.page.url();
  await ana.page.waitForSelector('#conn[data-state="live"]', { timeout });
  await ben.page.goto(roomUrl);
  await Promise.all([ben.page.waitForURL(roomUrl), ben.page.click('button:has-text("Join room")')]);
  await ben.page.waitForSelector('#conn[data-state="live"]', { timeout });
  await ana.page.waitForSelector('#members li:has-text("ben")', { state: 'attached', timeout });
  // Ben has a second tab open on the room list: it rings too, and stops when the first answers.
  const benOther = await tab(ben.ctx, 'ben-2', `${base}/rooms`);

  // 1. Ana calls Ben; Ben accepts; media flows both ways through the relay.
  log('call 1: accept');
  await clickCall(ana);
  await benOther.waitForSelector('#ringing .ring', { timeout });
  await accept(ben);
  await benOther.waitForSelector('#ringing', { state: 'detached', timeout });
  const anaStats = await mediaFlows(ana, 1);
  const benStats = await mediaFlows(ben, 1);
  log(`ana decoded ${anaStats[0].framesDecoded} frames, ben ${benStats[0].framesDecoded}, relay/relay`);
  await ana.page.screenshot({ path: `${shots}/call-ana.png` });
  // The call screen: who, and for how long.
  await ana.page.waitForFunction(() => /^\d+:\d\d$/.test(document.querySelector('#call .timer').textContent), null, { timeout });
  if (await ana.page.textContent('#call .call-title h2') !== 'Calls') fail('the call screen does not name the room');
  // In-call controls act on the local tracks, and the other side sees it on the tile: a muted
  // microphone, then (V on the keyboard) the camera off and the face instead of the video.
  await ana.page.click('#call button.mute');
  if (await ana.page.evaluate(() => document.querySelector('#call button.mute').getAttribute('aria-pressed')) !== 'true') {
    fail('mute did not toggle');
  }
  if (await ana.page.evaluate(() => window.chatCalls.micEnabled()) !== false) fail('mute left the microphone on');
  await ben.page.waitForSelector('#call .tile[data-user^="@ana:"][data-audio="off"] .muted-mic', { timeout });
  await ana.page.keyboard.press('v');
  await ana.page.waitForSelector('#call button.camera[aria-pressed="true"]', { timeout });
  await ben.page.waitForSelector('#call .tile[data-user^="@ana:"][data-video="off"] .placeholder .avatar', { timeout });
  await ana.page.keyboard.press('m');
  await ben.page.waitForSelector('#call .tile[data-user^="@ana:"][data-audio="on"]', { timeout });
  await ana.page.screenshot({ path: `${shots}/call-ana-camera-off.png` });
  await ben.page.screenshot({ path: `${shots}/call-ben-sees-camera-off.png` });
  // Esc asks before leaving; Cancel keeps the call.
  await ana.page.keyboard.press('Escape');
  await ana.page.waitForSelector('dialog.confirm[open] #confirm-title:text-is("Leave the call?")', { timeout });
  await ana.page.click('dialog.confirm button[value="cancel"]');
  if (!(await ana.page.$('#call .tile[data-user^="@ben:"]'))) fail('Cancel left the call');
  // Ben hangs up: both calls end, and both timelines show the call with its length.
  await ben.page.click('#call button.hangup');
  await callEnded(ben);
  await callEnded(ana);
  for (const p of [ana, ben]) {
    await p.page.waitForSelector('#timeline li.call:has-text("Video call with ana and ben")', { timeout });
  }

  // 2. Ben declines.
  log('call 2: decline');
  await clickCall(ana);
  await ben.page.waitForSelector('#ringing .ring button.decline', { timeout });
  await ben.page.click('#ringing .ring button.decline');
  // The caller is told, and closes the screen (or calls again).
  await ana.page.waitForSelector('#call .ended-text:text-is("ben declined the call")', { timeout });
  await ana.page.screenshot({ path: `${shots}/call-declined.png` });
  await ana.page.click('#call button.close-call');
  await callEnded(ana);
  await ana.page.waitForSelector('#timeline li.call:has-text("ben declined the video call from ana")', { timeout });
  await benOther.waitForSelector('#ringing', { state: 'detached', timeout });

  // 3. Nobody answers: after the invite's lifetime (8 s here) Ana's call gives up and both see a
  // missed call; Ben's tabs stop ringing.
  log('call 3: missed');
  await clickCall(ana);
  await ben.page.waitForSelector('#ringing .ring', { timeout });
  await ana.page.waitForSelector('#call .ended-text:text-is("ben did not answer")', { timeout });
  await ana.page.keyboard.press('Escape');
  await callEnded(ana);
  await ben.page.waitForSelector('#ringing', { state: 'detached', timeout });
  for (const p of [ana, ben]) await p.page.waitForSelector('#timeline li.call:has-text("Missed video call from ana")', { timeout });

  // 4. The caller hangs up a connected call.
  log('call 4: caller hangs up');
  await clickCall(ana);
  await accept(ben);
  await mediaFlows(ben, 1);
  await ana.page.click('#call button.hangup');
  await callEnded(ben);

  // 5. Three people: the room's call goes through the server's media server. Ana calls Ben
  // (two people: directly); Cy joins the room and then the call from the room's call bar; the
  // call moves to the media server without anyone hanging up (Ana's and Ben's call screens
  // stay up, nobody rings), and each receives the two others' video from the server
  // (relay/relay pairs to it).
  log('call 5: a call of two moves to the media server when a third joins');
  await clickCall(ana);
  await accept(ben);
  await Promise.all([mediaFlows(ana, 1), mediaFlows(ben, 1)]);
  for (const p of [ana, ben]) await p.page.evaluate(() => { document.getElementById('call').dataset.mark = 'kept'; });
  await cy.page.goto(roomUrl);
  await Promise.all([cy.page.waitForURL(roomUrl), cy.page.click('button:has-text("Join room")')]);
  await cy.page.waitForSelector('#conn[data-state="live"]', { timeout });
  await ana.page.waitForSelector('#members li:has-text("cy")', { state: 'attached', timeout });
  await cy.page.waitForSelector('#callbar button.join:not([hidden])', { timeout });
  await cy.page.click('#callbar button.join');
  await cy.page.waitForSelector('#call', { timeout });
  for (const p of [ana, ben, cy]) {
    await p.page.waitForFunction(() => window.chatCalls.throughServer, null, { timeout });
  }
  const viaServer = (p, n) => mediaFlows(p, n, 'host');
  const three = await Promise.all([viaServer(ana, 2), viaServer(ben, 2), viaServer(cy, 2)]);
  log(`frames through the media server: ${three.map((s) => s.map((x) => x.framesDecoded).join('/')).join(', ')}`);
  if (await ben.page.locator('#ringing').count() !== 0) fail('a call through the media server rang');
  for (const p of [ana, ben]) {
    if (await p.page.evaluate(() => document.getElementById('call').dataset.mark) !== 'kept') fail(`${p.name}'s call screen closed when the call moved`);
    if ((await p.page.evaluate(() => window.chatCalls.stats())).length !== 2) fail(`${p.name} kept a direct connection`);
  }
  await cy.page.screenshot({ path: `${shots}/call-sfu-cy.png` });
  // The room shows who is in the call; Cy leaves and the others keep talking, Cy's tile gone.
  await benOther.goto(roomUrl);
  await benOther.waitForSelector('#callbar:not([hidden]):has-text("ana")', { timeout });
  await cy.page.click('#call button.hangup');
  await callEnded(cy);
  await ana.page.waitForSelector('#call .tile[data-user^="@cy:"]', { state: 'detached', timeout });
  await viaServer(ana, 1);
  // Cy joins again from the call bar.
  await cy.page.click('#callbar button.join');
  await cy.page.waitForSelector('#call', { timeout });
  await Promise.all([viaServer(ana, 2), viaServer(ben, 2), viaServer(cy, 2)]);
  // Through the server a screen is a track of its own: the others get a tile for it (whole,
  // not cropped) while Ana's camera goes on; when she stops, the tile goes.
  const label = () => ana.page.evaluate(() => window.chatCalls.senderLabels());
  const camera = await label();
  await ana.page.click('#call button.share');
  await ana.page.waitForSelector('#call button.share[aria-pressed="true"]', { timeout });
  for (const p of [ben, cy]) {
    await p.page.waitForSelector('#call .tile.screen[data-user^="@ana:"]', { timeout });
    await p.page.waitForFunction(() => {
      const v = document.querySelector('#call .tile.screen video');
      return v && v.videoWidth > 0 && v.currentTime > 0.5;
    }, null, { timeout });
    await p.page.waitForFunction(() => document.querySelector('#call .tile.screen .name').textContent === "ana's screen", null, { timeout });
  }
  if (JSON.stringify(await label()) !== JSON.stringify(camera)) fail(`the camera stopped while sharing: ${camera} -> ${await label()}`);
  await cy.page.screenshot({ path: `${shots}/call-sfu-screen-cy.png` });
  await ana.page.click('#call button.share');
  await ana.page.waitForSelector('#call button.share[aria-pressed="false"]', { timeout });
  for (const p of [ben, cy]) await p.page.waitForSelector('#call .tile.screen', { state: 'detached', timeout });
  if (JSON.stringify(await label()) !== JSON.stringify(camera)) fail('the camera changed after sharing');
  // Everyone's camera still comes (the re-offers without the screen kept them).
  await Promise.all([viaServer(ana, 2), viaServer(ben, 2), viaServer(cy, 2)]);
  for (const p of [cy, ana, ben]) {
    await p.page.click('#call button.hangup');
    await callEnded(p);
  }
  await benOther.waitForSelector('#callbar[hidden]', { state: 'attached', timeout });
  // The call's record: everyone who took part.
  const record = await ana.page.waitForSelector('#timeline li.call[data-kind="chat.call.ended"]', { timeout });
  const said = await record.textContent();
  for (const n of ['ana', 'ben', 'cy']) if (!said.includes(n)) fail(`the call's record does not name ${n}: ${said}`);

  if (errors.length) fail(errors.join('\n'));
  log('browser calls: ok');
} finally {
  await browser.close();
}
