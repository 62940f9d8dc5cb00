// Voice messages: the microphone button records (MediaRecorder, Opus) until Send or Cancel; held
// down (a press longer than half a second), it records while held and sends on release. The
// recording bar shows the time and the level; the message carries its length and a waveform
// (64 values of 0-1024, as Matrix clients send them) for the player the page draws.

const HOLD_MS = 500;
const MAX_MS = 15 * 60 * 1000;
const BARS = 64;

function pickType() {
  for (const t of ['audio/ogg;codecs=opus', 'audio/webm;codecs=opus', 'audio/webm']) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(t)) return t;
  }
  return '';
}

// The loudness of a recording over time, from its decoded samples.
async function waveformOf(blob) {
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
    ctx.close();
    const data = audio.getChannelData(0);
    const per = Math.max(1, Math.floor(data.length / BARS));
    const peaks = [];
    for (let i = 0; i < BARS; i += 1) {
      let sum = 0;
      for (let j = i * per; j < Math.min(data.length, (i + 1) * per); j += 1) sum += data[j] * data[j];
      peaks.push(Math.sqrt(sum / per));
    }
    const top = Math.max(...peaks, 1e-6);
    return { duration: Math.round(audio.duration * 1000), waveform: peaks.map((p) => Math.round((p / top) * 1024)) };
  } catch {
    return {};
  }
}

function clock(ms) {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function setupVoice({ uploads, notice }) {
  const button = document.getElementById('record');
  const list = document.getElementById('uploads');
  if (!button || !list || !uploads) return;
  const type = pickType();
  if (!type || !navigator.mediaDevices) { button.hidden = true; return; }
  let rec = null; // {recorder, stream, chunks, started, row, timer, meter, send}

  function finish(send) {
    if (!rec) return;
    const r = rec;
    rec = null;
    r.send = send;
    clearInterval(r.timer);
    button.classList.remove('recording');
    button.setAttribute('aria-pressed', 'false');
    if (r.recorder.state !== 'inactive') r.recorder.stop();
    r.stream.getTracks().forEach((t) => t.stop());
    if (r.audio) r.audio.close();
    r.row.remove();
    list.hidden = !list.querySelector('li');
  }

  async function start() {
    if (rec) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      notice('The microphone is not available: allow it in the browser to record.');
      return;
    }
    const recorder = new MediaRecorder(stream, { mimeType: type });
    const chunks = [];
    const row = document.createElement('li');
    row.className = 'upload recording';
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.setAttribute('aria-hidden', 'true');
    const label = document.createElement('span');
    label.className = 'fname';
    label.textContent = 'Recording 0:00';
    label.setAttribute('role', 'status');
    const level = document.createElement('meter');
    level.min = 0; level.max = 1; level.value = 0;
    level.setAttribute('aria-label', 'Microphone level');
    const send = document.createElement('button');
    send.type = 'button'; send.className = 'send-voice'; send.textContent = 'Send';
    const cancel = document.createElement('button');
    cancel.type = 'button'; cancel.className = 'ghost cancel'; cancel.textContent = '×';
    cancel.setAttribute('aria-label', 'Cancel the recording');
    row.append(dot, label, level, send, cancel);
    list.appendChild(row);
    list.hidden = false;
    const started = Date.now();
    rec = { recorder, stream, chunks, started, row, send: false };
    // The level: the loudest sample of each tick.
    try {
      const audio = new AudioContext();
      const analyser = audio.createAnalyser();
      analyser.fftSize = 512;
      audio.createMediaStreamSource(stream).connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      rec.audio = audio;
      rec.meter = () => {
        analyser.getFloatTimeDomainData(buf);
        level.value = Math.min(1, Math.max(...buf.map(Math.abs)) * 1.5);
      };
    } catch { rec.meter = () => {}; }
    const r = rec;
    r.timer = setInterval(() => {
      const ms = Date.now() - r.started;
      label.textContent = `Recording ${clock(ms)}`;
      r.meter();
      if (ms > MAX_MS) finish(true);
    }, 200);
    recorder.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
    recorder.onstop = async () => {
      if (!r.send || !chunks.length) return;
      const blob = new Blob(chunks, { type: type.split(';')[0] });
      const ext = blob.type.includes('ogg') ? 'ogg' : 'webm';
      const file = new File([blob], `voice-message.${ext}`, { type: blob.type });
      const measured = await waveformOf(blob);
      if (!measured.duration) measured.duration = Date.now() - r.started;
      uploads.sendRecording(file, measured);
    };
    send.addEventListener('click', () => finish(true));
    cancel.addEventListener('click', () => finish(false));
    recorder.start(250);
    button.classList.add('recording');
    button.setAttribute('aria-pressed', 'true');
  }

  let pressedAt = 0;
  let holding = false;
  button.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    pressedAt = Date.now();
    holding = !rec;
    if (!rec) start();
  });
  button.addEventListener('pointerup', () => {
    // Held: send on release. A short press starts (or, recording, sends).
    if (holding && Date.now() - pressedAt > HOLD_MS) finish(true);
    else if (!holding && rec) finish(true);
    holding = false;
  });
  button.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' && e.key !== ' ') return;
    e.preventDefault();
    if (rec) finish(true); else start();
  });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && rec) finish(false); });
}
