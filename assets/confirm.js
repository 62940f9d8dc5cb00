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

// Asks; resolves to whether the user confirmed.
function ask(form) {
  if (!dialog) build();
  dialog.querySelector('#confirm-title').textContent = form.dataset.confirm;
  dialog.querySelector('#confirm-detail').textContent = form.dataset.confirmDetail || '';
  dialog.querySelector('button[value="ok"]').textContent = form.dataset.confirmAction || 'Confirm';
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
    ask(form).then((ok) => {
      if (!ok) return;
      form.dataset.confirmed = 'yes';
      form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
    });
  }, true);
}
