// Images shown large: a click on an image in the timeline opens it over the page, full size
// within the window; ← and → (or the buttons) go to the room's previous and next image, Esc
// (or a click beside the image) closes it and gives the focus back.

let open = null; // {box, link, opener}

function images() {
  return Array.from(document.querySelectorAll('#timeline a.file.image'));
}

function close() {
  if (!open) return;
  open.box.remove();
  const { opener } = open;
  open = null;
  if (opener && opener.isConnected) opener.focus();
}

function show(link, opener) {
  const box = open ? open.box : document.createElement('div');
  if (!open) {
    box.className = 'viewer';
    box.setAttribute('role', 'dialog');
    box.setAttribute('aria-modal', 'true');
    box.tabIndex = -1;
    const img = document.createElement('img');
    const prev = document.createElement('button');
    prev.type = 'button'; prev.className = 'prev'; prev.textContent = '‹'; prev.setAttribute('aria-label', 'Previous image');
    const next = document.createElement('button');
    next.type = 'button'; next.className = 'next'; next.textContent = '›'; next.setAttribute('aria-label', 'Next image');
    const shut = document.createElement('button');
    shut.type = 'button'; shut.className = 'close'; shut.textContent = '×'; shut.setAttribute('aria-label', 'Close');
    const caption = document.createElement('a');
    caption.className = 'caption';
    caption.target = '_blank';
    caption.rel = 'noopener';
    box.append(img, prev, next, shut, caption);
    prev.addEventListener('click', () => step(-1));
    next.addEventListener('click', () => step(1));
    shut.addEventListener('click', close);
    box.addEventListener('click', (e) => { if (e.target === box) close(); });
    document.body.appendChild(box);
    open = { box, opener };
  }
  open.link = link;
  const img = box.querySelector('img');
  // Hidden until the new picture is in: never the last one under this one's name.
  const href = link.getAttribute('href');
  if (img.getAttribute('src') !== href) {
    img.classList.add('loading');
    img.onload = () => img.classList.remove('loading');
    img.onerror = () => img.classList.remove('loading');
    img.src = href;
  }
  img.alt = link.title || 'image';
  const caption = box.querySelector('.caption');
  caption.textContent = link.title || 'image';
  caption.href = link.getAttribute('href');
  const all = images();
  const at = all.indexOf(link);
  box.querySelector('.prev').disabled = at <= 0;
  box.querySelector('.next').disabled = at < 0 || at >= all.length - 1;
  box.focus();
}

function step(by) {
  if (!open) return;
  const all = images();
  const at = all.indexOf(open.link);
  const to = all[at + by];
  if (to) show(to);
}

// A picture's blurred placeholder goes once the picture is in (it would show through the
// transparent parts of one).
function settle(img) {
  if (!img.classList.contains('ph')) img.closest('a.file.image')?.classList.add('loaded');
}

export function setupViewer() {
  document.addEventListener('load', (e) => { if (e.target instanceof HTMLImageElement) settle(e.target); }, true);
  for (const img of document.querySelectorAll('#timeline a.file.image img:not(.ph)')) {
    if (img.complete && img.naturalWidth) settle(img);
  }
  document.addEventListener('click', (e) => {
    const link = e.target.closest('#timeline a.file.image');
    if (!link || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    show(link, link);
  });
  document.addEventListener('keydown', (e) => {
    if (!open) return;
    if (e.key === 'Escape') { e.preventDefault(); close(); } else if (e.key === 'ArrowLeft') { e.preventDefault(); step(-1); } else if (e.key === 'ArrowRight') { e.preventDefault(); step(1); }
  });
}
