// A video call across two servers: Ana on A, Ben on B (real HTTPS with a test CA, so the pages
// ignore certificate errors). Ben joins Ana's room by its address `#call:A` from the home page;
// Ana calls; the invite, answer, candidates and hangup cross federation as room events; media
// is forced through TURN (relay only), each side using its own server's relay. Run by
// tests/browser.rs with both servers' URLs.
import { launchForCalls, mediaFlows } from './media.mjs';
import { mkdirSync } from 'node:fs';

const [a, b] = [process.argv[2], process.argv[3]];
const shots = process.argv[4] || 'target/browser-shots';
if (!a || !b) { console.error('usage: federated_call.mjs URL_A URL_B [SHOT_DIR]'); process.exit(2); }
mkdirSync(shots, { recursive: true });

const browser = await launchForCalls();

const timeout = 20000;
const errors = [];
function fail(msg) { throw new Error(msg); }
const t0 = Date.now();
const log = (m) => console.log(`${((Date.now() - t0) / 1000).toFixed(1)}s ${m}`);

async function person(name, base) {
  const ctx = await browser.newContext({
    viewport: { width: 1000, height: 700 }, permissions: ['camera', 'microphone'], ignoreHTTPSErrors: true,
  });
  await ctx.addInitScript(() => { window.CHAT_FORCE_RELAY = true; });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(`${name}: page error: ${e.message}`));
  page.on('dialog', (d) => errors.push(`${name}: dialog: ${d.message()}`));
  await page.goto(`${base}/register`);
  await page.fill('input[name=username]', name);
  await page.fill('input[name=password]', 'password123');
  await Promise.all([page.waitForURL(`${base}/rooms`), page.click('button[type=submit]')]);
  return { name, ctx, page };
}

try {
  const serverA = new URL(a).host;
  const ana = await person('ana', a);
  const ben = await person('ben', b);

  // Ana creates a room with an address; Ben joins it from his own server by that address.
  await ana.page.fill('#new input[name=name]', 'Across');
  await ana.page.fill('#new input[name=alias]', 'call');
  await Promise.all([ana.page.waitForURL(/\/rooms\/!/), ana.page.click('#new button[type=submit]')]);
  await ana.page.waitForSelector('#conn[data-state="live"]', { timeout });
  await ben.page.click('#join-address summary');
  await ben.page.fill('#join-by-address input[name=room]', `#call:${serverA}`);
  await Promise.all([ben.page.waitForURL(/\/rooms\/!/), ben.page.click('#join-by-address button[type=submit]')]);
  await ben.page.waitForSelector('#conn[data-state="live"]', { timeout });
  // Each sees the other in the member list, with the other's server.
  await ana.page.waitForSelector('#members li:has-text("ben")', { state: 'attached', timeout });
  await ana.page.waitForSelector(`#members li .server:has-text("${new URL(b).host}")`, { state: 'attached', timeout });
  await ben.page.waitForSelector(`#members li .server:has-text("${serverA}")`, { state: 'attached', timeout });
  // A message each way, live.
  await ana.page.fill('#composer textarea[name=body]', 'hello from A');
  await ana.page.press('#composer textarea[name=body]', 'Enter');
  await ben.page.waitForSelector('#timeline li:has-text("hello from A")', { timeout });
  await ben.page.fill('#composer textarea[name=body]', 'hello from B');
  await ben.page.press('#composer textarea[name=body]', 'Enter');
  await ana.page.waitForSelector('#timeline li:has-text("hello from B")', { timeout });
  log('joined by address, messages both ways');

  // Ana calls Ben across the servers; Ben accepts; media flows both ways through the relays.
  await ana.page.click('button[data-call="video"]');
  await ana.page.waitForSelector('#call', { timeout });
  await ben.page.waitForSelector('#ringing .ring button.accept', { timeout });
  await ben.page.click('#ringing .ring button.accept');
  await ben.page.waitForSelector('#call', { timeout });
  const [sa, sb] = await Promise.all([mediaFlows(ana, 1), mediaFlows(ben, 1)]);
  log(`across servers: ana decoded ${sa[0].framesDecoded} frames, ben ${sb[0].framesDecoded}, relay/relay`);
  await ben.page.screenshot({ path: `${shots}/federated-call-ben.png` });
  await ben.page.click('#call button.hangup');
  await ana.page.waitForSelector('#call', { state: 'detached', timeout });
  await ben.page.waitForSelector('#call', { state: 'detached', timeout });
  for (const p of [ana, ben]) {
    await p.page.waitForSelector('#timeline li.call:has-text("Video call with ana and ben")', { timeout });
  }

  // A room call across the servers. Ana calls Ben again (two people: directly); Cy (on B)
  // joins the room, then the call from its call bar. With three people the call moves to a
  // media server, the room's call host's: A's (its creator's server). B gets Cy a call token
  // from A and her browser carries the call's frames over A's call socket, her media to A's
  // media server (through B's relay); Ana and Ben follow without hanging up (Ben over A's call
  // socket too, B having heard from A that Cy is in it).
  await ana.page.click('button[data-call="video"]');
  await ben.page.waitForSelector('#ringing .ring button.accept', { timeout });
  await ben.page.click('#ringing .ring button.accept');
  await Promise.all([mediaFlows(ana, 1), mediaFlows(ben, 1)]);
  for (const p of [ana, ben]) await p.page.evaluate(() => { document.getElementById('call').dataset.mark = 'kept'; });
  const cy = await person('cy', b);
  await cy.page.click('#join-address summary');
  await cy.page.fill('#join-by-address input[name=room]', `#call:${serverA}`);
  await Promise.all([cy.page.waitForURL(/\/rooms\/!/), cy.page.click('#join-by-address button[type=submit]')]);
  await cy.page.waitForSelector('#conn[data-state="live"]', { timeout });
  await ana.page.waitForSelector('#members li:has-text("cy")', { state: 'attached', timeout });
  await cy.page.waitForSelector('#callbar:has-text("ana"):has-text("ben") button.join:not([hidden])', { timeout });
  await cy.page.click('#callbar button.join');
  await cy.page.waitForSelector('#call', { timeout });
  for (const p of [ana, ben, cy]) await p.page.waitForFunction(() => window.chatCalls.throughServer, null, { timeout });
  const viaServer = (p, n) => mediaFlows(p, n, 'host');
  const three = await Promise.all([viaServer(ana, 2), viaServer(ben, 2), viaServer(cy, 2)]);
  log(`room call hosted by A: frames ${three.map((s) => s.map((x) => x.framesDecoded).join('/')).join(', ')}`);
  for (const p of [ana, ben]) {
    if (await p.page.evaluate(() => document.getElementById('call').dataset.mark) !== 'kept') fail(`${p.name}'s call screen closed when the call moved`);
  }
  await cy.page.screenshot({ path: `${shots}/federated-call-sfu-cy.png` });
  // Cy leaves: the others keep going without her tile, and her room's call bar (on B) shows
  // the two still in it.
  await cy.page.click('#call button.hangup');
  await cy.page.waitForSelector('#call', { state: 'detached', timeout });
  await ana.page.waitForSelector('#call .tile[data-user^="@cy:"]', { state: 'detached', timeout });
  await cy.page.waitForSelector('#callbar:has-text("ben") button.join:not([hidden])', { timeout });
  await Promise.all([viaServer(ana, 1), viaServer(ben, 1)]);
  for (const p of [ben, ana]) {
    await p.page.click('#call button.hangup');
    await p.page.waitForSelector('#call', { state: 'detached', timeout });
  }
  // The call is over on A; B hears of it and empties the call bar.
  await cy.page.waitForSelector('#callbar[hidden]', { state: 'attached', timeout });
  // A stores the call's record in the room; both servers' timelines show it (with everyone,
  // Cy first: she joined the media server's call first).
  const record = '#timeline li.call[data-kind="chat.call.ended"]';
  for (const p of [ana, cy]) {
    const said = await (await p.page.waitForSelector(record, { timeout })).textContent();
    if (!/^Call with cy, (ana and ben|ben and ana), \d+ s$/.test(said)) fail(`${p.name}'s record of the call: ${said}`);
  }
  // The call of two that moved has no line of its own (the first call, hung up, has one).
  const lines = await ana.page.$$eval('#timeline li.call', (ls) => ls.map((l) => l.textContent));
  if (lines.length !== 2) fail(`call lines: ${JSON.stringify(lines)}`);
  for (const [w, h, tag] of [[1366, 800, 'desktop'], [390, 844, 'phone']]) {
    for (const scheme of ['light', 'dark']) {
      await cy.page.setViewportSize({ width: w, height: h });
      await cy.page.emulateMedia({ colorScheme: scheme });
      await cy.page.locator(record).scrollIntoViewIfNeeded();
      // A resize from the desktop closes the member panel with a transition: let it finish.
      await cy.page.evaluate(() => Promise.all(document.getAnimations().map((x) => x.finished)));
      await cy.page.screenshot({ path: `${shots}/federated-call-record-${tag}-${scheme}.png` });
    }
  }

  if (errors.length) fail(errors.join('\n'));
  log('federated call: ok');
} finally {
  await browser.close();
}
