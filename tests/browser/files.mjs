// Files in two browsers: Ana attaches a photo with the button (with a caption), pastes a
// second one, drops an HTML file and records a voice message; Ben sees the photos at their proportions and the file
// as a card, live, opens the viewer and steps through it with the keys. A file over the
// server's limit is refused in the composer before it is sent. The HTML file runs nothing.
// Screenshots at desktop and phone widths, light and dark. Run by tests/browser.rs (the server
// takes files up to 1 MB there).
import { register, start } from './people.mjs';

// A fake microphone (a tone) for the voice message.
const { base, shots, browser, shootSchemes } = await start('files.mjs', {
  args: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
});

function fail(msg) { throw new Error(msg); }
const timeout = 10000;

// A PNG of w×h drawn in the page (a sky, a lawn and a sun), as bytes.
async function png(page, w, h, hue) {
  const b64 = await page.evaluate(([w, h, hue]) => {
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    const g = c.getContext('2d');
    g.fillStyle = `hsl(${hue}, 70%, 75%)`; g.fillRect(0, 0, w, h);
    g.fillStyle = 'hsl(110, 45%, 45%)'; g.fillRect(0, h * 0.65, w, h * 0.35);
    g.fillStyle = 'hsl(45, 95%, 55%)'; g.beginPath(); g.arc(w * 0.75, h * 0.3, h * 0.12, 0, 7); g.fill();
    return c.toDataURL('image/png').split(',')[1];
  }, [w, h, hue]);
  return Buffer.from(b64, 'base64');
}

// Dispatches a paste (or a drop on the room) of one file made in the page from base64 bytes.
async function hand(page, how, name, type, bytes) {
  await page.evaluate(([how, name, type, b64]) => {
    const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bin], name, { type }));
    if (how === 'paste') {
      document.querySelector('#composer textarea').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    } else {
      const room = document.getElementById('room');
      room.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      room.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  }, [how, name, type, Buffer.from(bytes).toString('base64')]);
}

try {
  const ana = await register(browser, base, 'ana', { viewport: { width: 1366, height: 800 }, watchCsp: true });
  const ben = await register(browser, base, 'ben', { viewport: { width: 1366, height: 800 }, watchCsp: true });
  await ana.page.fill('#new input[name=name]', 'Photos');
  await Promise.all([ana.page.waitForURL(/\/rooms\/!/), ana.page.click('#new button[type=submit]')]);
  const roomUrl = ana.page.url();
  await ben.page.goto(roomUrl);
  await Promise.all([ben.page.waitForURL(roomUrl), ben.page.click('button:has-text("Join room")')]);
  const a = ana.page;
  const b = ben.page;
  for (const p of [a, b]) await p.waitForSelector('#conn[data-state="live"]', { timeout });

  // The attach button: a 1200×900 photo, with a caption typed while it uploads.
  await a.setInputFiles('#attach-input', { name: 'garden.png', mimeType: 'image/png', buffer: await png(a, 1200, 900, 205) });
  await a.waitForSelector('#uploads li.upload progress', { timeout });
  await a.waitForSelector('#uploads li.uploaded', { timeout });
  await a.fill('#composer textarea', 'our **garden** today');
  await a.press('#composer textarea', 'Enter');
  await a.waitForSelector('#uploads', { state: 'hidden', timeout });
  const photo = b.locator('#timeline li.msg:has(.body strong:text-is("garden")) a.file.image img:not(.ph)');
  await photo.waitFor({ timeout });
  const size = await photo.evaluate((img) => [img.getAttribute('width'), img.getAttribute('height')]);
  if (size.join('x') !== '360x270') fail(`the photo's space is ${size.join('x')}, want 360x270`);
  await b.waitForFunction(() => {
    const img = document.querySelector('#timeline a.file.image img:not(.ph)');
    return img && img.complete && img.naturalWidth === 800; // the thumbnail of a 1200 × 900 photo
  }, null, { timeout });
  // Its blurred placeholder (from the server's BlurHash) was under it, and goes once it is in.
  const ph = b.locator('#timeline li.msg:has(.body strong:text-is("garden")) a.file.image img.ph');
  if (await ph.count() !== 1) fail('the photo has no placeholder');
  await b.waitForSelector('#timeline a.file.image.loaded img.ph', { state: 'hidden', timeout });

  // Pasted: a second photo, sent alone.
  await hand(a, 'paste', 'image.png', 'image/png', await png(a, 600, 800, 280));
  await a.waitForSelector('#uploads li.uploaded', { timeout });
  await a.press('#composer textarea', 'Enter');
  await b.waitForFunction(() => document.querySelectorAll('#timeline a.file.image img:not(.ph)').length === 2, null, { timeout });

  // Dropped: an HTML page with a script, shown as a card; downloading it runs nothing.
  await hand(a, 'drop', 'notes.html', 'text/html', Buffer.from('<script>alert("ran")</script><h1>notes</h1>'));
  await a.waitForSelector('#uploads li.uploaded', { timeout });
  await a.press('#composer textarea', 'Enter');
  await b.waitForSelector('#timeline a.file.card .fname:text-is("notes.html")', { timeout });
  const href = await b.getAttribute('#timeline a.file.card', 'href');
  const res = await b.evaluate(async (u) => {
    const r = await fetch(u);
    return [r.headers.get('content-type'), r.headers.get('content-disposition'), r.headers.get('content-security-policy')];
  }, href);
  if (res[0] !== 'application/octet-stream' || !res[1].startsWith('attachment') || !res[2].startsWith('sandbox')) {
    fail(`the HTML file is served as ${JSON.stringify(res)}`);
  }

  // Too big for this server (1 MB): refused in the composer, before it is sent.
  await a.setInputFiles('#attach-input', { name: 'huge.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(1_200_000, 7) });
  await a.waitForSelector('#uploads li.failed .status:has-text("too big")', { timeout });

  // The viewer: Ben opens the first photo, → goes to the second, Esc closes.
  await b.click('#timeline a.file.image >> nth=0');
  await b.waitForSelector('.viewer img', { timeout });
  const first = await b.getAttribute('.viewer img', 'src');
  await b.keyboard.press('ArrowRight');
  await b.waitForFunction((f) => {
    const img = document.querySelector('.viewer img');
    return img.getAttribute('src') !== f && img.complete && !img.classList.contains('loading');
  }, first, { timeout });
  await shootSchemes(b, 'files-viewer-desktop');
  await b.keyboard.press('Escape');
  await b.waitForSelector('.viewer', { state: 'detached', timeout });

  // A voice message: Ana records from the (fake) microphone and sends it; Ben gets a player
  // with the waveform, which plays.
  await a.context().grantPermissions(['microphone'], { origin: base });
  await a.click('#record');
  await a.waitForSelector('#uploads li.recording .fname:has-text("Recording 0:01")', { timeout });
  await shootSchemes(a, 'files-recording-desktop');
  await a.click('#uploads li.recording .send-voice');
  await b.waitForSelector('#timeline .file.voice svg.wave rect', { timeout });
  const label = await b.textContent('#timeline .file.voice .label');
  if (!/Voice message · 0:0[1-3]/.test(label)) fail(`the voice message says ${JSON.stringify(label)}`);
  await b.evaluate(() => { const au = document.querySelector('#timeline .file.voice audio'); au.muted = true; return au.play(); });
  await b.waitForFunction(() => document.querySelector('#timeline .file.voice audio').currentTime > 0.2, null, { timeout });

  // After a reload everything is still there.
  await b.reload();
  await b.waitForSelector('#conn[data-state="live"]', { timeout });
  if (await b.locator('#timeline a.file.image').count() !== 2) fail('the photos are gone after a reload');
  if (await b.locator('#timeline a.file.card').count() !== 1) fail('the file card is gone after a reload');
  for (const p of [a, b]) {
    const csp = await p.evaluate(() => window.__csp);
    if (csp.length) fail(`CSP violations: ${csp.join(' | ')}`);
  }

  // Screenshots: Ben's room, Ana's composer with a refused file, desktop and phone.
  for (const [w, h, tag] of [[1366, 800, 'desktop'], [390, 844, 'phone']]) {
    await b.setViewportSize({ width: w, height: h });
    await a.setViewportSize({ width: w, height: h });
    await b.evaluate(() => { const t = document.getElementById('timeline'); t.scrollTop = t.scrollHeight; });
    await shootSchemes(b, `files-room-${tag}`);
    await shootSchemes(a, `files-composer-${tag}`);
  }
  await b.click('#timeline a.file.image >> nth=1');
  await b.waitForSelector('.viewer img:not(.loading)', { timeout });
  await shootSchemes(b, 'files-viewer-phone');
  console.log('files: attach, paste, drop, limit, viewer ok');
} finally {
  await browser.close();
}
