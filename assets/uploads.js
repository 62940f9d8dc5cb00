// Files in the composer: chosen with the attach button, pasted, or dropped on the room (and
// voice messages from voice.js). Each
// uploads at once (POST /api/v1/media/upload, the file as the body) with a progress bar and a
// cancel button; a file over the server's limit is refused before a byte is sent. Send (or
// Enter) sends the uploaded files as messages once they are all in, the composer's text as the
// caption of a single file (with several, as a message of its own after them).

import { randomHex } from './dom.js';

function human(n) {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1 << 10) return `${Math.round(n / (1 << 10))} KB`;
  return `${n} bytes`;
}

// What the browser can tell of a file for its layout: an image's or video's size, a
// recording's length (ms).
function measure(file) {
  const url = URL.createObjectURL(file);
  const done = (v) => { URL.revokeObjectURL(url); return v; };
  if (file.type.startsWith('image/')) {
    return new Promise((resolve) => {
      const img = new Image();
      img.onload = () => resolve(done({ w: img.naturalWidth, h: img.naturalHeight }));
      img.onerror = () => resolve(done({}));
      img.src = url;
    });
  }
  if (file.type.startsWith('video/') || file.type.startsWith('audio/')) {
    return new Promise((resolve) => {
      const el = document.createElement(file.type.startsWith('video/') ? 'video' : 'audio');
      el.preload = 'metadata';
      el.onloadedmetadata = () => {
        const v = {};
        if (Number.isFinite(el.duration)) v.duration = Math.round(el.duration * 1000);
        if (el.videoWidth) { v.w = el.videoWidth; v.h = el.videoHeight; }
        resolve(done(v));
      };
      el.onerror = () => resolve(done({}));
      el.src = url;
    });
  }
  return Promise.resolve(done({}));
}

export function setupUploads({ roomId, notice, timeline }) {
  const form = document.getElementById('composer');
  const room = document.getElementById('room');
  const list = document.getElementById('uploads');
  const picker = document.getElementById('attach-input');
  const button = document.getElementById('attach');
  if (!form || !room || !list || !picker || !roomId) return null;
  const input = form.querySelector('textarea');
  const max = Number(room.dataset.maxUpload || 0);
  const items = []; // {file, row, xhr, uri, dims, failed}

  function render(item) {
    const row = document.createElement('li');
    row.className = 'upload';
    const name = document.createElement('span');
    name.className = 'fname';
    name.textContent = item.file.name || 'pasted file';
    const size = document.createElement('span');
    size.className = 'size';
    size.textContent = human(item.file.size);
    const bar = document.createElement('progress');
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute('aria-label', `Uploading ${name.textContent}`);
    const status = document.createElement('span');
    status.className = 'status';
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.className = 'ghost cancel';
    cancel.textContent = '×';
    cancel.setAttribute('aria-label', `Remove ${name.textContent}`);
    cancel.addEventListener('click', () => remove(item));
    row.append(name, size, bar, status, cancel);
    list.appendChild(row);
    list.hidden = false;
    input.required = false; // Send with files needs no text
    item.row = row;
  }

  function remove(item) {
    if (item.xhr) item.xhr.abort();
    item.row.remove();
    items.splice(items.indexOf(item), 1);
    list.hidden = items.length === 0;
    input.required = items.length === 0;
  }

  function fail(item, text) {
    item.failed = true;
    item.row.classList.add('failed');
    item.row.querySelector('.status').textContent = text;
    item.row.querySelector('progress').hidden = true;
  }

  function add(files) {
    for (const file of files) {
      const item = { file };
      items.push(item);
      render(item);
      if (max && file.size > max) {
        fail(item, `too big: at most ${human(max)}`);
        continue;
      }
      item.dims = measure(file);
      upload(item);
    }
  }

  function upload(item) {
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    item.done = new Promise((resolve) => {
      xhr.open('POST', `/api/v1/media/upload?filename=${encodeURIComponent(item.file.name || 'pasted')}`);
      xhr.withCredentials = true;
      xhr.setRequestHeader('content-type', item.file.type || 'application/octet-stream');
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) item.row.querySelector('progress').value = Math.round((e.loaded / e.total) * 100);
      };
      xhr.onload = () => {
        item.xhr = null;
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status === 200 && body.content_uri) {
          item.uri = body.content_uri;
          item.row.classList.add('uploaded');
          item.row.querySelector('progress').value = 100;
          item.row.querySelector('.status').textContent = 'ready';
        } else {
          fail(item, body.message || `upload failed (${xhr.status})`);
        }
        resolve();
      };
      xhr.onerror = () => { item.xhr = null; fail(item, 'upload failed: offline?'); resolve(); };
      xhr.onabort = () => { item.xhr = null; resolve(); };
      xhr.send(item.file);
    });
  }

  async function sendOne(item, caption) {
    const dims = await item.dims;
    const body = { txn_id: randomHex(12), body: caption, file: { content_uri: item.uri, ...dims } };
    const res = await fetch(`/api/v1/rooms/${encodeURIComponent(roomId)}/messages`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).catch(() => null);
    if (res && res.ok) return true;
    const err = res ? await res.json().catch(() => ({})) : {};
    notice(err.message || 'The file could not be sent.');
    return false;
  }

  button.addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => { add(Array.from(picker.files)); picker.value = ''; input.focus(); });
  input.addEventListener('paste', (e) => {
    const files = Array.from(e.clipboardData ? e.clipboardData.files : []);
    if (files.length) { e.preventDefault(); add(files); }
  });
  const zone = room;
  zone.addEventListener('dragover', (e) => {
    if (e.dataTransfer && Array.from(e.dataTransfer.types).includes('Files')) {
      e.preventDefault();
      zone.classList.add('dropping');
    }
  });
  zone.addEventListener('dragleave', (e) => { if (!zone.contains(e.relatedTarget)) zone.classList.remove('dropping'); });
  zone.addEventListener('drop', (e) => {
    zone.classList.remove('dropping');
    const files = Array.from(e.dataTransfer ? e.dataTransfer.files : []);
    if (files.length) { e.preventDefault(); add(files); input.focus(); }
  });

  return {
    // A voice message: uploaded with its progress row, then sent at once with its length and
    // waveform.
    async sendRecording(file, measured) {
      const item = { file };
      items.push(item);
      render(item);
      item.dims = Promise.resolve(measured);
      upload(item);
      await item.done;
      if (item.uri && !item.failed && await sendOne(item, '')) remove(item);
      timeline.scrollToBottom();
    },
    // Whether files wait in the composer (then Send sends them).
    pending() { return items.length > 0; },
    // Sends every uploaded file once all are in; `text` captions a single file, or follows
    // several as its own message (returned for the composer to send).
    async send(text) {
      await Promise.all(items.map((i) => i.done));
      const ready = items.filter((i) => i.uri && !i.failed);
      if (!ready.length) return text;
      const caption = ready.length === 1 ? text : '';
      for (const item of ready) {
        if (await sendOne(item, caption)) remove(item); else break;
      }
      timeline.scrollToBottom();
      return ready.length === 1 ? '' : text;
    },
  };
}
