import { chromium } from 'playwright-core';
const base = process.argv[2];
const out = process.argv[3] || '/tmp/shots';
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const login = await (await fetch(`${base}/api/v1/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'ana', password: 'password123456' }) })).json();
const res = await (await fetch(`${base}/api/v1/search?q=dinner`, { headers: { authorization: `Bearer ${login.token}` } })).json();
const hit = res.results[Math.min(3, res.results.length - 1)];
for (const scheme of ['light', 'dark']) {
  for (const [w, h, tag] of [[1366, 800, 'desk'], [390, 844, 'phone']]) {
    const ctx = await browser.newContext({ viewport: { width: w, height: h }, colorScheme: scheme, deviceScaleFactor: 1 });
    await ctx.addCookies([{ name: 'chat_token', value: login.token, domain: '127.0.0.1', path: '/' }]);
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.log('pageerror', e.message));
    await page.goto(`${base}/search?q=${encodeURIComponent('dinner')}`);
    await page.screenshot({ path: `${out}/search-${tag}-${scheme}.png` });
    await page.goto(`${base}/search?q=${encodeURIComponent('train from:ben')}&since=2020-01-01`);
    await page.screenshot({ path: `${out}/search-filters-${tag}-${scheme}.png` });
    await page.goto(`${base}/search`);
    await page.screenshot({ path: `${out}/search-empty-${tag}-${scheme}.png` });
    await page.goto(`${base}/rooms/${encodeURIComponent(hit.room_id)}/events/${encodeURIComponent(hit.event.event_id)}`);
    await page.waitForTimeout(800);
    await page.screenshot({ path: `${out}/jump-${tag}-${scheme}.png` });
    await page.goto(`${base}/rooms`);
    await page.screenshot({ path: `${out}/rooms-${tag}-${scheme}.png` });
    await ctx.close();
  }
}
await browser.close();
