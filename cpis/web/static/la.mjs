// The local authority's pages, made livelier where a browser runs scripts. Both pages
// work without this: the inbox shows new attendances when reloaded, and the upload
// form is a plain multipart form.

// --- The inbox: new attendances arrive while it is open (server-sent events) --------

function startInbox(list) {
  const source = new EventSource(list.dataset.inboxEvents);
  const status = document.querySelector('[data-inbox-status]');
  const actions = document.querySelector('[data-inbox-actions]');
  source.addEventListener('child', (event) => {
    const template = document.createElement('template');
    template.innerHTML = event.data.trim();
    const section = template.content.firstElementChild;
    if (!section || !section.dataset.child) return;
    // A child already listed is replaced, keeping what the person had ticked.
    const old = list.querySelector(`[data-child="${CSS.escape(section.dataset.child)}"]`);
    if (old) {
      for (const box of old.querySelectorAll('input[name="ids"]:checked')) {
        const same = section.querySelector(`input[name="ids"][value="${CSS.escape(box.value)}"]`);
        if (same) same.checked = true;
      }
      old.remove();
    }
    section.classList.add('cpis-child--new');
    list.prepend(section);
    document.querySelector('[data-inbox-empty]')?.remove();
    if (actions) actions.hidden = false;
    if (status) {
      const heading = section.querySelector('h2');
      status.textContent = `New attendance: ${heading ? heading.textContent.trim() : 'a child'}`;
    }
  });
  // The server ends each stream after a few minutes; EventSource reconnects by
  // itself, saying the last event it had. If the session has ended, the answer is
  // not a stream and the browser gives up: a reload then asks the person to sign in.
  // Each reconnect keeps the session alive, so none is made once the person has left
  // the page alone for a while: the session can then end at its idle timeout.
  const idleMs = Number(list.dataset.inboxIdleSeconds) * 1000;
  let lastUsed = Date.now();
  for (const type of ['pointerdown', 'keydown', 'scroll', 'focus']) {
    window.addEventListener(type, () => { lastUsed = Date.now(); }, { capture: true, passive: true });
  }
  source.addEventListener('error', () => {
    if (Date.now() - lastUsed < idleMs) return;
    source.close();
    const paused = document.querySelector('[data-inbox-paused]');
    if (paused) paused.hidden = false;
  });
}

for (const list of document.querySelectorAll('[data-inbox-events]')) {
  if ('EventSource' in window) startInbox(list);
}

// --- Uploads: a progress bar while the file is sent -----------------------------------

function showProblem(form, message) {
  const error = form.querySelector('[data-upload-error]');
  const input = form.querySelector('input[type="file"]');
  error.textContent = '';
  const hidden = document.createElement('span');
  hidden.className = 'govuk-visually-hidden';
  hidden.textContent = 'Error:';
  error.append(hidden, ` ${message}`);
  error.hidden = false;
  error.closest('.govuk-form-group').classList.add('govuk-form-group--error');
  input.setAttribute('aria-describedby', 'file-hint file-error');
  input.focus();
}

function startUpload(form) {
  const progress = form.querySelector('[data-upload-progress]');
  const bar = progress.querySelector('progress');
  const text = progress.querySelector('[data-upload-progress-text]');
  const button = form.querySelector('[data-upload-button]');
  form.addEventListener('submit', (event) => {
    const input = form.querySelector('input[type="file"]');
    if (!input.files || input.files.length === 0) return; // the server says what is missing
    event.preventDefault();
    const body = new FormData(form);
    const request = new XMLHttpRequest();
    request.open('POST', form.action);
    request.setRequestHeader('X-CSRF-Token', body.get('csrf_token'));
    request.responseType = 'document';
    progress.hidden = false;
    button.disabled = true;
    bar.value = 0;
    text.textContent = 'Sending the file: 0%';
    let said = 0;
    request.upload.addEventListener('progress', (e) => {
      if (!e.lengthComputable) return;
      const percent = Math.floor((e.loaded / e.total) * 100);
      bar.value = percent;
      // Read out every quarter, not every percent.
      if (percent >= said + 25 || percent === 100) {
        said = percent;
        text.textContent = `Sending the file: ${percent}%`;
      }
    });
    request.upload.addEventListener('load', () => {
      bar.removeAttribute('value'); // indeterminate while the records are checked
      text.textContent = 'File sent. Checking and applying its records…';
    });
    request.addEventListener('load', () => {
      if (request.status === 413) {
        progress.hidden = true;
        button.disabled = false;
        showProblem(form, 'The file is too large to upload here.');
        return;
      }
      const answered = new URL(request.responseURL, window.location.href);
      if (answered.pathname !== new URL(form.action, window.location.href).pathname) {
        // Applied: the answer redirected to the file's acknowledgement.
        window.location.assign(answered.href);
        return;
      }
      // Refused whole: the page again, with the reason. Show it as the server wrote it.
      const answer = request.response;
      const main = answer && answer.querySelector('#main-content');
      if (main) {
        document.title = answer.title;
        document.querySelector('#main-content').replaceWith(document.adoptNode(main));
        const summary = document.querySelector('.govuk-error-summary');
        if (summary) {
          summary.setAttribute('tabindex', '-1');
          summary.focus();
        }
        const again = document.querySelector('[data-upload-form]');
        if (again) startUpload(again);
      } else {
        showProblem(form, 'The file could not be sent. Try again.');
      }
    });
    request.addEventListener('error', () => {
      progress.hidden = true;
      button.disabled = false;
      showProblem(form, 'The file could not be sent: check your connection and try again.');
    });
    request.send(body);
  });
}

for (const form of document.querySelectorAll('[data-upload-form]')) startUpload(form);
