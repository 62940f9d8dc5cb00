// The room page's render time in headless Chromium, for `chat-load render`: a first visit
// (empty cache), repeat visits (cached assets), and loading the room's whole history by
// scrolling up. Prints one JSON line of figures (milliseconds, medians of `runs`).
//   node render_bench.mjs URL TOKEN ROOM_ID [RUNS]
import { chromium } from 'playwright-core';

const [base, token, room, runsArg] = process.argv.slice(2);
if (!base || !token || !room) { console.error('usage: render_bench.mjs URL TOKEN ROOM_ID [RUNS]'); process.exit(2); }
const runs = Number(runsArg || 3);
const url = `${base}/rooms/${encodeURIComponent(room)}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return Math.round(s[Math.floor(s.length / 2)] * 10) / 10; };

// One visit: navigation timing, and when the page is live (its WebSocket ready).
async function visit(page) {
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 30000 });
  const live = Date.now() - t0;
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    // Everything else the page fetched: over the network (transferSize > 0) or from the cache.
    const res = performance.getEntriesByType('resource').filter((e) => !e.name.startsWith('ws'));
    const fetched = res.filter((e) => e.transferSize > 0);
    return {
      html: n.responseEnd - n.startTime, dcl: n.domContentLoadedEventEnd - n.startTime, load: n.loadEventEnd - n.startTime, bytes: n.transferSize,
      resources: res.length, fetched: fetched.length, fetched_bytes: fetched.reduce((a, e) => a + e.transferSize, 0),
    };
  });
  const rows = await page.evaluate(() => document.querySelectorAll('#timeline li.msg').length);
  return { ...nav, live, rows };
}

async function newPage() {
  // CHAT_BENCH_SW=block: without the service worker (to see what it costs).
  const serviceWorkers = process.env.CHAT_BENCH_SW === 'block' ? 'block' : 'allow';
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 800 }, serviceWorkers });
  const host = new URL(base).hostname;
  await ctx.addCookies([{ name: 'chat_token', value: token, domain: host, path: '/' }]);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => { throw new Error(`page error: ${e.message}`); });
  return { ctx, page };
}

try {
  const first = [];
  const repeat = [];
  const history = [];
  for (let i = 0; i < runs; i += 1) {
    const { ctx, page } = await newPage();
    first.push(await visit(page));
    repeat.push(await visit(page));
    // The whole history: scroll to the top until the beginning of the conversation shows.
    const t0 = Date.now();
    let loads = 0;
    while (!await page.$('#timeline li.start')) {
      const before = await page.evaluate(() => document.querySelectorAll('#timeline li.ev').length);
      await page.evaluate(() => { document.getElementById('timeline').scrollTop = 0; });
      await page.waitForFunction((n) => document.querySelectorAll('#timeline li.ev').length > n
        || document.querySelector('#timeline li.start'), before, { timeout: 30000 });
      loads += 1;
    }
    const rows = await page.evaluate(() => document.querySelectorAll('#timeline li.msg').length);
    history.push({ ms: Date.now() - t0, loads, rows });
    await ctx.close();
  }
  const sum = (list) => ({
    html_ms: median(list.map((x) => x.html)),
    dom_ready_ms: median(list.map((x) => x.dcl)),
    load_ms: median(list.map((x) => x.load)),
    live_ms: median(list.map((x) => x.live)),
    rows: list[0].rows,
    bytes: list[0].bytes,
    resources: list[0].resources,
    fetched: list[0].fetched,
    fetched_bytes: list[0].fetched_bytes,
  });
  console.log(JSON.stringify({
    first: sum(first),
    repeat: sum(repeat),
    history: { ms: median(history.map((h) => h.ms)), loads: history[0].loads, rows: history[0].rows },
  }));
} finally {
  await browser.close();
}
