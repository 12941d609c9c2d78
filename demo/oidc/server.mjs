// The demo OpenID provider: oidc-provider (a certified OpenID Connect
// implementation) with three synthetic people, for `make run` and the tests.
// demo/oidc/README.md says how to run and configure it.
//
// It listens on 127.0.0.1 only, keeps everything in memory (a restart forgets
// every session and makes a new signing key), and exits when its parent does.

import { generateKeyPairSync, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Provider, errors } from 'oidc-provider';

import { ACCOUNTS, DEFAULT_PASSWORD, SCOPE_CLAIMS, findByLogin, findBySub } from './accounts.mjs';
import * as pages from './pages.mjs';

const HOST = '127.0.0.1';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAX_FORM_BYTES = 8 * 1024;

class ConfigError extends Error {}

function readConfig(env) {
  const port = Number(env.DEMO_OIDC_PORT ?? 8090);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`DEMO_OIDC_PORT must be a port number (0 for any free one), not ${env.DEMO_OIDC_PORT}`);
  }
  let clients;
  let source;
  try {
    if (env.DEMO_OIDC_CLIENTS) {
      source = 'DEMO_OIDC_CLIENTS';
      clients = JSON.parse(env.DEMO_OIDC_CLIENTS);
    } else {
      source = env.DEMO_OIDC_CLIENTS_FILE || path.join(HERE, 'clients.json');
      clients = JSON.parse(readFileSync(source, 'utf8'));
    }
  } catch (err) {
    throw new ConfigError(`cannot read the clients from ${source}: ${err.message}`);
  }
  if (clients && !Array.isArray(clients)) clients = clients.clients;
  if (!Array.isArray(clients)) {
    throw new ConfigError(`${source} must hold a JSON array of client metadata (or {"clients": [...]})`);
  }
  return {
    port,
    issuerTemplate: env.DEMO_OIDC_ISSUER || 'http://127.0.0.1:{port}',
    password: env.DEMO_OIDC_PASSWORD || DEFAULT_PASSWORD,
    clients,
    clientsSource: source,
  };
}

function issuerFor(template, port) {
  const issuer = new URL(template.replaceAll('{port}', String(port)));
  if (issuer.search || issuer.hash) throw new ConfigError('DEMO_OIDC_ISSUER must have no query or fragment');
  return issuer.href.replace(/\/+$/, '');
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = createHash('sha256').update(jwk.n).digest('base64url').slice(0, 16);
  return { ...jwk, kid, use: 'sig', alg: 'RS256' };
}

function log(fields) {
  process.stderr.write(`${JSON.stringify(fields)}\n`);
}

function clientName(client) {
  return client?.clientName || client?.clientId || 'the service';
}

function sameSecret(given, expected) {
  const a = createHash('sha256').update(String(given ?? '')).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': pages.CONTENT_SECURITY_POLICY,
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
  });
  res.end(html);
}

function setPageHeaders(ctx) {
  ctx.type = 'html';
  ctx.set('cache-control', 'no-store');
  ctx.set('content-security-policy', pages.CONTENT_SECURITY_POLICY);
  ctx.set('referrer-policy', 'no-referrer');
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new ConfigError('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function makeProvider(issuer, prefix, config) {
  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: SCOPE_CLAIMS,
    scopes: ['openid', 'offline_access', ...Object.keys(SCOPE_CLAIMS)],
    // Scope claims go in the ID token too, not only at userinfo: LA providers
    // put their roles there, and the service reads the ID token.
    conformIdTokenClaims: false,
    acrValues: ['AAL3_ANY'],
    responseTypes: ['code'],
    async findAccount(_ctx, sub) {
      const account = findBySub(sub);
      if (!account) return undefined;
      return { accountId: sub, async claims() { return structuredClone(account.claims); } };
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          setPageHeaders(ctx);
          ctx.body = pages.logoutPage({ form, clientName: ctx.oidc.client && clientName(ctx.oidc.client) });
        },
        async postLogoutSuccessSource(ctx) {
          setPageHeaders(ctx);
          ctx.body = pages.loggedOutPage({ clientName: ctx.oidc.client && clientName(ctx.oidc.client) });
        },
      },
    },
    interactions: { url: (_ctx, interaction) => `${prefix}/interaction/${interaction.uid}` },
    // PKCE (S256, the only method oidc-provider 9 offers) for every client, public or not.
    pkce: { required: () => true },
    async renderError(ctx, out) {
      setPageHeaders(ctx);
      ctx.body = pages.errorPage({ error: out.error, description: out.error_description });
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Grant: 8 * 3600,
      Session: 8 * 3600,
      RefreshToken: 8 * 3600,
    },
  });
  // oidc-provider 9 has no catch-all 404 of its own: a stray address gets our page.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.status === 404 && !ctx.body) {
      setPageHeaders(ctx);
      ctx.status = 404;
      ctx.body = pages.notFoundPage();
    }
  });
  for (const event of ['authorization.error', 'grant.error', 'end_session.error', 'userinfo.error']) {
    provider.on(event, (_ctx, err) => log({ event: 'oidc_error', where: event, error: err.error, description: err.error_description }));
  }
  provider.on('server_error', (_ctx, err) => log({ event: 'oidc_server_error', error: String(err?.stack ?? err) }));
  return provider;
}

// The interaction pages: the sign-in form, and consent given at once (every
// registered client is first party, as the service is to an LA's provider).
async function interaction(provider, prefix, config, req, res, action) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  const client = await provider.Client.find(params.client_id);
  const base = `${prefix}/interaction/${uid}`;
  if (req.method === 'GET' && action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'The person cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'consent' && req.method === 'GET' && !action) {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }
  if (prompt.name !== 'login') {
    return sendHtml(res, 400, pages.errorPage({ error: 'interaction_required', description: `This provider cannot ask for "${prompt.name}".` }));
  }
  const page = (fields) => pages.loginPage({
    action: `${base}/login`,
    abortUrl: `${base}/abort`,
    clientName: clientName(client),
    accounts: ACCOUNTS,
    password: config.password,
    ...fields,
  });
  if (req.method === 'GET' && !action) return sendHtml(res, 200, page({}));
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const account = findByLogin(form.get('username'));
    // Both compared every time, so a wrong username takes as long as a wrong password.
    const passwordOk = sameSecret(form.get('password'), config.password);
    if (!account || !passwordOk) {
      log({ event: 'sign_in_refused', client: params.client_id });
      return sendHtml(res, 200, page({ username: form.get('username') ?? '', failed: true }));
    }
    log({ event: 'signed_in', login: account.login, client: params.client_id });
    return provider.interactionFinished(req, res, {
      login: { accountId: account.claims.sub, acr: account.acr, amr: account.amr, remember: false },
    }, { mergeWithLastSubmission: false });
  }
  res.writeHead(405, { allow: 'GET, POST' });
  return res.end();
}

function handler(state) {
  return async (req, res) => {
    const { provider, prefix, config, issuer } = state;
    if (!provider) {
      res.writeHead(503);
      return res.end();
    }
    const { pathname } = new URL(req.url, 'http://demo.invalid');
    try {
      if ((pathname === prefix || pathname === `${prefix}/`) && req.method === 'GET') {
        return sendHtml(res, 200, pages.landingPage({ issuer, accounts: ACCOUNTS, password: config.password }));
      }
      const interactionPath = pathname.match(new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/interaction/([^/]+)(?:/(login|abort))?$`));
      if (interactionPath) {
        return await interaction(provider, prefix, config, req, res, interactionPath[2]);
      }
      if (prefix && !pathname.startsWith(`${prefix}/`)) {
        return sendHtml(res, 404, pages.notFoundPage());
      }
      // Mounted under the issuer's path, as a connect app would mount it.
      req.originalUrl = req.url;
      req.url = req.url.slice(prefix.length) || '/';
      return provider.callback()(req, res);
    } catch (err) {
      if (err instanceof errors.SessionNotFound) {
        return sendHtml(res, 400, pages.errorPage({
          error: 'session_not_found',
          description: 'This sign-in has expired or has already been used.',
        }));
      }
      if (err instanceof ConfigError) {
        res.writeHead(413);
        return res.end();
      }
      log({ event: 'demo_oidc_error', error: String(err?.stack ?? err) });
      if (!res.headersSent) sendHtml(res, 500, pages.errorPage({ error: 'server_error', description: 'Something went wrong.' }));
      return undefined;
    }
  };
}

function banner(issuer, config) {
  const lines = [
    `Demo OpenID provider (oidc-provider) at ${issuer}`,
    `  discovery: ${issuer}/.well-known/openid-configuration`,
    `  clients from ${config.clientsSource}: ${config.clients.map((c) => c.client_id).join(', ') || 'none'}`,
    `  sign in as (every password is "${config.password}"):`,
    ...ACCOUNTS.map((a) => `    ${a.login.padEnd(14)} ${a.summary}`),
  ];
  return lines.join('\n');
}

function main() {
  let config;
  try {
    config = readConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`demo-oidc: ${err.message}\n`);
    process.exit(2);
  }
  const state = { provider: undefined, prefix: '', config, issuer: undefined };
  const server = http.createServer(handler(state));
  const stop = (reason) => {
    log({ event: 'demo_oidc_stopping', reason });
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => stop(signal));
  // A parent that dies without stopping us (SIGKILL, a crashed test run) leaves
  // us re-parented: notice, and go too.
  const parent = process.ppid;
  setInterval(() => { if (process.ppid !== parent) stop('parent_exited'); }, 500).unref();
  server.on('error', (err) => {
    process.stderr.write(`demo-oidc: cannot listen on ${HOST}:${config.port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(config.port, HOST, () => {
    const { port } = server.address();
    try {
      state.issuer = issuerFor(config.issuerTemplate, port);
      state.prefix = new URL(state.issuer).pathname.replace(/\/+$/, '');
      state.provider = makeProvider(state.issuer, state.prefix, config);
    } catch (err) {
      process.stderr.write(`demo-oidc: ${err.message}\n`);
      process.exit(2);
    }
    // One line for programs (tests/oidc_provider.py reads it), then the banner for people.
    const accounts = ACCOUNTS.map((a) => ({
      login: a.login, sub: a.claims.sub, name: a.claims.name, role: a.role, kind: a.kind, org_code: a.orgCode,
    }));
    process.stdout.write(`${JSON.stringify({
      event: 'demo_oidc_ready', issuer: state.issuer, port, password: config.password, accounts,
    })}\n`);
    process.stdout.write(`${banner(state.issuer, config)}\n`);
  });
}

main();
