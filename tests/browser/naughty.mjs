// The Big List of Naughty Strings (npm `big-list-of-naughty-strings`, blns.json) sent as
// messages, room names and topics and usernames. Every string must be refused with a 4xx or
// stored and shown as the same inert text: live (pushed fragments) and after a reload (server
// render and history pages), in the room list and the public directory. A message is Markdown:
// one the server formatted (`.body.formatted`) may hold only the allow-list's elements and
// attributes (links to http, https and mailto only), the same live and reloaded; every other
// one is the same text. Checked in headless Chromium: no dialog, no page error, no CSP
// violation, no element made from user text outside the allow-list.
// Run by tests/browser.rs with the server's URL as argument; prints its figures.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';

const base = process.argv[2];
if (!base) { console.error('usage: naughty.mjs URL'); process.exit(2); }
const strings = createRequire(import.meta.url)('big-list-of-naughty-strings/blns.json');

function fail(msg) { throw new Error(msg); }

async function api(method, path, token, body) {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 500) fail(`${method} ${path} -> ${res.status}: ${text}`);
  let json = null;
  try { json = JSON.parse(text); } catch { /* 4xx bodies are JSON; checked below */ }
  if (res.status >= 400 && !(json && json.error && json.message)) fail(`${method} ${path} -> ${res.status} without an error body: ${text}`);
  return { status: res.status, json };
}

// HTML text nodes turn CR LF and lone CR into LF; the server trims names and topics.
const asText = (s) => s.replace(/\r\n?/g, '\n');

const refusedBy = {};
const count = (what, r) => { const k = `${what} ${r.status} ${r.json.error}`; refusedBy[k] = (refusedBy[k] || 0) + 1; };

// Usernames: only [a-z0-9._-] is allowed; every naughty name is refused cleanly or taken as is.
let usernamesAccepted = 0;
for (const [i, s] of strings.entries()) {
  const r = await api('POST', '/register', null, { username: s, password: `password-${i}` });
  if (r.status === 200) usernamesAccepted += 1; else count('username', r);
}

const ana = (await api('POST', '/register', null, { username: 'naughty-ana', password: 'password123' })).json;
const ben = (await api('POST', '/register', null, { username: 'naughty-ben', password: 'password123' })).json;
const room = (await api('POST', '/rooms', ana.token, { name: 'Naughty', visibility: 'public' })).json.room_id;
await api('POST', `/rooms/${encodeURIComponent(room)}/join`, ben.token, {});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});

async function signedIn(user) {
  const ctx = await browser.newContext();
  const { host } = new URL(base);
  await ctx.addCookies([{ name: 'chat_token', value: user.token, domain: host.split(':')[0], path: '/', httpOnly: true }]);
  // Any attempt to run injected script or load injected content is recorded, even if blocked.
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = await ctx.newPage();
  page.on('dialog', (d) => fail(`a dialog opened (injected script ran): ${d.message()}`));
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  return page;
}

// Every element holding user text must hold text only (no element was made from it), and
// nothing may have tried to run or load anything.
async function checkPage(page, holders, what) {
  const found = await page.evaluate((holders) => ({
    holders: document.querySelectorAll(holders).length,
    // (A note names people in our own text-only <span data-name-of>.)
    withElements: [...document.querySelectorAll(holders)]
      .filter((e) => [...e.children].some((c) => !(c.matches('span[data-name-of]') && c.children.length === 0)))
      .map((e) => e.outerHTML.slice(0, 100)),
    csp: window.__csp,
  }), holders);
  if (!found.holders) fail(`${what}: nothing matched ${holders}`);
  if (found.withElements.length) fail(`${what}: elements from user text: ${found.withElements.slice(0, 5).join(' | ')}`);
  if (found.csp.length) fail(`${what}: CSP violations: ${found.csp.slice(0, 5).join(' | ')}`);
  return found.holders;
}

try {
  // Ben watches the room live while Ana sends every string.
  const benPage = await signedIn(ben);
  await benPage.goto(`${base}/rooms/${encodeURIComponent(room)}`);
  await benPage.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
  const sent = [];
  for (const [i, s] of strings.entries()) {
    const r = await api('POST', `/rooms/${encodeURIComponent(room)}/messages`, ana.token, { body: s, txn_id: `n${i}` });
    if (r.status === 200) sent.push(s); else count('message', r);
  }
  await benPage.waitForFunction((n) => document.querySelectorAll('#timeline li.msg').length >= n, sent.length, { timeout: 30000 });
  // Each body: plain text, or the formatted HTML with what it breaks the allow-list with.
  const bodies = async () => benPage.evaluate(() => {
    const tags = new Set(['P', 'BR', 'STRONG', 'B', 'EM', 'I', 'DEL', 'S', 'STRIKE', 'U', 'CODE', 'PRE', 'BLOCKQUOTE',
      'UL', 'OL', 'LI', 'A', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'HR', 'SUP', 'SUB']);
    const attrs = { A: ['href', 'rel', 'target'], CODE: ['class'], OL: ['start'] };
    return [...document.querySelectorAll('#timeline li.msg .body')].map((b) => {
      if (!b.classList.contains('formatted')) return { text: b.textContent };
      const bad = [];
      for (const e of b.querySelectorAll('*')) {
        if (!tags.has(e.tagName)) bad.push(e.tagName);
        for (const a of e.attributes) if (!(attrs[e.tagName] || []).includes(a.name)) bad.push(`${e.tagName}[${a.name}]`);
        if (e.tagName === 'A' && e.hasAttribute('href') && !/^(https?:|mailto:)/i.test(e.getAttribute('href'))) bad.push(`href ${e.getAttribute('href')}`);
        if (e.tagName === 'A' && (e.getAttribute('target') !== '_blank' || e.getAttribute('rel') !== 'noopener noreferrer nofollow')) bad.push('link without _blank/noopener');
        if (e.tagName === 'CODE' && e.hasAttribute('class') && !/^language-[\w+#-]+$/.test(e.getAttribute('class'))) bad.push('code class');
      }
      return { html: b.innerHTML, bad };
    });
  });
  let formatted = 0;
  const same = (shown, what, earlier) => {
    const want = sent.map(asText);
    if (shown.length !== want.length) fail(`${what}: ${shown.length} messages shown, ${want.length} sent`);
    formatted = 0;
    shown.forEach((b, i) => {
      if (b.html !== undefined) {
        formatted += 1;
        if (b.bad.length) fail(`${what}: message ${i} (${JSON.stringify(sent[i])}) has ${b.bad.join(', ')} in ${b.html}`);
        if (earlier && earlier[i].html !== b.html) fail(`${what}: message ${i} differs from live: ${b.html} / ${earlier[i].html}`);
      } else if (b.text !== want[i]) {
        fail(`${what}: message ${i} shown as ${JSON.stringify(b.text)}, sent ${JSON.stringify(sent[i])}`);
      }
    });
  };
  const live = await bodies();
  same(live, 'live');
  await checkPage(benPage, '#timeline li.msg .body:not(.formatted)', 'live');

  // After a reload: the first page from the server, then every older page through history.
  await benPage.reload();
  await benPage.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
  for (let i = 0; i < 40 && !(await benPage.$('#timeline li.start')); i += 1) {
    await benPage.evaluate(() => { const tl = document.getElementById('timeline'); tl.scrollTop = 0; tl.dispatchEvent(new Event('scroll')); });
    await benPage.waitForTimeout(150);
  }
  if (!(await benPage.$('#timeline li.start'))) fail('history did not reach the beginning');
  same(await bodies(), 'reloaded', live);
  await checkPage(benPage, '#timeline li.msg .body:not(.formatted), #timeline li.note', 'reloaded');

  // Search: every string, and query-syntax injections, as the search text give results or a
  // clear 400, never a 500; the API's results hold only this room's messages; a string made
  // of words finds its own message; the search page shows snippets as inert text.
  const injections = ['body:x', 'room:* OR 1', 'a AND b OR NOT c', '(', ')', '"', '""', '*', '?', 'x~2', 'x^9',
    '[a TO z]', '{a TO z}', 'title:"x" -y +z', '.*', '\\', '\u0000', 'in:', 'from:', 'from:@', 'in:!nope:x',
    'before:', 'before:2026-13-01', 'after:yesterday', 'has:', 'has:file', '/regex/', 'a'.repeat(500), 'a'.repeat(501),
    `${'x '.repeat(16)}`, `${'x '.repeat(17)}`, '東', '💩', '\u202e', 'NaN', 'null', 'undefined'];
  const searchStatus = {};
  let found = 0;
  let words = 0;
  // The index takes in what was sent within moments; wait for it before asserting finds.
  for (let i = 0; i < 100; i += 1) {
    const r = await api('GET', `/search?q=${encodeURIComponent('from:naughty-ana')}&limit=1`, ben.token);
    if (r.status === 200 && !r.json.indexing) break;
    await new Promise((res) => { setTimeout(res, 100); });
  }
  for (const s of [...strings, ...injections]) {
    const r = await api('GET', `/search?q=${encodeURIComponent(s)}&room=${encodeURIComponent(room)}&limit=50`, ben.token);
    searchStatus[r.status] = (searchStatus[r.status] || 0) + 1;
    if (r.status !== 200 && r.status !== 400) fail(`search ${JSON.stringify(s)} -> ${r.status}`);
    if (r.status !== 200) continue;
    if (r.json.results.some((x) => x.room_id !== room)) fail(`search ${JSON.stringify(s)}: a result from another room`);
    // A plain string of letters and spaces finds the message that is that string.
    if (/^[A-Za-z][A-Za-z ]{2,60}$/.test(s) && sent.includes(s)) {
      words += 1;
      if (r.json.results.some((x) => x.event.content.body === s)) found += 1;
      else fail(`search ${JSON.stringify(s)}: its own message not found`);
    }
  }
  for (const s of strings.slice(0, 120)) {
    await benPage.goto(`${base}/search?q=${encodeURIComponent(s)}&room=${encodeURIComponent(room)}`);
    const seen = await benPage.evaluate(() => ({
      // A snippet holds text and <mark>s of text (and the file mark), nothing made from it.
      bad: [...document.querySelectorAll('#results .snippet')]
        .filter((sn) => [...sn.querySelectorAll('*')].some((c) => !(c.matches('mark, span.kind') && c.children.length === 0)))
        .map((e) => e.outerHTML.slice(0, 100)),
      csp: window.__csp,
    }));
    if (seen.bad.length || seen.csp.length) fail(`search page for ${JSON.stringify(s)}: ${seen.bad.concat(seen.csp).join(' | ')}`);
  }
  console.log(`search: ${strings.length + injections.length} queries answered ${JSON.stringify(searchStatus)}; ` +
    `${found} of ${words} word strings found their message`);

  // Room names and topics: Ana creates a public room per string.
  // Names and topics are trimmed when stored: compare with what the server says it stored.
  const rooms = [];
  for (const s of strings) {
    const r = await api('POST', '/rooms', ana.token, { name: s, topic: s, visibility: 'public' });
    if (r.status !== 200) { count('room', r); continue; }
    const stored = (await api('GET', `/rooms/${encodeURIComponent(r.json.room_id)}`, ana.token)).json;
    rooms.push({ name: stored.name, topic: stored.topic });
  }
  const anaPage = await signedIn(ana);
  await anaPage.goto(`${base}/rooms`);
  await checkPage(anaPage, '#room-list .name', 'room list');
  const listed = new Set(await anaPage.evaluate(() => [...document.querySelectorAll('#room-list a[data-room-id] .name')].map((a) => a.textContent)));
  const missing = rooms.filter((r) => !listed.has(asText(r.name)));
  if (missing.length) fail(`room list: ${missing.length} names not shown as text, e.g. ${JSON.stringify(missing.slice(0, 3))}`);
  // Ben (not a member) sees them in the public directory, names and topics, page after page
  // (topics are cut to 200 characters there).
  const topics = new Set();
  await benPage.goto(`${base}/rooms`);
  for (let pages = 0; ; pages += 1) {
    if (pages > 100) fail('directory: more than 100 pages');
    await checkPage(benPage, '#public-rooms li > a, #public-rooms .topic', 'directory');
    for (const t of await benPage.evaluate(() => [...document.querySelectorAll('#public-rooms .topic')].map((p) => p.textContent))) topics.add(t);
    const next = await benPage.$('nav.pager a[rel="next"]');
    if (!next) break;
    await Promise.all([benPage.waitForNavigation(), next.click()]);
  }
  const shown = (t) => { const c = Array.from(asText(t)); return c.length > 200 ? `${c.slice(0, 200).join('')}…` : c.join(''); };
  const missingTopics = rooms.filter((r) => r.topic && !topics.has(shown(r.topic)));
  if (missingTopics.length) fail(`directory: ${missingTopics.length} topics not shown as text, e.g. ${JSON.stringify(missingTopics.slice(0, 3))}`);

  console.log(`naughty strings: ${strings.length} tried; messages: ${sent.length} shown (live and reloaded): ` +
    `${sent.length - formatted} as the same text, ${formatted} formatted within the allow-list; ` +
    `rooms: ${rooms.length} names and topics shown as sent, usernames accepted: ${usernamesAccepted}; refused: ${JSON.stringify(refusedBy)}`);
} finally {
  await browser.close();
}
