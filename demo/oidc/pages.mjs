// The pages a person sees at the demo provider: the sign-in form, sign-out,
// errors and a landing page. oidc-provider's own development pages are not used:
// axe-core finds WCAG 2.2 AA violations on them (no lang on <html>; the button,
// the Cancel link and the debug toggle fail colour contrast), their fields are
// labelled by placeholders alone, they take any password, and they fetch a web
// font from Google. tests/browser holds these pages to WCAG 2.2 AA with axe-core.
//
// No scripts; one inline style sheet, allowed by its hash in the CSP.

import { createHash } from 'node:crypto';

const CSS = `
*,*::before,*::after{box-sizing:border-box}
body{margin:0;font-family:Arial,Helvetica,sans-serif;font-size:19px;line-height:1.32;color:#0b0c0c;background:#fff}
.width{max-width:960px;margin:0 15px}
@media (min-width:1020px){.width{margin:0 auto}}
.skip{position:absolute;left:-9999px}
.visually-hidden{position:absolute!important;width:1px;height:1px;margin:0;padding:0;overflow:hidden;clip:rect(0 0 0 0);border:0;white-space:nowrap}
.skip:focus{position:static;display:block;padding:10px 15px;background:#fd0;color:#0b0c0c}
header{background:#0b0c0c;color:#fff;padding:12px 0;border-bottom:10px solid #1d70b8}
header .brand{font-weight:700;font-size:24px}
.tag{display:inline-block;margin-left:10px;padding:2px 8px;background:#fff;color:#0b0c0c;font-size:16px;font-weight:700;letter-spacing:1px;vertical-align:middle}
main{padding:30px 0 40px}
h1{font-size:36px;line-height:1.1;margin:0 0 20px}
h2{font-size:24px;margin:40px 0 15px}
p{margin:0 0 20px}
a{color:#1d70b8;text-decoration:underline;text-underline-offset:.1em}
a:visited{color:#4c2c92}
a:focus{outline:3px solid transparent;color:#0b0c0c;background:#fd0;box-shadow:0 -2px #fd0,0 4px #0b0c0c;text-decoration:none}
.field{margin-bottom:30px}
label{display:block;font-weight:700;margin-bottom:5px}
input[type=text],input[type=password]{display:block;width:100%;max-width:20em;height:2.1em;padding:5px;font:inherit;border:2px solid #0b0c0c;border-radius:0}
input:focus{outline:3px solid #fd0;outline-offset:0;box-shadow:inset 0 0 0 2px}
.field-error{border-left:5px solid #d4351c;padding-left:15px}
.field-error input{border-color:#d4351c}
.error-message{display:block;color:#d4351c;font-weight:700;margin-bottom:10px}
.button{display:inline-block;min-height:44px;margin:0 15px 20px 0;padding:8px 16px;font:inherit;color:#fff;background:#00703c;border:2px solid transparent;border-radius:0;box-shadow:0 2px 0 #002d18;cursor:pointer}
.button:hover{background:#005a30}
.button:focus{outline:3px solid transparent;color:#0b0c0c;background:#fd0;box-shadow:0 2px 0 #0b0c0c}
.button.secondary{color:#0b0c0c;background:#f3f2f1;box-shadow:0 2px 0 #929191}
.button.secondary:focus{background:#fd0}
.error-summary{padding:15px;margin-bottom:30px;border:5px solid #d4351c}
.error-summary:focus{outline:3px solid #fd0}
.error-summary h2{margin-top:0}
.error-summary ul{margin:0;padding:0;list-style:none}
.error-summary a{color:#d4351c;font-weight:700}
table{border-collapse:collapse;width:100%;margin-bottom:20px}
th,td{text-align:left;padding:10px 20px 10px 0;border-bottom:1px solid #b1b4b6;vertical-align:top}
code{font-family:"Courier New",monospace;font-size:0.95em}
dd code,dd a{overflow-wrap:anywhere}
td code{white-space:nowrap}
dl{margin:0 0 20px}dt{font-weight:700}dd{margin:0 0 10px}
footer{border-top:1px solid #b1b4b6;padding:20px 0;font-size:16px}
`;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(CSS).digest('base64')}'`,
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escape(value) {
  return String(value ?? '').replace(/[&<>"']/g, (char) => ESCAPES[char]);
}

export function layout({ title, body, error = false }) {
  const fullTitle = `${error ? 'Error: ' : ''}${title} – Demo identity provider`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>${escape(fullTitle)}</title>
<style>${CSS}</style>
</head>
<body>
<a class="skip" href="#main">Skip to main content</a>
<header>
  <div class="width"><span class="brand">Demo identity provider</span><span class="tag">DEMO</span></div>
</header>
<div class="width">
<main id="main">
${body}
</main>
</div>
<footer>
  <div class="width">Every person and organisation here is made up. This provider exists only for the
  CP-IS demonstration and its tests; it is not an NHS or council sign-in.</div>
</footer>
</body>
</html>`;
}

function accountsTable(accounts, password) {
  const rows = accounts
    .map((a) => `<tr><td><code>${escape(a.login)}</code></td><td>${escape(a.summary)}</td></tr>`)
    .join('\n');
  return `<table>
<caption class="visually-hidden">Demo accounts</caption>
<thead><tr><th scope="col">Username</th><th scope="col">Who</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<p>The password of every demo account is <code>${escape(password)}</code>.</p>`;
}

export function loginPage({ action, abortUrl, clientName, accounts, password, username = '', failed = false }) {
  const summary = failed
    ? `<div class="error-summary" role="alert" aria-labelledby="error-summary-title" tabindex="-1">
  <h2 id="error-summary-title">There is a problem</h2>
  <ul><li><a href="#username">Enter a demo username and its password</a></li></ul>
</div>`
    : '';
  const fieldClass = failed ? 'field field-error' : 'field';
  const invalid = failed ? ' aria-invalid="true" aria-describedby="credentials-error"' : '';
  const message = failed
    ? '<p id="credentials-error" class="error-message"><span class="visually-hidden">Error:</span> The username or password is not right</p>'
    : '';
  return layout({
    title: 'Sign in',
    error: failed,
    body: `${summary}
<h1>Sign in</h1>
<p>to continue to <strong>${escape(clientName)}</strong>.</p>
<form method="post" action="${escape(action)}" novalidate>
  ${message}
  <div class="${fieldClass}">
    <label for="username">Username</label>
    <input id="username" name="username" type="text" autocomplete="username" spellcheck="false" autocapitalize="none" value="${escape(username)}"${invalid}>
  </div>
  <div class="${fieldClass}">
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password"${invalid}>
  </div>
  <button class="button" type="submit">Sign in</button>
</form>
<p><a href="${escape(abortUrl)}">Cancel and go back to ${escape(clientName)}</a></p>
<h2>Demo accounts</h2>
${accountsTable(accounts, password)}`,
  });
}

export function landingPage({ issuer, accounts, password }) {
  return layout({
    title: 'Demo identity provider',
    body: `<h1>Demo identity provider</h1>
<p>An OpenID Connect provider for the CP-IS demo: the service's web pages send you here to sign in,
as they would send you to your council's or the NHS's own sign-in.</p>
<dl>
  <dt>Issuer</dt><dd><code>${escape(issuer)}</code></dd>
  <dt>Discovery document</dt><dd><a href="${escape(`${issuer}/.well-known/openid-configuration`)}">${escape(`${issuer}/.well-known/openid-configuration`)}</a></dd>
</dl>
<h2>Demo accounts</h2>
${accountsTable(accounts, password)}`,
  });
}

export function logoutPage({ form, clientName }) {
  const from = clientName ? ` of ${escape(clientName)} and` : '';
  return layout({
    title: 'Sign out',
    body: `<h1>Sign out</h1>
<p>Do you want to sign out${from} of the demo identity provider?</p>
${form}
<button class="button" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign out</button>
<button class="button secondary" type="submit" form="op.logoutForm">No, stay signed in</button>`,
  });
}

export function loggedOutPage({ clientName }) {
  const from = clientName ? ` of ${escape(clientName)} and` : '';
  return layout({
    title: 'You have signed out',
    body: `<h1>You have signed out</h1>
<p>You have signed out${from} of the demo identity provider. You can close this page.</p>`,
  });
}

export function errorPage({ error, description }) {
  return layout({
    title: 'Sign-in problem',
    error: true,
    body: `<h1>Sorry, there is a problem with this sign-in</h1>
<p>${escape(description || 'The sign-in request could not be completed.')}</p>
<dl><dt>Error code</dt><dd><code>${escape(error)}</code></dd></dl>
<p>Go back to the service you came from and start again.</p>`,
  });
}

export function notFoundPage() {
  return layout({
    title: 'Page not found',
    error: true,
    body: '<h1>Page not found</h1><p>There is nothing at this address of the demo identity provider.</p>',
  });
}
