// Sign-up, sign-out, sign-in, invitations and API clients, as a person does them in Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, shot } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let app;
let browser;

before(async () => {
  app = await startApp();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

test('sign up, sign out, sign in again', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${app.base}/`);
  assert.match(page.url(), /\/login$/);
  await shot(page, '01-login');
  await page.getByRole('link', { name: 'Create your organization' }).click();

  // A mistake first: the page explains it and keeps what was typed.
  await page.getByLabel('Organization name').fill('Acme Corp');
  await page.getByLabel('Your name').fill('Ada Lovelace');
  await page.getByLabel('Work email').fill('ada@acme');
  await page.getByLabel('Password', { exact: false }).first().fill('short');
  await page.getByLabel('Password again').fill('short');
  await page.getByRole('button', { name: 'Create organization' }).click();
  await assert.doesNotReject(page.getByText('enter an email address').waitFor());
  assert.equal(await page.getByLabel('Organization name').inputValue(), 'Acme Corp');
  await shot(page, '02-signup-errors');

  await page.getByLabel('Work email').fill('ada@acme.example');
  await page.locator('#password').fill(PASSWORD);
  await page.getByLabel('Password again').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create organization' }).click();
  await page.waitForURL(/\/dashboard$/);
  await assert.doesNotReject(page.getByRole('heading', { name: 'Acme Corp' }).waitFor());
  assert.ok(await page.getByText('Super Administrator').isVisible());
  await shot(page, '03-dashboard');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/login$/);
  await page.goto(`${app.base}/dashboard`);
  assert.match(page.url(), /\/login\?next=%2Fdashboard$/);

  await page.getByLabel('Email').fill('ada@acme.example');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await assert.doesNotReject(page.getByText('The email or password is not right.').waitFor());
  await shot(page, '04-login-error');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/dashboard$/);
  await context.close();
});

test('invite a colleague who joins with the link; create and revoke an API client', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${app.base}/login`);
  await page.getByLabel('Email').fill('ada@acme.example');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/dashboard$/);

  await page.getByRole('link', { name: 'People', exact: true }).click();
  await page.getByLabel('Email').fill('grace@acme.example');
  await page.getByLabel('Name').fill('Grace Hopper');
  await page.getByLabel('Role').selectOption('connector_admin');
  await page.getByRole('button', { name: 'Invite' }).click();
  const link = await page.getByLabel('Invitation link').inputValue();
  assert.match(link, /\/invite\//);
  await shot(page, '05-people-invited');

  const guest = await browser.newContext();
  const gp = await guest.newPage();
  await gp.goto(link);
  await gp.locator('#password').fill(PASSWORD);
  await gp.getByLabel('Password again').fill(PASSWORD);
  await gp.getByRole('button', { name: 'Join' }).click();
  await gp.waitForURL(/\/dashboard$/);
  assert.ok(await gp.getByText('Connector Administrator').first().isVisible());
  assert.equal(await gp.getByRole('link', { name: 'People', exact: true }).count(), 0, 'no People link for a connector admin');
  await shot(gp, '06-invited-dashboard');
  await guest.close();

  await page.getByRole('link', { name: 'API clients', exact: true }).click();
  await assert.doesNotReject(page.getByText('No API clients yet').waitFor());
  await page.getByLabel('Name').fill('Status poller');
  await page.getByRole('button', { name: 'Create' }).click();
  const clientId = await page.getByLabel('Client ID').inputValue();
  const secret = await page.getByLabel('Client secret').inputValue();
  assert.match(secret, /^lks_/);
  await shot(page, '07-api-client-created');

  const token = await fetch(`${app.base}/api/v1/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret }),
  });
  assert.equal(token.status, 200);

  await page.goto(`${app.base}/settings/api-clients`);
  assert.equal(await page.getByLabel('Client secret').count(), 0, 'the secret is never shown again');
  await page.getByRole('button', { name: 'Revoke' }).click();
  await assert.doesNotReject(page.getByText('revoked; its tokens no longer work').waitFor());
  await shot(page, '08-api-client-revoked');
  const again = await fetch(`${app.base}/api/v1/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret }),
  });
  assert.equal(again.status, 401);
  await context.close();
});
