// Access reviews in Chromium against the simulated tenant: an administrator syncs a tenant,
// starts a campaign over its directory roles, reviews items in the inbox (one with its
// evidence, two in bulk, one revoked), follows the progress chart and the report, downloads
// the CSV, closes the campaign and stops its recurrence; then starts a campaign of one group
// from the group's page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, shot } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let demo;
let browser;
let page;

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  page = await (await browser.newContext({ acceptDownloads: true })).newPage();
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
  await demo?.stop();
});

async function connectTenant() {
  await page.goto(`${demo.base}/connectors/new/entra`);
  await page.getByLabel('Connector name').fill('Contoso Entra');
  await page.locator('#attach-new').check();
  await page.getByLabel('Name of the new app').fill('Contoso directory');
  await page.getByRole('button', { name: 'Next' }).click();
  await page.waitForURL(/\/settings\?new=1$/);
  await page.getByLabel('Client secret', { exact: true }).check();
  await page.getByLabel('Entra tenant ID').fill(demo.creds.tenantId);
  await page.getByLabel('Entra client ID').fill(demo.creds.clientId);
  await page.getByLabel('Entra client secret').fill(demo.creds.clientSecret);
  await page.getByLabel('Provisioning', { exact: true }).check();
  await page.getByLabel('Fetch user sign-in activity').check();
  await page.getByRole('button', { name: 'Save' }).click();
  // Connected: the connection test passed and the first sync (the existing sync job) finished.
  await page.locator('#status-badge', { hasText: 'Connected' }).waitFor({ timeout: 90000 });
}

test('a reviewer works through a campaign: evidence, decisions, revoke, chart, report', async () => {
  await connectTenant();

  // Nothing to review yet, and the way to start is offered.
  await page.getByRole('link', { name: 'Access reviews' }).click();
  await page.getByText('Nothing to review').waitFor();
  await page.getByRole('link', { name: 'New campaign' }).first().click();

  // A mistake first: no app chosen, and the form keeps what was typed.
  await page.getByLabel('Name', { exact: true }).fill('Directory roles Q4');
  await page.getByRole('button', { name: 'Start campaign' }).click();
  await page.getByText('Choose at least one app or connector to review.').waitFor();
  assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), 'Directory roles Q4');
  await shot(page, 'reviews-01-new-campaign-error');

  await page.getByLabel('Contoso directory (Contoso Entra)').check();
  await page.getByLabel('Directory roles').check();
  await page.getByLabel("The app's owners").check();
  await page.getByLabel('Kept', { exact: true }).check();
  await page.getByLabel('Repeat').selectOption('91');
  await shot(page, 'reviews-02-new-campaign');
  await page.getByRole('button', { name: 'Start campaign' }).click();
  await page.waitForURL(/\/reviews\/campaigns\/[0-9a-f-]+$/);
  const campaignUrl = page.url();
  await page.getByText(/0 of \d+ decided/).waitFor();
  assert.equal(await page.locator('svg.chart polyline').count(), 3, 'decided, undecided and revoked lines');
  assert.ok(await page.getByText('recurring').isVisible());
  const total = Number((await page.getByText(/0 of \d+ decided/).textContent()).match(/0 of (\d+)/)[1]);
  assert.ok(total >= 4, `enough role assignments to review (${total})`);

  // The inbox: the creator owns the app, so every item is hers.
  await page.getByRole('link', { name: 'Access reviews' }).click();
  const rows = page.locator('tbody tr');
  assert.equal(await rows.count(), total);
  await shot(page, 'reviews-03-inbox');

  // One item with all of its evidence, kept with a comment.
  await rows.nth(0).getByRole('link').click();
  await page.getByRole('heading', { name: 'Evidence' }).waitFor();
  for (const label of ['Since', 'How', 'Last sign-in', 'From a Latchkey request', 'Recommendation']) {
    assert.ok(await page.getByText(label, { exact: true }).isVisible(), label);
  }
  await shot(page, 'reviews-04-evidence');
  await page.getByLabel('Keep').check();
  await page.getByLabel('Comment').fill('Needed for on-call');
  await page.getByRole('button', { name: 'Record decision' }).click();
  await page.getByText('Kept 1 item(s).').waitFor();
  assert.equal(await rows.count(), total - 1);

  // Two more at once.
  await rows.nth(0).getByRole('checkbox').check();
  await rows.nth(1).getByRole('checkbox').check();
  await page.getByLabel('Comment (for the selected items)').fill('Reviewed with the team');
  await page.getByRole('button', { name: 'Keep selected' }).click();
  await page.getByText('Kept 2 item(s).').waitFor();
  assert.equal(await rows.count(), total - 3);

  // A revoke of direct access: carried out through provisioning, verified in the tenant.
  const direct = rows.filter({ has: page.locator('td:nth-child(4)', { hasText: /^Direct$/ }) }).first();
  const revoked = (await direct.getByRole('link').textContent()).trim();
  const revokedWhat = (await direct.locator('td').nth(2).textContent()).trim();
  await direct.getByRole('link').click();
  await page.getByLabel('Revoke (removed in the tenant)').check();
  await page.getByLabel('Comment').fill('No longer an administrator');
  await page.getByRole('button', { name: 'Record decision' }).click();
  await page.getByText(/Revoked 1 item\(s\)/).waitFor();
  await shot(page, 'reviews-05-after-decisions');

  // Progress: four decided; the revoke is followed until the tenant shows it.
  await page.goto(campaignUrl);
  await page.getByText(`4 of ${total} decided`).waitFor();
  const deadline = Date.now() + 60000;
  for (;;) {
    const text = await page.locator('main').textContent();
    if (/Revocations: 1 verified in the tenant/.test(text)) break;
    assert.ok(Date.now() < deadline, `the revoke never finished: ${text}`);
    await page.waitForTimeout(500);
    await page.reload();
  }
  const itemsTable = page.locator('section', { has: page.getByRole('heading', { name: 'Items' }) });
  const revokedRow = itemsTable.locator('tbody tr')
    .filter({ has: page.getByRole('link', { name: revoked, exact: true }) })
    .filter({ has: page.locator('td:nth-child(3)', { hasText: /^Direct$/ }) })
    .filter({ hasText: revokedWhat });
  assert.match(await revokedRow.textContent(), /Revoked — verified in the tenant/);
  await shot(page, 'reviews-06-progress');

  // The report: every decision with reviewer, time, comment and provisioning result.
  await page.getByRole('link', { name: 'Report' }).click();
  await page.getByRole('heading', { name: 'Approver quality' }).waitFor();
  for (const comment of ['Needed for on-call', 'Reviewed with the team', 'No longer an administrator']) {
    assert.ok(await page.getByText(comment).first().isVisible(), comment);
  }
  assert.ok(await page.getByText('ada@acme.example').first().isVisible());
  await shot(page, 'reviews-07-report');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download CSV' }).click(),
  ]);
  const csv = await (await download.createReadStream()).toArray().then((c) => Buffer.concat(c).toString());
  const lines = csv.trim().split('\r\n');
  assert.equal(lines.length, total + 1, 'a header and one line per item');
  assert.ok(lines[0].startsWith('item_id,resource_type,resource,entitlement'));
  assert.equal(lines.filter((l) => l.includes('No longer an administrator')).length, 1);

  // Closing: the rest are kept by the end rule, and nothing can be decided any more.
  await page.goto(campaignUrl);
  await page.getByRole('button', { name: /Close now/ }).click();
  await page.getByText(/Closed \d{4}-/).waitFor();
  await page.getByText(`${total} of ${total} decided`).waitFor();
  await page.getByRole('link', { name: 'Access reviews' }).click();
  await page.getByText('Nothing to review').waitFor();
  await shot(page, 'reviews-08-closed');

  // The campaign repeats quarterly: its recurring review is listed with the campaign it
  // started, and stopping it starts no further campaigns.
  await page.goto(`${demo.base}/reviews/campaigns`);
  await page.getByRole('link', { name: 'Recurring reviews' }).click();
  await page.getByRole('heading', { name: 'Recurring reviews' }).waitFor();
  const recurring = page.locator('tbody tr', { hasText: 'Directory roles Q4' });
  assert.match(await recurring.textContent(), /91 days/);
  assert.ok(await recurring.getByRole('link', { name: 'Directory roles Q4' }).isVisible());
  await recurring.getByRole('button', { name: 'Stop' }).click();
  await recurring.getByText(/Stopped \d{4}-/).waitFor();
  assert.equal(await recurring.getByRole('button', { name: 'Stop' }).count(), 0);
  await shot(page, 'reviews-08b-recurring-stopped');
});

test('a campaign of one group, started from the group\'s page, reviews exactly its members', async () => {
  const sim = async (path) => (await fetch(`${demo.sim}${path}`)).json();
  const group = (await sim('/_sim/truth/groups')).value.find((g) => g.kind === 'security');
  const members = (await sim(`/_sim/truth/groups/${group.id}`)).members;

  await page.goto(`${demo.base}/apps`);
  await page.getByRole('link', { name: 'Contoso directory', exact: true }).click();
  await page.goto(`${page.url().split('?')[0]}?tab=entitlements`);
  await page.locator('#q').fill(group.display_name);
  await page.getByRole('button', { name: 'Filter' }).click();
  const row = page.locator('tr', { has: page.locator('code', { hasText: /^members$/ }) }).first();
  await row.getByRole('link', { name: /^Grant or revoke/ }).click();
  await page.getByRole('link', { name: 'Review who has this access' }).click();

  // The form arrives with the app and the group chosen.
  await page.getByRole('heading', { name: 'New access review' }).waitFor();
  assert.ok(await page.getByLabel('Contoso directory (Contoso Entra)').isChecked());
  const escaped = group.display_name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.ok(await page.getByLabel(new RegExp(`of ${escaped}$`)).isChecked());
  await page.getByLabel('Name', { exact: true }).fill(`${group.display_name} members`);
  await page.getByLabel('Include access inherited through groups').uncheck();
  await shot(page, 'reviews-09-new-from-group');
  await page.getByRole('button', { name: 'Start campaign' }).click();
  await page.waitForURL(/\/reviews\/campaigns\/[0-9a-f-]+$/);
  // One item per direct member in the tenant.
  await page.getByText(`0 of ${members.length} decided`).waitFor();
  await shot(page, 'reviews-10-group-campaign');
});
