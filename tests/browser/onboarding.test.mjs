// Connector onboarding in Chromium against the simulated tenant: client secret and OAuth
// paths to a working connection, and every error path a customer can hit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, shot, simPatch } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
const SYNC_PERMISSIONS = [
  'Application.Read.All', 'AuditLog.Read.All', 'Directory.Read.All', 'Group.Read.All', 'GroupMember.Read.All',
  'MailboxSettings.Read', 'RoleAssignmentSchedule.Read.Directory', 'RoleEligibilitySchedule.Read.Directory',
  'RoleManagement.Read.All', 'RoleManagement.Read.Directory', 'RoleManagementAlert.Read.Directory',
  'RoleManagementPolicy.Read.AzureADGroup', 'RoleManagementPolicy.Read.Directory', 'ServicePrincipalEndpoint.Read.All',
  'User.Read.All', 'User.ReadBasic.All',
];
let demo;
let browser;
let page;

before(async () => {
  demo = await startDemo();
  assert.ok(demo.creds.clientSecret, 'the demo prints the simulated tenant credentials');
  browser = await launchBrowser();
  page = await (await browser.newContext()).newPage();
  await page.goto(`${demo.base}/signup`);
  await page.getByLabel('Organization name').fill('Acme Corp');
  await page.getByLabel('Your name').fill('Ada Lovelace');
  await page.getByLabel('Work email').fill('ada@acme.example');
  await page.locator('#password').fill(PASSWORD);
  await page.getByLabel('Password again').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create organization' }).click();
  await page.waitForURL(/\/dashboard$/);
});

after(async () => {
  await browser?.close();
  if (demo) {
    await demo.stop();
    assert.ok(!demo.logs().includes(demo.creds.clientSecret), 'the client secret never appears in a log line');
  }
});

async function addConnector(name) {
  // A fresh load: the previous page may be about to reload itself (its job finished).
  await page.goto(`${demo.base}/dashboard`);
  await page.getByRole('link', { name: 'Connectors', exact: true }).click();
  await page.getByRole('link', { name: 'Add connector' }).click();
  await page.getByLabel('Search the catalog').fill('microsoft');
  await page.getByRole('button', { name: 'Search' }).click();
  assert.ok(await page.getByText('Self-hosted connector').count() === 0, 'search narrows the catalog');
  await page.getByLabel('Search the catalog').fill('');
  await page.getByRole('button', { name: 'Search' }).click();
  assert.ok(await page.getByText('Self-hosted connector').isVisible(), 'self-hosted is listed too');
  await shot(page, '10-catalog');
  await page.locator('section.card', { hasText: 'Hosted by Latchkey' }).getByRole('link', { name: 'Add', exact: true }).click();
  await page.getByLabel('Connector name').fill(name);
  await page.locator('#attach-new').check();
  await page.getByLabel('Name of the new app').fill(`${name} app`);
  await shot(page, '11-add-connector');
  await page.getByRole('button', { name: 'Next' }).click();
  await page.waitForURL(/\/settings\?new=1$/);
  return page.url().match(/connectors\/([0-9a-f-]+)\/settings/)[1];
}

async function waitForReason(text, timeout = 30000) {
  await page.locator('#status-reason', { hasText: text }).waitFor({ timeout });
}

// Syncing → Connected: the connection test passed and the first sync finished.
async function waitForConnected() {
  await page.locator('#status-badge', { hasText: 'Connected' }).waitFor({ timeout: 60000 });
}

test('client secret: connected, then the error paths', async () => {
  const id = await addConnector('Contoso Entra');
  await shot(page, '12-settings-empty');
  await page.getByLabel('Client secret', { exact: true }).check();
  await page.getByLabel('Entra tenant ID').fill(demo.creds.tenantId);
  await page.getByLabel('Entra client ID').fill(demo.creds.clientId);
  await page.getByLabel('Entra client secret').fill(demo.creds.clientSecret);
  await page.getByLabel('Provisioning', { exact: true }).check();
  assert.equal(await page.getByLabel('Microsoft Graph domain').inputValue(), demo.sim, 'the demo prefills the simulated tenant');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(new RegExp(`/connectors/${id}\\?notice=testing$`));
  await waitForConnected();
  assert.ok((await page.content()).indexOf(demo.creds.clientSecret) < 0, 'the secret is never shown');
  assert.ok(await page.getByText('Set on').isVisible(), 'the page says a secret is set');
  await shot(page, '13-connected');

  // The settings page never shows the secret either.
  await page.getByRole('link', { name: 'Edit settings' }).click();
  assert.equal(await page.getByLabel('Entra client secret').inputValue(), '');
  assert.ok((await page.content()).indexOf(demo.creds.clientSecret) < 0);

  // Wrong secret.
  await page.getByLabel('Entra client secret').fill('this-is-not-the-secret');
  await page.getByRole('button', { name: 'Save' }).click();
  await waitForReason('AADSTS7000215');
  assert.equal(await page.locator('#status-badge').textContent(), 'Error');
  await shot(page, '14-wrong-secret');

  // Expired secret.
  await page.getByRole('link', { name: 'Edit settings' }).click();
  await page.getByLabel('Entra client secret').fill(demo.creds.clientSecret);
  await simPatch(demo.sim, 'faults', { expired_secret: true });
  await page.getByRole('button', { name: 'Save' }).click();
  await waitForReason('The client secret has expired (AADSTS7000222)');
  await shot(page, '15-expired-secret');
  await simPatch(demo.sim, 'faults', { expired_secret: false });

  // A permission missing for provisioning.
  await simPatch(demo.sim, 'consent', { granted_permissions: SYNC_PERMISSIONS });
  await page.getByRole('button', { name: 'Test connection' }).click();
  await waitForReason('Missing permission');
  // The page reloads itself when the test finishes, showing the permissions table.
  await page.getByText('Missing', { exact: true }).first().waitFor();
  await shot(page, '16-missing-permission');
  await simPatch(demo.sim, 'consent', { granted_permissions: [...SYNC_PERMISSIONS, 'Application.ReadWrite.All', 'AppRoleAssignment.ReadWrite.All',
    'Directory.ReadWrite.All', 'Group.ReadWrite.All', 'GroupMember.ReadWrite.All', 'MailboxSettings.ReadWrite', 'RoleManagement.ReadWrite.Directory',
    'ServicePrincipalEndpoint.ReadWrite.All', 'Synchronization.ReadWrite.All', 'User.ReadWrite.All'] });
  await page.getByRole('button', { name: 'Test connection' }).click();
  await waitForConnected();
});

test('OAuth: consent, then declined and wrong-tenant consents', async () => {
  const id = await addConnector('Contoso via OAuth');
  await page.getByLabel('OAuth').check();
  await page.getByLabel('Entra tenant ID').fill(demo.creds.tenantId);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(new RegExp(`/connectors/${id}/consent$`));
  await shot(page, '20-consent');

  // Declined first.
  await simPatch(demo.sim, 'consent', { outcome: 'deny' });
  await page.getByRole('button', { name: 'Login with Microsoft' }).click();
  await page.getByText('Consent was declined').waitFor();
  await shot(page, '21-consent-declined');

  // Consent given in another tenant.
  await simPatch(demo.sim, 'consent', { outcome: 'wrong_tenant' });
  await page.getByRole('link', { name: 'Try again' }).click();
  await page.getByRole('button', { name: 'Login with Microsoft' }).click();
  await page.getByText('but this connector is for tenant').waitFor();
  await shot(page, '22-consent-wrong-tenant');

  // A replayed callback is refused.
  const replay = page.url();
  await page.goto(replay);
  await page.getByText('already used').waitFor();

  // Granted.
  await simPatch(demo.sim, 'consent', { outcome: 'grant' });
  await page.goto(`${demo.base}/connectors/${id}/consent`);
  await page.getByRole('button', { name: 'Login with Microsoft' }).click();
  await page.waitForURL(new RegExp(`/connectors/${id}\\?notice=consented$`));
  await waitForConnected();
  await shot(page, '23-oauth-connected');

  // The list shows both connectors with their status.
  await page.getByRole('link', { name: 'Connectors', exact: true }).click();
  assert.equal(await page.getByRole('link', { name: 'Contoso via OAuth' }).count(), 1);
  await shot(page, '24-connector-list');
});
