// Starts a real `latchkey serve` on a fresh database and a headless Debian chromium.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
export const artifacts = path.join(here, 'artifacts');
mkdirSync(artifacts, { recursive: true });

const bin = process.env.LATCHKEY_BIN ?? path.join(root, 'target/debug/latchkey');
const pgServer = process.env.LATCHKEY_BROWSER_PG ?? 'postgres://postgres@127.0.0.1:5432';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

async function waitReady(url, ms = 30000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not become ready`);
}

/** Starts the app; returns { base, run(args), stop() }. */
export async function startApp() {
  const port = await freePort();
  const db = `lk_test_browser_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const env = {
    ...process.env,
    DATABASE_URL: `${pgServer}/${db}`,
    LATCHKEY_LISTEN: `127.0.0.1:${port}`,
    LATCHKEY_MASTER_KEYS: execFileSync(bin, ['keys', 'generate'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim(),
    RUST_LOG: 'warn',
  };
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/readyz`);
  return {
    base,
    /** Runs another latchkey command against the same database; returns stdout. */
    run: (args) => execFileSync(bin, args, { env }).toString(),
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('exit', r));
    },
  };
}

/**
 * Starts `latchkey demo` (web + worker + simulated tenant in one process) on a fresh
 * database (`env` adds or overrides variables, e.g. LATCHKEY_ACCESS_*); returns { base, sim, creds, stop() } where `sim` is the simulated tenant's URL.
 */
export async function startDemo({ env: extraEnv = {} } = {}) {
  const port = await freePort();
  const simPort = await freePort();
  const db = `lk_test_browser_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const env = {
    ...process.env,
    DATABASE_URL: `${pgServer}/${db}`,
    LATCHKEY_LISTEN: `127.0.0.1:${port}`,
    LATCHKEY_DEMO_SIM_PORT: String(simPort),
    LATCHKEY_MASTER_KEYS: execFileSync(bin, ['keys', 'generate'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim(),
    RUST_LOG: 'info',
    LATCHKEY_LOG_FORMAT: 'json',
    ...extraEnv,
  };
  const child = spawn(bin, ['demo'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let logs = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { logs += d; });
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/readyz`);
  const pick = (label) => (out.match(new RegExp(`${label}:\\s+(\\S+)`)) || [])[1];
  const creds = { tenantId: pick('Entra tenant ID'), clientId: pick('Entra client ID'), clientSecret: pick('Entra client secret') };
  const sim = `http://127.0.0.1:${simPort}`;
  return {
    base,
    sim,
    creds,
    logs: () => logs,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('exit', r));
    },
  };
}

/** Changes the simulated tenant at run time (faults, consent outcome, granted permissions). */
export async function simPatch(sim, what, body) {
  const r = await fetch(`${sim}/_sim/${what}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`PATCH /_sim/${what}: ${r.status} ${await r.text()}`);
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

/** The simulated tenant's users (ground truth): [{ id, user_principal_name, display_name, account_enabled, user_type, ... }]. */
export async function simUsers(sim) {
  const r = await fetch(`${sim}/_sim/truth/users`);
  if (!r.ok) throw new Error(`GET /_sim/truth/users: ${r.status}`);
  return (await r.json()).value;
}

/**
 * "Sign in with Microsoft" on the simulated tenant as `upn`: Latchkey's login page → the
 * tenant's sign-in page (username, Next) → back to Latchkey. When several organizations
 * connected the tenant, `org` names the one to choose. Use a page whose context is not signed
 * in yet (a new context per person). Resolves on the page Latchkey lands on: `next` (default
 * /dashboard) when signed in, or the refusal page (its message is `#signin-error`); with
 * `expectRefusal: true` it resolves with that message instead of throwing.
 */
export async function signInWithMicrosoft(page, baseUrl, upn, { org, next, expectRefusal = false } = {}) {
  await page.goto(`${baseUrl}/login${next ? `?next=${encodeURIComponent(next)}` : ''}`);
  await page.getByRole('button', { name: 'Sign in with Microsoft' }).click();
  await page.locator('#i0116').fill(upn);
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(baseUrl)),
    page.locator('#idSIButton9').click(),
  ]);
  if (await page.getByRole('heading', { name: 'Choose your organization' }).count() > 0) {
    if (!org) throw new Error('several organizations connected this tenant: pass { org } to choose one');
    await Promise.all([
      page.waitForURL((u) => u.pathname !== '/auth/microsoft/callback'),
      page.getByRole('button', { name: org, exact: true }).click(),
    ]);
  }
  const refusal = page.locator('#signin-error');
  if (await refusal.count() > 0) {
    const message = (await refusal.textContent()).trim();
    if (expectRefusal) return message;
    throw new Error(`Sign in with Microsoft was refused: ${message}`);
  }
  if (expectRefusal) throw new Error(`expected a refusal, but landed on ${page.url()}`);
  return page.url();
}
