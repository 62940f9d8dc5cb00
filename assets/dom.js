// Small DOM helpers shared by the modules: server fragments to nodes, local times.

export const me = document.body.dataset.user;

// Server-rendered HTML (a fragment from a page, a live frame or a <template>) to nodes.
export function fragment(html) {
  const t = document.createElement('template');
  t.innerHTML = html;
  return t.content;
}

// Times in the viewer's zone, and "mine" on the viewer's own messages.
export function localize(root) {
  for (const t of root.querySelectorAll('time[data-ts]')) {
    const d = new Date(Number(t.dataset.ts));
    t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    t.title = d.toLocaleString();
  }
  for (const e of root.querySelectorAll('span.edited[data-ts]')) {
    e.title = `Edited ${new Date(Number(e.dataset.ts)).toLocaleString()}`;
  }
  if (me) {
    for (const li of root.querySelectorAll('li.msg')) {
      if (li.dataset.sender === me) li.classList.add('mine');
    }
  }
}

export function displayName(id) { return id.replace(/^@/, '').split(':')[0]; }

export function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
