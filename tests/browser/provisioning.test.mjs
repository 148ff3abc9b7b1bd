// Provisioning in Chromium against the simulated tenant (latchkey demo: web + worker + tenant):
// grant access from an application's Entitlements tab and watch the task list show it
// verified; create an account, reveal its password once, and see it cannot be shown again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, shot } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let demo;
let browser;
let page;
let connector;
let appUrl;

const sim = async (path) => (await fetch(`${demo.sim}${path}`)).json();

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  const context = await browser.newContext();
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: demo.base });
  page = await context.newPage();
  await page.goto(`${demo.base}/signup`);
  await page.getByLabel('Organization name').fill('Acme Corp');
  await page.getByLabel('Your name').fill('Ada Lovelace');
  await page.getByLabel('Work email').fill('ada@acme.example');
  await page.locator('#password').fill(PASSWORD);
  await page.getByLabel('Password again').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create organization' }).click();
  await page.waitForURL(/\/dashboard$/);

  // A connector with provisioning on, connected and synced.
  await page.goto(`${demo.base}/connectors/new/entra`);
  await page.getByLabel('Connector name').fill('Contoso Entra');
  await page.locator('#attach-new').check();
  await page.getByLabel('Name of the new app').fill('Contoso');
  await page.getByRole('button', { name: 'Next' }).click();
  await page.waitForURL(/\/settings\?new=1$/);
  connector = page.url().match(/connectors\/([0-9a-f-]+)\/settings/)[1];
  await page.getByLabel('Client secret', { exact: true }).check();
  await page.getByLabel('Entra tenant ID').fill(demo.creds.tenantId);
  await page.getByLabel('Entra client ID').fill(demo.creds.clientId);
  await page.getByLabel('Entra client secret').fill(demo.creds.clientSecret);
  await page.getByLabel('Provisioning', { exact: true }).check();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#status-badge', { hasText: 'Connected' }).waitFor({ timeout: 90000 });
  await page.goto(`${demo.base}/apps`);
  await page.getByRole('link', { name: 'Contoso', exact: true }).click();
  appUrl = page.url().split('?')[0];
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

/** Reloads the task page until the task is final; returns its status. */
async function taskOutcome() {
  const deadline = Date.now() + 60000;
  for (;;) {
    const status = (await page.locator('#task-status').textContent()).trim();
    if (status === 'succeeded' || status === 'failed' || Date.now() > deadline) return status;
    await page.waitForTimeout(500);
    await page.reload();
  }
}

test('grant from the Entitlements tab: the task list shows it verified', async () => {
  const groups = (await sim('/_sim/truth/groups')).value;
  const group = groups.find((g) => g.kind === 'security');
  const members = (await sim(`/_sim/truth/groups/${group.id}`)).members.map((m) => m.id);
  const user = (await sim('/_sim/truth/users')).value.find((u) => u.user_type === 'Member' && !members.includes(u.id));

  await page.goto(`${appUrl}?tab=entitlements`);
  await page.locator('#q').fill(group.display_name);
  await page.getByRole('button', { name: 'Filter' }).click();
  await shot(page, '60-entitlements-tab');
  const row = page.locator('tr', { has: page.locator('code', { hasText: /^members$/ }) }).first();
  await row.getByRole('link', { name: /^Grant or revoke/ }).click();
  const entitlementUrl = page.url().split('#')[0].split('?')[0];
  await page.getByLabel('Find a user, group or service principal').fill(user.user_principal_name);
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await shot(page, '61-grant-search');
  await page.getByRole('button', { name: `Grant to ${user.display_name}` }).click();
  await page.waitForURL(new RegExp(`/connectors/${connector}/tasks/[0-9a-f-]+$`));
  assert.equal(await taskOutcome(), 'succeeded');
  await shot(page, '62-grant-task');
  assert.ok(await page.getByRole('cell', { name: 'verified', exact: true }).isVisible(), 'the trail shows the read-back');
  const now = (await sim(`/_sim/truth/groups/${group.id}`)).members.map((m) => m.id);
  assert.ok(now.includes(user.id), 'the user is a member in the tenant');

  await page.getByRole('link', { name: '← Provisioning tasks' }).click();
  const first = page.locator('tbody tr').first();
  assert.equal((await first.locator('.badge').textContent()).trim(), 'succeeded');
  assert.ok((await first.textContent()).includes('Grant'));
  assert.ok((await first.textContent()).includes('ada@acme.example'), 'who asked');
  await shot(page, '63-task-list');

  // Revoke from the entitlement page.
  await page.goto(`${entitlementUrl}?q=${encodeURIComponent(user.display_name)}`);
  await page.getByRole('button', { name: `Revoke from ${user.display_name}` }).click();
  assert.equal(await taskOutcome(), 'succeeded');
  const after = (await sim(`/_sim/truth/groups/${group.id}`)).members.map((m) => m.id);
  assert.ok(!after.includes(user.id), 'the membership is gone from the tenant');
});

test('create an account, reveal its password once, then it is gone', async () => {
  const { domain } = await sim('/_sim/info');
  await page.goto(`${appUrl}?tab=accounts`);
  await page.getByRole('link', { name: 'Create account' }).click();
  // Validation stays on the form.
  await page.getByLabel('User principal name').fill('not-an-upn');
  await page.getByRole('button', { name: 'Create account' }).click();
  assert.ok(await page.locator('#user_principal_name-error').isVisible());
  await page.getByLabel('User principal name').fill(`grace.hopper@${domain}`);
  await page.getByLabel('Display name').fill('Grace Hopper');
  await page.getByLabel('Mail nickname').fill('grace.hopper');
  await page.getByLabel('Department (optional)').fill('Engineering');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL(new RegExp(`/connectors/${connector}/tasks/[0-9a-f-]+$`));
  assert.equal(await taskOutcome(), 'succeeded');
  await shot(page, '64-account-task');
  await page.getByRole('link', { name: 'reveal it (once)' }).click();
  const vaultUrl = page.url();
  await page.getByRole('button', { name: 'Reveal password' }).click();
  const password = await page.getByLabel('Initial password').inputValue();
  assert.ok(password.length >= 32, 'a strong password');
  assert.ok(await page.getByText('It cannot be shown again').isVisible(), 'the warning');
  await page.getByRole('button', { name: 'Copy password' }).click();
  await page.getByRole('button', { name: 'Copied' }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), password);
  await shot(page, '65-vault-revealed');

  // Loaded again: already revealed, by whom, and the password is nowhere on the page.
  await page.goto(vaultUrl);
  const state = await page.locator('#vault-state').textContent();
  assert.ok(state.includes('already revealed by ada@acme.example'), state);
  assert.ok((await page.content()).indexOf(password) < 0);
  assert.equal(await page.getByRole('button', { name: 'Reveal password' }).count(), 0);
  await shot(page, '66-vault-already-revealed');

  // The account exists in the tenant and is listed on the Accounts tab.
  const users = (await sim('/_sim/truth/users')).value;
  assert.ok(users.some((u) => u.user_principal_name === `grace.hopper@${domain}` && u.account_enabled));
  await page.goto(`${appUrl}?tab=accounts&q=grace`);
  assert.ok(await page.getByRole('cell', { name: 'Grace Hopper', exact: true }).isVisible());

  // Deprovision it from the Accounts tab: sign-in disabled in the tenant.
  await page.getByRole('button', { name: 'Deprovision Grace Hopper' }).click();
  assert.equal(await taskOutcome(), 'succeeded');
  const again = (await sim('/_sim/truth/users')).value.find((u) => u.user_principal_name === `grace.hopper@${domain}`);
  assert.equal(again.account_enabled, false);
});
