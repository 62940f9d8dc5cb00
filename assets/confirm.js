// Confirmations for what is not easily taken back (leaving a room, disabling an account,
// deleting a room): a form with `data-confirm` asks first, in a dialog that says what will
// happen. Cancel has the focus, Esc cancels, and the focus returns where it was.
let dialog = null;

function build() {
  dialog = document.createElement('dialog');
  dialog.className = 'confirm';
  dialog.setAttribute('aria-labelledby', 'confirm-title');
  dialog.setAttribute('aria-describedby', 'confirm-detail');
  const form = document.createElement('form');
  form.method = 'dialog';
  const title = document.createElement('h2');
  title.id = 'confirm-title';
  const detail = document.createElement('p');
  detail.id = 'confirm-detail';
  const actions = document.createElement('div');
  actions.className = 'actions';
  const cancel = document.createElement('button');
  cancel.value = 'cancel';
  cancel.className = 'secondary';
  cancel.textContent = 'Cancel';
  const ok = document.createElement('button');
  ok.value = 'ok';
  ok.className = 'danger';
  actions.append(cancel, ok);
  form.append(title, detail, actions);
  dialog.append(form);
  document.body.append(dialog);
}

// Asks `title` ("Leave Lobby?"), saying `detail` (what happens), with `action` on the
// danger button; resolves to whether the user confirmed.
export function ask({ title, detail = '', action = 'Confirm' }) {
  if (!dialog) build();
  dialog.querySelector('#confirm-title').textContent = title;
  dialog.querySelector('#confirm-detail').textContent = detail;
  dialog.querySelector('button[value="ok"]').textContent = action;
  const back = document.activeElement;
  dialog.returnValue = '';
  dialog.showModal();
  dialog.querySelector('button[value="cancel"]').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (back && back.focus) back.focus();
      resolve(dialog.returnValue === 'ok');
    }, { once: true });
  });
}

export function setupConfirm() {
  document.addEventListener('submit', (e) => {
    const form = e.target.closest && e.target.closest('form[data-confirm]');
    if (!form) return;
    if (form.dataset.confirmed === 'yes') { delete form.dataset.confirmed; return; }
    e.preventDefault();
    e.stopImmediatePropagation();
    const submitter = e.submitter;
    ask({ title: form.dataset.confirm, detail: form.dataset.confirmDetail, action: form.dataset.confirmAction }).then((ok) => {
      if (!ok) return;
      form.dataset.confirmed = 'yes';
      form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
    });
  }, true);
}
