// A room call hosted by another server. One server holds a room's calls through its media
// server, the room's call host (its creator's server, as a rule). When that is not ours, our
// server gets a call token from it over federation (POST /api/v1/rooms/{id}/call/host) and
// this module opens the host's call socket, presents the token, and hands what comes back
// (the call's roster, the media server's offers and speakers, a host's actions) to the same
// handlers as the live socket's frames. Only the call's frames go there; messages stay on our
// own server's live socket.

// Where this tab joins a room's calls: { here: true } (our server), or
// { here: false, server, url, token } (the host's call socket and a token for it).
export async function callHostOf(room_id) {
  const res = await fetch(`/api/v1/rooms/${encodeURIComponent(room_id)}/call/host`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.message || `the server answered ${res.status}`);
  return body;
}

// Opens the host's call socket with `token`. Resolves once the host has said who is in the
// room's calls (its first call_roster, handed to onFrame first), with { send, close };
// rejects if the host refuses the token or cannot be reached. onClose runs when an open
// socket closes without close() being called.
export function openCallSocket({ url, token, onFrame, onClose }) {
  return new Promise((resolve, reject) => {
    let ws;
    try { ws = new WebSocket(url); } catch (e) { reject(e); return; }
    let open = false;
    let closing = false;
    const channel = {
      send(f) { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(f)); },
      close() { closing = true; ws.close(1000); },
    };
    const timer = setTimeout(() => { if (!open) { reject(new Error('no answer')); ws.close(); } }, 15000);
    ws.onopen = () => ws.send(JSON.stringify({ t: 'call_auth', token }));
    ws.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (!open) {
        if (f.t === 'error') { clearTimeout(timer); reject(new Error(f.message || f.error)); return; }
        if (f.t !== 'call_roster') return; // `ready` comes first
        open = true;
        clearTimeout(timer);
        onFrame(f);
        resolve(channel);
        return;
      }
      onFrame(f);
    };
    ws.onclose = () => {
      clearTimeout(timer);
      if (!open) reject(new Error('it could not be reached'));
      else if (!closing) onClose();
    };
  });
}
