// Messages typed while the server is down are queued by the page and sent exactly once after
// the server comes back. Driven by tests/browser.rs over stdin/stdout:
//   script prints "ROOM <id>" and "STOP"; the test kills the server and answers "STOPPED";
//   the script types while offline and prints "START"; the test restarts the server and answers
//   "STARTED"; the script waits for delivery and prints "DONE".
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const base = process.argv[2];
const lines = createInterface({ input: process.stdin });
const incoming = [];
let waiter = null;
lines.on('line', (l) => { if (waiter) { const w = waiter; waiter = null; w(l); } else incoming.push(l); });
function nextLine() {
  return incoming.length ? Promise.resolve(incoming.shift()) : new Promise((r) => { waiter = r; });
}
async function expectLine(want) {
  const got = await nextLine();
  if (got !== want) throw new Error(`expected ${want}, got ${got}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});
const timeout = 10000;
try {
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => { throw new Error(`page error: ${e.message}`); });
  await page.goto(`${base}/register`);
  await page.fill('input[name=username]', 'ana');
  await page.fill('input[name=password]', 'password123');
  await Promise.all([page.waitForURL(`${base}/rooms`), page.click('button[type=submit]')]);
  await page.fill('#new input[name=name]', 'Notes');
  await Promise.all([page.waitForURL(/\/rooms\/!/), page.click('#new button[type=submit]')]);
  await page.waitForSelector('#conn[data-state="live"]', { timeout });
  const roomId = await page.$eval('#room', (el) => el.dataset.roomId);
  console.log(`ROOM ${roomId}`);

  console.log('STOP');
  await expectLine('STOPPED');
  await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout });
  const bodies = ['offline 1', 'offline 2', 'offline 3'];
  for (const b of bodies) {
    await page.fill('#composer textarea', b);
    await page.press('#composer textarea', 'Enter');
  }
  const pending = await page.$$eval('#timeline li.msg.pending', (els) => els.length);
  if (pending !== 3) throw new Error(`expected 3 pending messages while offline, saw ${pending}`);

  console.log('START');
  await expectLine('STARTED');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 45000 });
  for (const b of bodies) {
    await page.waitForSelector(`#timeline li.msg:not(.pending) .body:text-is("${b}")`, { timeout });
  }
  await page.waitForFunction(() => !document.querySelector('#timeline li.pending'), null, { timeout });
  const shown = await page.$$eval('#timeline li.msg .body', (els) => els.map((e) => e.textContent));
  if (JSON.stringify(shown) !== JSON.stringify(bodies)) throw new Error(`timeline shows ${JSON.stringify(shown)}`);
  console.log('DONE');
} finally {
  await browser.close();
  lines.close();
}
