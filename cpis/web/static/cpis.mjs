// GOV.UK Frontend's components, and the NHS number checked as it is typed.
// Every page works without this: the server checks the number again.
import { initAll } from './govuk/js/govuk-frontend.min.js';
// The local authority's pages: the inbox's live updates, the upload's progress bar.
import './la.mjs';

document.body.classList.add('govuk-frontend-supported');
initAll();

// The Modulus 11 check (SPEC §2): weights 10..2 on the first nine digits.
function nhsNumberProblem(raw) {
  const digits = raw.replace(/[\s-]/g, '');
  if (digits === '') return 'Enter the NHS number';
  if (!/^\d+$/.test(digits)) return 'An NHS number has only digits';
  if (digits.length !== 10) return 'An NHS number has 10 digits';
  let total = 0;
  for (let i = 0; i < 9; i += 1) total += Number(digits[i]) * (10 - i);
  const check = 11 - (total % 11);
  const expected = check === 11 ? 0 : check;
  if (expected === 10 || expected !== Number(digits[9])) {
    return 'This is not a valid NHS number: check each digit';
  }
  return null;
}

for (const input of document.querySelectorAll('[data-nhs-number]')) {
  const group = input.closest('[data-nhs-number-group]');
  const message = group.querySelector('.govuk-error-message');
  // Read out when the judgement changes (an error message appearing is not, by itself).
  const status = input.form.querySelector('[data-nhs-number-status]');
  let said = null;
  const show = (problem) => {
    if (status && problem !== said) status.textContent = problem ?? '';
    said = problem;
    group.classList.toggle('govuk-form-group--error', Boolean(problem));
    input.classList.toggle('govuk-input--error', Boolean(problem));
    message.hidden = !problem;
    message.textContent = '';
    if (problem) {
      const hidden = document.createElement('span');
      hidden.className = 'govuk-visually-hidden';
      hidden.textContent = 'Error:';
      message.append(hidden, ` ${problem}`);
      input.setAttribute('aria-describedby', 'nhs-number-hint nhs-number-error');
    } else {
      input.setAttribute('aria-describedby', 'nhs-number-hint');
    }
  };
  // Judged once ten digits are in (or when the person leaves the field), not at
  // every keystroke: a half-typed number is not an error yet.
  input.addEventListener('input', () => {
    const digits = input.value.replace(/[\s-]/g, '');
    if (digits.length >= 10 || /[^\d\s-]/.test(input.value)) show(nhsNumberProblem(input.value));
    else show(null);
  });
  input.addEventListener('blur', () => {
    if (input.value.trim() !== '') show(nhsNumberProblem(input.value));
  });
}
