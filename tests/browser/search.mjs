// Search and jumping into history, in headless Chromium. Ana sends 300 messages; Ben finds an
// old one from the room list's search box, opens it: the room opens around it (not at the
// newest), the message is marked, scrolling up loads older history and scrolling down newer
// history up to the newest, with a message sent meanwhile in its place and nothing twice.
// "Jump to latest" from a message far back; the room's own search (limited to it); a reply's
// quote of a message far back opens the room there; the same at phone width. Screenshots of
// the search page and of a message opened, light and dark, desktop and phone.
// Run by tests/browser.rs with the server's URL.
import { start, register } from './people.mjs';

const { base, browser, shootSchemes } = await start('search.mjs');
function fail(msg) { throw new Error(msg); }
const timeout = 15000;

async function api(method, path, token, body) {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) fail(`${method} ${path} -> ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

// Positions of the timeline's rows, and whether any event shows twice.
async function timelineState(page) {
  return page.evaluate(() => {
    const rows = [...document.querySelectorAll('#timeline li.ev[data-pos]')];
    const ids = rows.map((r) => r.dataset.eventId).filter(Boolean);
    const bodies = [...document.querySelectorAll('#timeline li.msg .body')].map((b) => b.textContent.trim());
    return {
      first: rows.length ? Number(rows[0].dataset.pos) : 0,
      last: rows.length ? Number(rows[rows.length - 1].dataset.pos) : 0,
      dup: ids.length - new Set(ids).size,
      newer: document.getElementById('timeline').dataset.newer || null,
      bodies,
    };
  });
}

try {
  const ana = await api('POST', '/register', null, { username: 'ana', password: 'password123' });
  const room = (await api('POST', '/rooms', ana.token, { name: 'Archive', visibility: 'public' })).room_id;
  const other = (await api('POST', '/rooms', ana.token, { name: 'Elsewhere', visibility: 'public' })).room_id;
  const ids = [];
  for (let i = 0; i < 300; i += 1) {
    const body = i === 37 ? 'the unique marmalade recipe from grandma' : `entry ${i} of the archive`;
    ids.push((await api('POST', `/rooms/${encodeURIComponent(room)}/messages`, ana.token, { body, txn_id: `a${i}` })).event_id);
  }
  await api('POST', `/rooms/${encodeURIComponent(other)}/messages`, ana.token, { body: 'entry in another room', txn_id: 'o1' });
  // A reply to message 20, sent last: its quote opens the room there.
  await api('POST', `/rooms/${encodeURIComponent(room)}/messages`, ana.token, { body: 'replying to an old one', txn_id: 'r1', reply_to: ids[20] });

  const { page } = await register(browser, base, 'ben', { viewport: { width: 1366, height: 800 } });
  const ben = await api('POST', '/login', null, { username: 'ben', password: 'password123' });
  await api('POST', `/rooms/${encodeURIComponent(room)}/join`, ben.token, {});
  await api('POST', `/rooms/${encodeURIComponent(other)}/join`, ben.token, {});
  await page.goto(`${base}/rooms`);

  // The room list's box searches every room.
  await page.fill('form.search-box input[name=q]', 'MARMALADE');
  await Promise.all([page.waitForURL(/\/search\?q=MARMALADE/), page.press('form.search-box input[name=q]', 'Enter')]);
  // The index takes a moment after a burst: the page is searched again until it shows it.
  for (let i = 0; i < 50 && !(await page.$('#results li.result')); i += 1) {
    await page.waitForTimeout(100);
    await page.reload();
  }
  const results = await page.$$eval('#results li.result', (lis) => lis.map((li) => ({
    marks: [...li.querySelectorAll('mark')].map((m) => m.textContent),
    room: li.querySelector('.room').textContent,
    who: li.querySelector('.who').textContent,
  })));
  if (results.length !== 1) fail(`search: ${results.length} results`);
  if (results[0].marks.join() !== 'marmalade' || !results[0].room.includes('Archive') || results[0].who !== 'ana') {
    fail(`search result: ${JSON.stringify(results[0])}`);
  }
  await shootSchemes(page, 'search-results-desktop');

  // Opening it: the room around the message, marked and in view, detached from the newest.
  await Promise.all([page.waitForURL(/\/events\//), page.click('#results li.result a')]);
  await page.waitForSelector(`#timeline li.msg.target[data-event-id="${ids[37]}"]`, { timeout });
  const inView = await page.$eval('#timeline li.msg.target', (li) => {
    const r = li.getBoundingClientRect();
    const t = document.getElementById('timeline').getBoundingClientRect();
    return r.top >= t.top && r.bottom <= t.bottom;
  });
  if (!inView) fail('the opened message is not in view');
  let st = await timelineState(page);
  if (!st.newer) fail('opened at an old message, the timeline should stop short of the newest');
  if (st.bodies.includes('entry 299 of the archive')) fail('the newest is shown around an old message');
  await page.waitForSelector('#jump-latest:not([hidden])', { timeout });
  await shootSchemes(page, 'search-opened-desktop');

  // A message sent while Ben reads far back is not put after the window (a gap) ...
  await page.waitForSelector('#conn[data-state="live"]', { timeout });
  await api('POST', `/rooms/${encodeURIComponent(room)}/messages`, ana.token, { body: 'sent while ben reads old ones', txn_id: 'live1' });
  await page.waitForTimeout(300);
  if ((await timelineState(page)).bodies.includes('sent while ben reads old ones')) fail('a live message was put after a detached window');

  // Scrolling up: older history, to the beginning.
  for (let i = 0; i < 40 && !(await page.$('#timeline li.start')); i += 1) {
    await page.evaluate(() => { const tl = document.getElementById('timeline'); tl.scrollTop = 0; tl.dispatchEvent(new Event('scroll')); });
    await page.waitForTimeout(100);
  }
  if (!(await page.$('#timeline li.start'))) fail('scrolling up did not reach the beginning');
  // Scrolling down: newer history, to the newest (and the message sent meanwhile), once each.
  for (let i = 0; i < 60 && (await timelineState(page)).newer; i += 1) {
    await page.evaluate(() => { const tl = document.getElementById('timeline'); tl.scrollTop = tl.scrollHeight; tl.dispatchEvent(new Event('scroll')); });
    await page.waitForTimeout(100);
  }
  st = await timelineState(page);
  if (st.newer) fail('scrolling down did not reach the newest');
  if (st.dup) fail(`${st.dup} events shown twice`);
  const want = [];
  for (let i = 0; i < 300; i += 1) want.push(i === 37 ? 'the unique marmalade recipe from grandma' : `entry ${i} of the archive`);
  const got = st.bodies.filter((b) => !b.startsWith('replying') && !b.startsWith('sent while'));
  if (got.join('|') !== want.join('|')) fail(`history both ways: ${got.length} messages, not the 300 in order`);
  if (st.bodies[st.bodies.length - 1] !== 'sent while ben reads old ones') fail(`the newest is ${st.bodies[st.bodies.length - 1]}`);
  // Attached again: live messages come in.
  await api('POST', `/rooms/${encodeURIComponent(room)}/messages`, ana.token, { body: 'and one more, live', txn_id: 'live2' });
  await page.waitForFunction(() => [...document.querySelectorAll('#timeline li.msg .body')].some((b) => b.textContent.includes('and one more, live')), null, { timeout });

  // "Jump to latest" from a message far back loads the newest.
  await page.goto(`${base}/rooms/${encodeURIComponent(room)}/events/${encodeURIComponent(ids[5])}`);
  await page.waitForSelector(`#timeline li.msg.target[data-event-id="${ids[5]}"]`, { timeout });
  await page.click('#jump-latest');
  // (The window stops being detached when the click is taken, before the newest page is in.)
  await page.waitForFunction(() => {
    const tl = document.getElementById('timeline');
    const bodies = [...tl.querySelectorAll('li.msg .body')];
    return !tl.dataset.newer && bodies.length && bodies[bodies.length - 1].textContent.trim() === 'and one more, live';
  }, null, { timeout }).catch(() => {});
  st = await timelineState(page);
  if (st.bodies[st.bodies.length - 1] !== 'and one more, live' || st.dup) fail(`after Jump to latest: ${st.bodies.slice(-2)} (${st.dup} twice)`);
  await page.waitForSelector('#jump-latest[hidden]', { state: 'attached', timeout });

  // A reply's quote of a message far back opens the room there.
  await page.click(`#timeline .quote[data-quote-of="${ids[20]}"]`);
  await page.waitForSelector(`#timeline li.msg.target[data-event-id="${ids[20]}"]`, { timeout });

  // The room's own search: limited to it.
  await page.goto(`${base}/rooms/${encodeURIComponent(room)}`);
  await Promise.all([page.waitForURL(/\/search\?room=/), page.click('#room-search')]);
  await page.waitForSelector('.search-scope .chip', { timeout });
  await page.fill('#search-q', 'entry');
  await Promise.all([page.waitForURL(/q=entry/), page.press('#search-q', 'Enter')]);
  const rooms = await page.$$eval('#results .room', (r) => [...new Set(r.map((e) => e.textContent))]);
  if (rooms.join() !== 'in Archive') fail(`room search found messages in ${rooms}`);
  const count = await page.$eval('#results-title', (h) => h.textContent);
  if (count !== '299 messages') fail(`room search count: ${count}`);
  // More results: the next page, newest first still.
  await Promise.all([page.waitForURL(/next=20/), page.click('a.more')]);
  const firstOfPage2 = await page.$eval('#results li.result .snippet', (s) => s.textContent.trim());
  if (firstOfPage2 !== 'entry 279 of the archive') fail(`page 2 starts with ${firstOfPage2}`);

  // Phone width: search, open, marked, nothing scrolls sideways.
  const phone = (await register(browser, base, 'cy', { viewport: { width: 390, height: 844 } })).page;
  const cy = await api('POST', '/login', null, { username: 'cy', password: 'password123' });
  await api('POST', `/rooms/${encodeURIComponent(room)}/join`, cy.token, {});
  await phone.goto(`${base}/search?q=${encodeURIComponent('marmalade grandma')}`);
  await phone.waitForSelector('#results li.result', { timeout });
  const wide = await phone.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  if (wide) fail('the search page scrolls sideways on a phone');
  await shootSchemes(phone, 'search-results-phone');
  await Promise.all([phone.waitForURL(/\/events\//), phone.click('#results li.result a')]);
  await phone.waitForSelector(`#timeline li.msg.target[data-event-id="${ids[37]}"]`, { timeout });
  await shootSchemes(phone, 'search-opened-phone');
  console.log('search: found, opened in context, paged both ways to the newest, jump to latest, room search, phone');
} finally {
  await browser.close();
}
