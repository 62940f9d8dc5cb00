// The live connection: one WebSocket per tab. Resumes from the last stream position it saw
// (`since`), reconnects with capped exponential backoff and jitter, and hands every frame to
// `onFrame`. Sends succeed only while connected and caught up (after `ready`).

export function createLive({ since, onFrame, onState }) {
  let ws = null;
  let attempt = 0;
  let live = false;
  let pos = since;

  function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(`${proto}//${location.host}/ws?since=${pos}`);
    ws.onopen = () => { attempt = 0; };
    ws.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (f.t === 'ready') {
        pos = Math.max(pos, f.pos);
        live = true;
        onState('live');
      }
      onFrame(f);
    };
    ws.onclose = (e) => {
      live = false;
      if (e.code === 4001) { location.assign('/login'); return; }
      onState(navigator.onLine ? 'reconnecting' : 'offline');
      const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random());
      attempt = Math.min(attempt + 1, 6);
      setTimeout(connect, delay);
    };
  }

  return {
    connect,
    send(frame) {
      if (ws && ws.readyState === WebSocket.OPEN && live) {
        ws.send(JSON.stringify(frame));
        return true;
      }
      return false;
    },
    // An event frame moved the stream: a reconnect resumes after it.
    seen(p) { if (p > pos) pos = p; },
    get live() { return live; },
  };
}
