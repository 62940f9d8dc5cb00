import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

// A script's arguments (the server's URL, the screenshot directory, made if missing) and a
// headless Chromium that resolves no name but loopback (with `args` added to its flags).
export async function start(script, { args = [] } = {}) {
  const base = process.argv[2];
  const shots = process.argv[3] || 'target/browser-shots';
  if (!base) { console.error(`usage: ${script} URL [SHOT_DIR]`); process.exit(2); }
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', ...args],
  });
  // Screenshots of what `page` shows now, light and dark (then light again).
  async function shootSchemes(page, name) {
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.screenshot({ path: `${shots}/${name}-${scheme}.png` });
    }
    await page.emulateMedia({ colorScheme: 'light' });
  }
  return { base, shots, browser, shootSchemes };
}

// A person for the browser scripts: a fresh context that fails the script on any dialog (script
// from a message ran) or page error, registered through the sign-up form and landed on /rooms.
// With `watchCsp`, every CSP violation is recorded in `window.__csp`.
// With `watchNotifications`, the page's desktop notifications are recorded in
// `window.__notes` (headless Chromium shows none: `Notification` is replaced by a recorder
// that keeps the browser's permission) and `window.__hidden = true` makes the tab count as
// hidden (`document.visibilityState`). `permissions`: granted to the context.
export async function register(browser, base, name, { viewport, watchCsp = false, watchNotifications = false, permissions = [] } = {}) {
  const ctx = await browser.newContext({ viewport, permissions });
  if (watchNotifications) {
    await ctx.addInitScript(() => {
      window.__notes = [];
      window.__hidden = false;
      Object.defineProperty(Document.prototype, 'visibilityState', {
        configurable: true, get() { return window.__hidden ? 'hidden' : 'visible'; },
      });
      const Real = window.Notification;
      function Recorded(title, options = {}) {
        const note = { title, body: options.body, tag: options.tag, onclick: null, close() { note.closed = true; } };
        window.__notes.push(note);
        return note;
      }
      Object.defineProperty(Recorded, 'permission', { get: () => (Real ? Real.permission : 'denied') });
      Recorded.requestPermission = () => (Real ? Real.requestPermission() : Promise.resolve('denied'));
      window.Notification = Recorded;
    });
  }
  if (watchCsp) {
    await ctx.addInitScript(() => {
      window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
  }
  const page = await ctx.newPage();
  page.on('dialog', (d) => { throw new Error(`${name}: a dialog opened (script ran): ${d.message()}`); });
  page.on('pageerror', (e) => { throw new Error(`${name}: page error: ${e.message}`); });
  await page.goto(`${base}/register`);
  await page.fill('input[name=username]', name);
  await page.fill('input[name=password]', 'password123');
  await Promise.all([page.waitForURL(`${base}/rooms`), page.click('button[type=submit]')]);
  return { ctx, page };
}
