// Conversations in two browsers: Markdown renders as markup (and hostile links stay inert),
// a message edited with Up in an empty composer changes live in the other browser and after a
// reload, and a deleted one says "Message deleted" in its place, live and after a reload.
// Screenshots at desktop and phone widths, light and dark. Run by tests/browser.rs.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { register } from './people.mjs';

const base = process.argv[2];
const shots = process.argv[3] || 'target/browser-shots';
if (!base) { console.error('usage: conversation.mjs URL [SHOT_DIR]'); process.exit(2); }
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});

function fail(msg) { throw new Error(msg); }

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
  // Ben hovers Ana's message: he may neither edit nor delete it (no moderator).
  await b.hover('#timeline li.msg:has(.body strong:text-is("4"))');
  if (await b.locator('#timeline .actions').count()) fail("Ben got actions on Ana's message");

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
  console.log('browser conversation: ok');
} finally {
  await browser.close();
}
