// Adding a self-hosted connector in Chromium: catalog → app and owners → Settings > Rotate
// (the secret is shown once), and the connector page's online status.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, shot } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let app;
let browser;
let page;

before(async () => {
  app = await startApp();
  browser = await launchBrowser();
  page = await (await browser.newContext()).newPage();
  await page.goto(`${app.base}/signup`);
  await page.getByLabel('Organization name').fill('Contoso');
  await page.getByLabel('Your name').fill('Grace Hopper');
  await page.getByLabel('Work email').fill('grace@contoso.example');
  await page.locator('#password').fill(PASSWORD);
  await page.getByLabel('Password again').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create organization' }).click();
  await page.waitForURL(/\/dashboard$/);
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

test('add a self-hosted connector, rotate its credentials, see it offline', async () => {
  await page.goto(`${app.base}/connectors/new`);
  const card = page.locator('section.card', { hasText: 'Self-hosted connector' });
  await card.getByRole('link', { name: 'Add', exact: true }).click();
  await page.waitForURL(/\/connectors\/new\/self-hosted$/);
  await page.getByLabel('Connector name').fill('Contoso (on-premises)');
  await page.locator('#attach-new').check();
  await page.getByLabel('Name of the new app').fill('Entra ID');
  await page.getByRole('button', { name: 'Next' }).click();
  await page.waitForURL(/\/self-hosted\?new=1$/);
  // The settings page itself (Rotate posts to .../self-hosted/rotate and answers with the page).
  const settings = new URL(page.url());
  settings.search = '';
  assert.match(settings.pathname, /^\/connectors\/[0-9a-f-]+\/self-hosted$/);
  assert.ok(await page.getByText('No credentials yet').isVisible());

  await page.getByRole('button', { name: 'Rotate' }).click();
  const id = await page.getByLabel('Client ID').inputValue();
  const secret = await page.getByLabel('Client secret').inputValue();
  assert.match(id, /^lkac_/);
  assert.match(secret, /^lkas_/);
  await shot(page, '60-self-hosted-rotated');
  // The new credentials work at the connector token endpoint.
  const token = await fetch(`${app.base}/api/v1/connector-agent/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: id, client_secret: secret }),
  });
  assert.equal(token.status, 200);

  // Shown once: opening the settings page again (a GET: reloading the answer to the Rotate
  // POST could send the POST again and rotate anew) lists the client ID, never the secret.
  await page.goto(settings.href);
  assert.equal(new URL(page.url()).pathname, settings.pathname);
  assert.ok(await page.getByRole('cell', { name: id }).isVisible());
  assert.equal(await page.locator('tbody tr').count(), 1, 'no second rotation happened');
  assert.equal(await page.getByRole('heading', { name: 'New credentials' }).count(), 0);
  assert.equal(await page.getByLabel('Client secret').count(), 0);
  assert.equal(await page.getByText(secret).count(), 0);
  assert.ok(!(await page.content()).includes(secret));

  // Rotating again: the old client ID is listed with the end of its grace period.
  await page.getByRole('button', { name: 'Rotate' }).click();
  assert.ok(await page.getByText('The previous credentials keep working until').isVisible());
  assert.ok(await page.getByRole('cell', { name: id }).isVisible());

  // The connector page: offline until it heartbeats; Settings leads to the credentials.
  await page.getByRole('link', { name: /← Contoso/ }).click();
  assert.ok(await page.getByRole('heading', { name: 'Self-hosted connector' }).isVisible());
  assert.ok(await page.getByText('Offline').isVisible());
  await shot(page, '61-self-hosted-connector');
  await page.getByRole('link', { name: 'Edit settings' }).click();
  await page.waitForURL(/\/self-hosted$/);
});
