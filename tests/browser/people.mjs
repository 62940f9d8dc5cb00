// A person for the browser scripts: a fresh context that fails the script on any dialog (script
// from a message ran) or page error, registered through the sign-up form and landed on /rooms.
// With `watchCsp`, every CSP violation is recorded in `window.__csp`.
export async function register(browser, base, name, { viewport, watchCsp = false } = {}) {
  const ctx = await browser.newContext({ viewport });
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
