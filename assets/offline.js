// The offline page (shown by the service worker when the server cannot be reached): lists the
// messages this tab is keeping to send (the composer's outbox), and tries again.
export function showQueued() {
  const list = document.getElementById('queued');
  let queued = [];
  try { queued = JSON.parse(sessionStorage.getItem('chat.outbox') || '[]'); } catch { queued = []; }
  const bodies = queued.map(([, m]) => m && typeof m.body === 'string' ? m.body : '').filter(Boolean);
  if (list) {
    for (const body of bodies) {
      const li = document.createElement('li');
      li.textContent = body;
      list.appendChild(li);
    }
    document.getElementById('queued-none').hidden = bodies.length > 0;
  }
  document.getElementById('retry')?.addEventListener('click', () => location.reload());
}
