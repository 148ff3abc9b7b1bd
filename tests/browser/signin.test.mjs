// "Sign in with Microsoft" in Chromium against the simulated tenant of `latchkey demo`:
// refused while no organization connected the tenant; once connected, a tenant member signs
// in, becomes a member of the organization, and signs in again as the same person.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, shot, simUsers, signInWithMicrosoft } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let demo;
let browser;
let admin;

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  admin = await (await browser.newContext()).newPage();
  await admin.goto(`${demo.base}/signup`);
  await admin.getByLabel('Organization name').fill('Acme Corp');
  await admin.getByLabel('Your name').fill('Ada Lovelace');
  await admin.getByLabel('Work email').fill('ada@acme.example');
  await admin.locator('#password').fill(PASSWORD);
  await admin.getByLabel('Password again').fill(PASSWORD);
  await admin.getByRole('button', { name: 'Create organization' }).click();
  await admin.waitForURL(/\/dashboard$/);
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

async function connectTenant(admin) {
  await admin.goto(`${demo.base}/connectors/new/entra`);
  await admin.getByLabel('Connector name').fill('Contoso Entra');
  await admin.locator('#attach-new').check();
  await admin.getByLabel('Name of the new app').fill('Contoso Entra app');
  await admin.getByRole('button', { name: 'Next' }).click();
  await admin.waitForURL(/\/settings\?new=1$/);
  await admin.getByLabel('Client secret', { exact: true }).check();
  await admin.getByLabel('Entra tenant ID').fill(demo.creds.tenantId);
  await admin.getByLabel('Entra client ID').fill(demo.creds.clientId);
  await admin.getByLabel('Entra client secret').fill(demo.creds.clientSecret);
  await admin.getByRole('button', { name: 'Save' }).click();
  await admin.locator('#status-badge', { hasText: 'Connected' }).waitFor({ timeout: 60000 });
}

test('sign in with Microsoft on the simulated tenant', async () => {
  const users = await simUsers(demo.sim);
  const member = users.find((u) => u.account_enabled && u.user_type === 'Member' && u.user_principal_name !== users[0].user_principal_name);
  assert.ok(member, 'the simulated tenant has an enabled member');

  // The login page offers the button.
  const first = await (await browser.newContext()).newPage();
  await first.goto(`${demo.base}/login`);
  assert.ok(await first.getByRole('button', { name: 'Sign in with Microsoft' }).isVisible());
  await shot(first, '60-login-with-microsoft');

  // No organization connected the tenant yet: a clear refusal, no session.
  const refused = await signInWithMicrosoft(first, demo.base, member.user_principal_name, { expectRefusal: true });
  assert.match(refused, /no organization has connected to Latchkey/);
  await shot(first, '61-tenant-not-connected');
  await first.goto(`${demo.base}/dashboard`);
  await first.waitForURL(/\/login\?next=/);

  await connectTenant(admin);

  // The simulated tenant's sign-in page, then back to Latchkey, signed in as a new member.
  await first.goto(`${demo.base}/login`);
  await first.getByRole('button', { name: 'Sign in with Microsoft' }).click();
  await first.locator('#i0116').waitFor();
  await shot(first, '62-simulated-sign-in-page');
  const landed = await signInWithMicrosoft(first, demo.base, member.user_principal_name);
  assert.match(landed, /\/dashboard$/);
  assert.ok(await first.getByText('Acme Corp').first().isVisible(), 'signed in to the organization');
  await shot(first, '63-signed-in-with-microsoft');

  // The administrator sees the new member.
  await admin.goto(`${demo.base}/settings/people`);
  const row = admin.getByRole('row', { name: new RegExp(member.user_principal_name, 'i') });
  await row.waitFor();
  assert.equal(await row.locator('select[name="role"]').inputValue(), 'member');
  await shot(admin, '64-people-with-microsoft-member');

  // Signing in again (another browser) is the same person: still one row.
  const again = await (await browser.newContext()).newPage();
  await signInWithMicrosoft(again, demo.base, member.user_principal_name, { next: '/settings/people' });
  await admin.reload();
  assert.equal(await admin.getByRole('row', { name: new RegExp(member.user_principal_name, 'i') }).count(), 1);

  // A username the tenant does not know stays on the tenant's page.
  const stranger = await (await browser.newContext()).newPage();
  await stranger.goto(`${demo.base}/login`);
  await stranger.getByRole('button', { name: 'Sign in with Microsoft' }).click();
  await stranger.locator('#i0116').fill(`nobody@${member.user_principal_name.split('@')[1]}`);
  await stranger.locator('#idSIButton9').click();
  await stranger.getByText('AADSTS50034').waitFor();

  // A second organization connects the same tenant: its people choose where to sign in.
  const globex = await (await browser.newContext()).newPage();
  await globex.goto(`${demo.base}/signup`);
  await globex.getByLabel('Organization name').fill('Globex');
  await globex.getByLabel('Your name').fill('Grace Hopper');
  await globex.getByLabel('Work email').fill('grace@globex.example');
  await globex.locator('#password').fill(PASSWORD);
  await globex.getByLabel('Password again').fill(PASSWORD);
  await globex.getByRole('button', { name: 'Create organization' }).click();
  await globex.waitForURL(/\/dashboard$/);
  await connectTenant(globex);
  const colleague = users.find((u) => u.account_enabled && u.user_type === 'Member'
    && ![users[0].user_principal_name, member.user_principal_name].includes(u.user_principal_name));
  const chooser = await (await browser.newContext()).newPage();
  await chooser.goto(`${demo.base}/login`);
  await chooser.getByRole('button', { name: 'Sign in with Microsoft' }).click();
  await chooser.locator('#i0116').fill(colleague.user_principal_name);
  await chooser.locator('#idSIButton9').click();
  await chooser.getByRole('heading', { name: 'Choose your organization' }).waitFor();
  assert.equal(await chooser.getByRole('button', { name: 'Acme Corp', exact: true }).count(), 1);
  await shot(chooser, '65-choose-organization');
  const viaHelper = await (await browser.newContext()).newPage();
  assert.match(await signInWithMicrosoft(viaHelper, demo.base, colleague.user_principal_name, { org: 'Globex' }), /\/dashboard$/);
  assert.ok(await viaHelper.getByText('Globex').first().isVisible(), 'signed in to the chosen organization');

  // The administrator, who signed up with a password, links her Microsoft account from Your
  // account; from then on Sign in with Microsoft is her, a Super Administrator.
  const adaEntra = users.find((u) => u.account_enabled && u.user_type === 'Member'
    && ![users[0].user_principal_name, member.user_principal_name, colleague.user_principal_name].includes(u.user_principal_name));
  await admin.goto(`${demo.base}/dashboard`);
  await admin.getByRole('link', { name: 'Ada Lovelace' }).click();
  await admin.waitForURL(/\/settings\/account$/);
  await admin.getByText('No Microsoft account is linked to you yet.').waitFor();
  await admin.getByRole('button', { name: 'Link your Microsoft account' }).click();
  await admin.locator('#i0116').fill(adaEntra.user_principal_name);
  await Promise.all([
    admin.waitForURL(/\/settings\/account\?linked=1$/),
    admin.locator('#idSIButton9').click(),
  ]);
  await admin.getByText('Your Microsoft account is linked.').waitFor();
  assert.ok(await admin.getByText(adaEntra.id).isVisible(), 'the linked object id is listed');
  await shot(admin, '66-account-linked');
  const adaViaMicrosoft = await (await browser.newContext()).newPage();
  await signInWithMicrosoft(adaViaMicrosoft, demo.base, adaEntra.user_principal_name, { org: 'Acme Corp', next: '/settings/account' });
  assert.ok(await adaViaMicrosoft.getByText('Super Administrator').first().isVisible(), 'signed in as the administrator herself');
  assert.ok(await adaViaMicrosoft.getByText('ada@acme.example').isVisible());

  // Local password sign-in keeps working for the administrator.
  const local = await (await browser.newContext()).newPage();
  await local.goto(`${demo.base}/login`);
  await local.getByLabel('Email').fill('ada@acme.example');
  await local.getByLabel('Password').fill(PASSWORD);
  await local.getByRole('button', { name: 'Sign in', exact: true }).click();
  await local.waitForURL(/\/dashboard$/);
});
