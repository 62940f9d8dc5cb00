// Conversations in two browsers: Markdown renders as markup (and hostile links stay inert),
// a message edited with Up in an empty composer changes live in the other browser and after a
// reload, and a deleted one says "Message deleted" in its place, live and after a reload.
// Replies quote, reactions count (from the toolbar, the picker and the buttons), messages
// group by sender under day separators, and "Jump to latest" counts what came while scrolled up.
// Screenshots at desktop and phone widths, light and dark. Run by tests/browser.rs.
import { register, start } from './people.mjs';

const { base, shots, browser, shootSchemes } = await start('conversation.mjs');

function fail(msg) { throw new Error(msg); }

// Ana's plan ("see you at **4**") as a page shows it.
const anasPlanB = (page) => page.locator('#timeline li.msg:has(.body strong:text-is("4"))');

const sizes = [[1366, 800, 'desktop'], [390, 844, 'phone']];


const person = (name) => register(browser, base, name, { viewport: { width: 1366, height: 800 }, watchCsp: true });

async function send(page, text) {
  await page.fill('#composer textarea', text);
  await page.press('#composer textarea', 'Enter');
}

const timeout = 10000;
try {
  const ana = await person('ana');
  const ben = await person('ben');
  await ana.page.fill('#new input[name=name]', 'Design');
  await Promise.all([ana.page.waitForURL(/\/rooms\/!/), ana.page.click('#new button[type=submit]')]);
  const roomUrl = ana.page.url();
  await ben.page.goto(roomUrl);
  await Promise.all([ben.page.waitForURL(roomUrl), ben.page.click('button:has-text("Join room")')]);
  for (const p of [ana.page, ben.page]) await p.waitForSelector('#conn[data-state="live"]', { timeout });

  // Formatting: Markdown becomes markup in the other browser.
  await send(ana.page, 'Plan for **today**: _review_ the `parser` and ~~panic~~ read https://example.org/notes.');
  await send(ana.page, '```rust\nfn main() {\n    println!("hi");\n}\n```');
  await send(ana.page, '> a quote\n\n- one\n- two');
  const b = ben.page;
  await b.waitForSelector('#timeline li.msg .body.formatted strong:text-is("today")', { timeout });
  await b.waitForSelector('#timeline li.msg .body.formatted em:text-is("review")', { timeout });
  await b.waitForSelector('#timeline li.msg .body.formatted code:text-is("parser")', { timeout });
  await b.waitForSelector('#timeline li.msg .body.formatted del:text-is("panic")', { timeout });
  const link = b.locator('#timeline li.msg .body.formatted a[href="https://example.org/notes"]');
  await link.waitFor({ timeout });
  if (await link.getAttribute('target') !== '_blank' || await link.getAttribute('rel') !== 'noopener noreferrer nofollow') {
    fail('a link must open a new tab without referrer');
  }
  await b.waitForSelector('#timeline pre code.language-rust', { timeout });
  const mono = await b.$eval('#timeline pre code.language-rust', (e) => getComputedStyle(e).fontFamily);
  if (!/mono|Menlo|Consolas/i.test(mono)) fail(`code is not monospace: ${mono}`);
  await b.waitForSelector('#timeline .body.formatted blockquote:has-text("a quote")', { timeout });
  await b.waitForSelector('#timeline .body.formatted ul li:text-is("two")', { timeout });

  // Hostile Markdown and HTML stay inert.
  await send(ana.page, '[click me](javascript:alert(1)) and ![x](javascript:alert(2)) <script>alert(3)</script> **<img src=x onerror=alert(4)>**');
  await b.waitForSelector('#timeline li.msg .body:has-text("click me")', { timeout });
  const bad = await b.evaluate(() => ({
    links: [...document.querySelectorAll('#timeline a[href]')].map((a) => a.getAttribute('href')).filter((h) => !/^https?:/.test(h)),
    elements: document.querySelectorAll('#timeline script, #timeline img, #timeline [onerror]').length,
    csp: window.__csp,
  }));
  if (bad.links.length || bad.elements || bad.csp.length) fail(`hostile input not inert: ${JSON.stringify(bad)}`);

  // Edit: Up in Ana's empty composer takes her last message; the change shows live at Ben's.
  await send(ana.page, 'see you at 3');
  await b.waitForSelector('#timeline li.msg .body:text-is("see you at 3")', { timeout });
  await ana.page.click('#composer textarea');
  await ana.page.press('#composer textarea', 'ArrowUp');
  await ana.page.waitForFunction(() => document.querySelector('#composer textarea').value === 'see you at 3', null, { timeout });
  await ana.page.waitForSelector('#composer-mode:not([hidden])', { timeout });
  await ana.page.fill('#composer textarea', 'see you at **4**');
  await ana.page.press('#composer textarea', 'Enter');
  for (const p of [ana.page, b]) {
    await p.waitForSelector('#timeline li.msg:has(.body strong:text-is("4")) .edited', { timeout });
  }
  if (await b.locator('#timeline li.msg .body:text-is("see you at 3")').count()) fail('the old text is still shown');
  // Ben hovers Ana's message: he may react and reply, but neither edit nor delete it (no moderator).
  await b.hover('#timeline li.msg:has(.body strong:text-is("4"))');
  await b.waitForSelector('#timeline li.msg .actions button[data-act="reply"]', { timeout });
  if (await b.locator('#timeline .actions button[data-act="edit"], #timeline .actions button[data-act="delete"]').count()) {
    fail("Ben may edit or delete Ana's message");
  }

  // Delete: Ana hovers her first message, Delete, and once more to confirm.
  const first = ana.page.locator('#timeline li.msg:has(strong:text-is("today"))');
  await first.hover();
  await first.locator('.actions button[data-act="delete"]').click();
  await first.locator('.actions button[data-act="delete"].confirm').click();
  for (const p of [ana.page, b]) {
    await p.waitForSelector('#timeline li.msg.redacted .body em:text-is("Message deleted")', { timeout });
  }
  if (await b.locator('#timeline strong:text-is("today")').count()) fail('the deleted text is still shown');

  // After a reload, the same.
  await b.reload();
  await b.waitForSelector('#conn[data-state="live"]', { timeout });
  await b.waitForSelector('#timeline li.msg.redacted .body em:text-is("Message deleted")', { timeout });
  await b.waitForSelector('#timeline li.msg:has(.body strong:text-is("4")) .edited', { timeout });
  if (await b.locator('#timeline li.msg .body:text-is("see you at 3")').count()) fail('reloaded: the old text is shown');
  if (await b.locator('#timeline strong:text-is("today")').count()) fail('reloaded: the deleted text is shown');

  // Deleting the newest edit shows the one before, live: Ana writes a draft, edits it twice,
  // and deletes the second edit (through the API); Ben's row goes back to "draft 2".
  const edit = async (text) => {
    await ana.page.click('#composer textarea');
    await ana.page.press('#composer textarea', 'ArrowUp');
    await ana.page.waitForSelector('#composer-mode:not([hidden])', { timeout });
    await ana.page.fill('#composer textarea', text);
    await ana.page.press('#composer textarea', 'Enter');
    await b.waitForSelector(`#timeline li.msg .body:text-is("${text}")`, { timeout });
  };
  await send(ana.page, 'draft 1');
  await b.waitForSelector('#timeline li.msg .body:text-is("draft 1")', { timeout });
  await edit('draft 2');
  await edit('draft 3');
  const undone = await ana.page.evaluate(async () => {
    const draft = [...document.querySelectorAll('#timeline li.msg')].find((li) => li.textContent.includes('draft 3'));
    const edits = document.querySelectorAll(`#timeline li[data-kind="m.replace"][data-replaces="${draft.dataset.eventId}"]`);
    const room = document.getElementById('room').dataset.roomId;
    const res = await fetch(`/api/v1/rooms/${encodeURIComponent(room)}/redact`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ event_id: edits[edits.length - 1].dataset.eventId }),
    });
    return res.status;
  });
  if (undone !== 200) fail(`deleting the edit: ${undone}`);
  await b.waitForSelector('#timeline li.msg .body:text-is("draft 2")', { timeout });

  // Reply: Ben answers Ana's edited message from its toolbar; the quote shows live at Ana's.
  const planned = b.locator('#timeline li.msg:has(.body strong:text-is("4"))');
  await planned.hover();
  await planned.locator('.actions button[data-act="reply"]').click();
  await b.waitForSelector('#composer-mode:not([hidden]) .what:has-text("Replying to ana")', { timeout });
  await send(b, 'works for me');
  const answer = '#timeline li.msg:has(.body:text-is("works for me"))';
  for (const p of [ana.page, b]) {
    await p.waitForSelector(`${answer} .quote .text:text-is("see you at 4")`, { timeout });
  }
  await b.waitForSelector('#composer-mode[hidden]', { state: 'attached', timeout });

  // Reactions: Ben reacts with the toolbar's 👍 and, from the picker (searched by name), 🎉;
  // Ana sees both live and adds her 👍 by clicking it (2), then takes it back (1).
  await planned.hover();
  await planned.locator('.actions button[data-act="quick"][data-key="👍"]').click();
  await planned.hover();
  await planned.locator('.actions button[data-act="react"]').click();
  await b.waitForSelector('.picker input', { timeout });
  await b.fill('.picker input', 'party popper');
  await b.waitForSelector('.picker button.emoji[data-key="🎉"]', { timeout });
  await b.press('.picker input', 'Enter');
  await b.waitForSelector('.picker', { state: 'detached', timeout });
  const chip = (p, key) => p.locator(`#timeline li.msg:has(.body strong:text-is("4")) .reaction[data-key="${key}"]`);
  for (const p of [ana.page, b]) {
    await chip(p, '👍').locator('.count:text-is("1")').waitFor({ timeout });
    await chip(p, '🎉').locator('.count:text-is("1")').waitFor({ timeout });
  }
  if (await chip(b, '👍').getAttribute('aria-pressed') !== 'true') fail("Ben's own reaction is not marked his");
  await chip(ana.page, '👍').click();
  for (const p of [ana.page, b]) await chip(p, '👍').locator('.count:text-is("2")').waitFor({ timeout });
  await chip(ana.page, '👍').click();
  for (const p of [ana.page, b]) await chip(p, '👍').locator('.count:text-is("1")').waitFor({ timeout });
  // The picker remembers: 🎉 is first among Ben's recent emoji.
  await planned.hover();
  await planned.locator('.actions button[data-act="react"]').click();
  await b.waitForSelector('.picker .grid.recent button.emoji[data-key="🎉"]', { timeout });
  await b.press('.picker input', 'Escape');
  await b.waitForSelector('.picker', { state: 'detached', timeout });

  // Pins: Ana (the room's creator) pins the plan from its toolbar; Ben's header shows it live,
  // and clicking it there goes to the message. Ben (no moderator) gets no Pin button.
  const anasPlan = ana.page.locator('#timeline li.msg:has(.body strong:text-is("4"))');
  await anasPlan.hover();
  await anasPlan.locator('.actions button[data-act="pin"]').click();
  await b.waitForSelector('#pins:not([hidden]) summary:has-text("1")', { timeout });
  await b.click('#pins summary');
  await b.click('#pins a.pin:has(.text:text-is("see you at 4"))');
  await b.waitForSelector('#timeline li.msg.flash:has(.body strong:text-is("4"))', { timeout });
  await planned.hover();
  if (await planned.locator('.actions button[data-act="pin"]').count()) fail('Ben may not pin');

  // Copy link: Ben copies the address of Ana's plan (opened below, once it is far back).
  await b.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  await anasPlanB(b).hover();
  await anasPlanB(b).locator('.actions button[data-act="link"]').click();
  await b.waitForSelector('#notice.ok:text-is("Link copied.")', { timeout });
  const copied = await b.evaluate(() => navigator.clipboard.readText());
  const anasPlanId = await anasPlanB(b).getAttribute('data-event-id');
  if (!copied.endsWith(`/events/${encodeURIComponent(anasPlanId)}`)) fail(`copied ${copied}`);

  // Mentions: Ben types "@a", the suggestion (by keyboard) writes "@ana "; Ana's tab marks
  // the message that mentions her, her name as a pill.
  await b.click('#composer textarea');
  await b.keyboard.type('@a');
  await b.waitForSelector('#mention-suggest:not([hidden]) li[aria-selected="true"] .name:text-is("ana")', { timeout });
  await b.screenshot({ path: `${shots}/conversation-mention-suggest.png` });
  await b.keyboard.press('Enter');
  const typed = await b.$eval('#composer textarea', (t) => t.value);
  if (typed !== '@ana ') fail(`the suggestion wrote ${JSON.stringify(typed)}`);
  await b.waitForSelector('#mention-suggest[hidden]', { state: 'attached', timeout });
  await b.keyboard.type('have a look');
  await b.keyboard.press('Enter');
  await ana.page.waitForSelector('#timeline li.msg.mentions-me .body .pill.me:text-is("@ana")', { timeout });
  for (const scheme of ['light', 'dark']) {
    await ana.page.emulateMedia({ colorScheme: scheme });
    await ana.page.screenshot({ path: `${shots}/conversation-mentioned-${scheme}.png` });
  }
  await ana.page.emulateMedia({ colorScheme: 'light' });

  // Names: Ana sets hers in the settings; Ben's open tab shows it on her messages at once.
  // Clicking it opens her card; Mention puts her in his composer.
  await ana.page.goto(`${base}/settings`);
  await ana.page.fill('input[name="display_name"]', 'Ana Lopez');
  await Promise.all([ana.page.waitForNavigation(), ana.page.click('form[action="/settings/profile"] button[type=submit]')]);
  await ana.page.waitForSelector('p.ok:has-text("Name saved")', { timeout });
  for (const [w, h, tag] of sizes) {
    await ana.page.setViewportSize({ width: w, height: h });
    await shootSchemes(ana.page, `conversation-settings-${tag}`);
  }
  await ana.page.setViewportSize({ width: 1366, height: 800 });
  await b.waitForSelector('#timeline li.msg > .who:text-is("Ana Lopez")', { timeout });
  await b.waitForSelector('#members .name:text-is("Ana Lopez")', { state: 'attached', timeout });
  for (const [w, h, tag] of [...sizes].reverse()) {
    await b.setViewportSize({ width: w, height: h });
    await b.click('#timeline li.msg > .who:text-is("Ana Lopez")');
    await b.waitForSelector('.profile-card .name:text-is("Ana Lopez")', { timeout });
    await shootSchemes(b, `conversation-profile-card-${tag}`);
    if (tag === 'phone') {
      await b.keyboard.press('Escape');
      await b.waitForSelector('.profile-card', { state: 'detached', timeout });
    }
  }
  await b.click('.profile-card [data-act="mention"]');
  const mentioned = await b.$eval('#composer textarea', (t) => t.value);
  if (mentioned !== '@ana ') fail(`Mention wrote ${JSON.stringify(mentioned)}`);
  await b.fill('#composer textarea', '');
  await ana.page.goto(roomUrl);
  await ana.page.waitForSelector('#conn[data-state="live"]', { timeout });

  // After a reload: the quote, the counts, the groups and the day separator are there.
  await b.reload();
  await b.waitForSelector('#conn[data-state="live"]', { timeout });
  await b.waitForSelector(`${answer} .quote .text:text-is("see you at 4")`, { timeout });
  await chip(b, '🎉').locator('.count:text-is("1")').waitFor({ timeout });
  await b.waitForSelector('#timeline li.day:has-text("Today")', { timeout });
  // A reaction taken back and an edit deleted leave nothing on the page: one message deleted.
  if (await b.locator('#timeline li.note:has-text("m.reaction")').count()) fail('a deleted reaction shows as a note');
  const deleted = await b.locator('#timeline li.msg.redacted').count();
  if (deleted !== 1) fail(`${deleted} "Message deleted" rows, want 1 (a deleted edit has no row)`);
  // Ana's messages in a row are one group: one name for several messages.
  const grouped = await b.evaluate(() => document.querySelectorAll('#timeline li.msg.cont').length);
  if (grouped < 2) fail(`consecutive messages are not grouped (${grouped} continued rows)`);

  // Clicking a quote goes to the message it answers, loading older history if it must: Ben
  // answers the plan (through the API) after 60 more messages, reloads, and clicks the quote.
  const planId = await planned.getAttribute('data-event-id');
  for (let i = 0; i < 60; i += 1) await send(ana.page, `filler ${i}`);
  await b.waitForSelector('#timeline li.msg .body:text-is("filler 59")', { timeout });
  const roomId = roomUrl.split('/rooms/')[1];
  const st = await b.evaluate(async ([room, to]) => (await fetch(`/api/v1/rooms/${encodeURIComponent(room)}/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ body: 'back to the plan', txn_id: 'jump1', reply_to: to }),
  })).status, [decodeURIComponent(roomId), planId]);
  if (st !== 200) fail(`reply through the API: ${st}`);
  await b.reload();
  await b.waitForSelector('#conn[data-state="live"]', { timeout });
  if (await b.locator(`#timeline li[data-event-id="${planId}"]`).count()) fail('the plan should not be on the first page');
  await b.click('#timeline li.msg:has(.body:text-is("back to the plan")) .quote');
  await b.waitForSelector(`#timeline li.msg.flash[data-event-id="${planId}"]`, { timeout });
  // The copied link opens the room at Ana's plan, now past the first page.
  await b.goto(copied);
  await b.waitForSelector(`#timeline li.msg.flash[data-event-id="${anasPlanId}"]`, { timeout });
  await b.goto(roomUrl);
  await b.waitForSelector('#conn[data-state="live"]', { timeout });
  // Jump to latest: scrolled up, a new message counts on the button; clicking it goes down.
  await b.evaluate(() => { document.getElementById('timeline').scrollTop = 0; });
  await b.waitForSelector('#jump-latest:not([hidden])', { timeout });
  await send(ana.page, 'one more');
  await b.waitForSelector('#jump-latest.has-new .count:has-text("1 new message")', { timeout });
  await b.click('#jump-latest');
  await b.waitForSelector('#jump-latest[hidden]', { state: 'attached', timeout });
  await send(b, 'about the plan');
  await b.waitForSelector('#timeline li.msg .body:text-is("about the plan")', { timeout });

  // Screenshots: Ana's room with the toolbar on a message, desktop and phone, light and dark.
  const a = ana.page;
  for (const [w, h, tag] of [[1366, 800, 'desktop'], [390, 844, 'phone']]) {
    await a.setViewportSize({ width: w, height: h });
    for (const scheme of ['light', 'dark']) {
      await a.emulateMedia({ colorScheme: scheme });
      await a.hover('#timeline li.msg:has(.body strong:text-is("4"))');
      await a.screenshot({ path: `${shots}/conversation-${tag}-${scheme}.png` });
    }
  }
  await a.click('#composer textarea');
  await a.press('#composer textarea', 'ArrowUp');
  await a.waitForSelector('#composer-mode:not([hidden])', { timeout });
  await a.emulateMedia({ colorScheme: 'light' });
  await a.setViewportSize({ width: 1366, height: 800 });
  await a.screenshot({ path: `${shots}/conversation-editing.png` });
  await a.press('#composer textarea', 'Escape');
  await a.waitForSelector('#composer-mode[hidden]', { state: 'attached', timeout });
  // The pinned list open, desktop and phone.
  for (const [w, h, tag] of sizes) {
    await a.setViewportSize({ width: w, height: h });
    await a.click('#pins summary');
    await a.waitForSelector('#pins[open] a.pin', { timeout });
    await shootSchemes(a, `conversation-pins-${tag}`);
    await a.click('#pins summary');
  }
  // The picker and a reply being written, desktop and phone.
  const answered = a.locator('#timeline li.msg:has(.body:text-is("about the plan"))');
  for (const [w, h, tag] of sizes) {
    await a.setViewportSize({ width: w, height: h });
    await answered.hover();
    await answered.locator('.actions button[data-act="reply"]').click();
    await a.fill('#composer textarea', 'sounds good');
    await answered.hover();
    await answered.locator('.actions button[data-act="react"]').click();
    await a.waitForSelector('.picker button.emoji', { timeout });
    await shootSchemes(a, `conversation-picker-${tag}`);
    await a.press('.picker input', 'Escape');
    await a.press('#composer textarea', 'Escape');
  }
  console.log('browser conversation: ok');
} finally {
  await browser.close();
}
