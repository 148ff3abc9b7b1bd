// JIT access requests in Chromium against `latchkey demo` and its simulated tenant: people
// sign in with Microsoft; an administrator makes a group's membership requestable; the
// requester asks, cannot approve their own request, the approver approves from the inbox;
// the membership is verified in the simulated tenant, expires after a few seconds and is
// verified removed. Plus denial, break-glass, automatic approval, extension and release.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, shot, simUsers, signInWithMicrosoft } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let demo;
let browser;
let admin;
let requester;
let approver;
let R;
let A;
let g1;
let g2;

async function truthMembers(groupId) {
  const r = await fetch(`${demo.sim}/_sim/truth/groups/${groupId}`);
  assert.ok(r.ok);
  return (await r.json()).members.map((m) => m.id);
}

async function waitFor(what, check, ms = 40000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Reloads the request page until its state is `state`. */
async function waitState(page, id, state, ms = 40000) {
  await waitFor(`request ${id} to be ${state}`, async () => {
    await page.goto(`${demo.base}/access/requests/${id}`);
    return (await page.locator('#request-state').getAttribute('data-state')) === state;
  }, ms);
}

function requestId(page) {
  return new URL(page.url()).pathname.split('/').pop();
}

async function editPolicy(group, fill) {
  await admin.goto(`${demo.base}/access/policies?q=${encodeURIComponent(group.display_name)}`);
  await admin.getByRole('link', { name: `Edit the policy of ${group.display_name} member` }).click();
  await admin.getByLabel('Requestable').check();
  await fill();
  await admin.getByRole('button', { name: 'Save policy' }).click();
  await admin.getByRole('status').filter({ hasText: 'Policy saved' }).waitFor();
}

async function ask(group, justification, { emergency = false } = {}) {
  await requester.goto(`${demo.base}/access?q=${encodeURIComponent(group.display_name)}`);
  await requester.getByRole('link', { name: `Request ${group.display_name} member` }).click();
  await requester.getByLabel('Why do you need it?').fill(justification);
  if (emergency) await requester.getByLabel(/Emergency \(break-glass\)/).check();
  await requester.getByRole('button', { name: 'Send request' }).click();
  await requester.waitForURL(/\/access\/requests\/[0-9a-f-]+/);
  return requestId(requester);
}

before(async () => {
  demo = await startDemo({ env: { LATCHKEY_ACCESS_MIN_DURATION_SECS: '1', LATCHKEY_ACCESS_SWEEP_SECS: '1' } });
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
  await admin.getByLabel('Provisioning', { exact: true }).check();
  await admin.getByRole('button', { name: 'Save' }).click();
  await admin.locator('#status-badge', { hasText: 'Connected' }).waitFor({ timeout: 60000 });

  // Two security groups, and two tenant members in neither.
  const groups = (await (await fetch(`${demo.sim}/_sim/truth/groups`)).json()).value
    .filter((g) => g.kind === 'security');
  [g1, g2] = groups;
  const inG1 = await truthMembers(g1.id);
  const inG2 = await truthMembers(g2.id);
  const users = await simUsers(demo.sim);
  const free = users.slice(1).filter((u) => u.account_enabled && u.user_type === 'Member'
    && !inG1.includes(u.id) && !inG2.includes(u.id));
  [R, A] = free;
  assert.ok(R && A, 'two members outside both groups');

  // Both sign in with Microsoft: they become members, linked to their Entra accounts.
  requester = await (await browser.newContext()).newPage();
  await signInWithMicrosoft(requester, demo.base, R.user_principal_name);
  approver = await (await browser.newContext()).newPage();
  await signInWithMicrosoft(approver, demo.base, A.user_principal_name);

  // Group 1: eight seconds at most, approval by A, break-glass allowed.
  await editPolicy(g1, async () => {
    await admin.getByLabel('Maximum duration').fill('8');
    await admin.getByLabel('Default duration').fill('8');
    const value = await admin.locator('#stage1_user option', { hasText: A.user_principal_name.toLowerCase() }).getAttribute('value')
      .catch(async () => admin.locator('#stage1_user option', { hasText: A.display_name }).first().getAttribute('value'));
    await admin.locator('#stage1_user').selectOption(value);
    await admin.getByLabel('Remind the holder before expiry').fill('3');
    await admin.getByLabel(/Allow emergency access/).check();
  });
  await shot(admin, '70-access-policy');
  // Group 2: low risk, approved automatically, ten minutes at most.
  await editPolicy(g2, async () => {
    await admin.getByLabel('Risk', { exact: true }).selectOption('low');
    await admin.getByLabel('Maximum duration').fill('600');
    await admin.getByLabel('Default duration').fill('300');
    await admin.getByLabel('Remind the holder before expiry').fill('0');
    await admin.getByLabel('Approve automatically when the risk is low').check();
    await admin.locator('#stage-1').getByLabel("The connector's owners").check();
  });
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

test('request, self-approval refused, approval, verified in the tenant, expiry, removal verified', async () => {
  await requester.goto(`${demo.base}/access`);
  await shot(requester, '71-access-catalog');
  const id = await ask(g1, 'OPS-42 hotfix for the payment service');
  assert.equal(await requester.locator('#request-state').getAttribute('data-state'), 'pending');
  assert.ok(await requester.locator('#self-approval-note').isVisible());
  await shot(requester, '72-request-pending');

  // Approving one's own request is refused even when forced past the page.
  const landed = await requester.evaluate(async (rid) => {
    const token = document.querySelector('input[name=csrf_token]').value;
    const r = await fetch(`/access/requests/${rid}/approve`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `csrf_token=${encodeURIComponent(token)}`,
    });
    return r.url;
  }, id);
  await requester.goto(landed);
  assert.match(await requester.locator('#action-error').textContent(), /own request/);

  // The approver's inbox: the request, the requester's current access, approve with a comment.
  await approver.goto(`${demo.base}/access/approvals`);
  const card = approver.locator(`section.approval[data-request="${id}"]`);
  await card.waitFor();
  assert.match(await card.textContent(), /OPS-42/);
  assert.match(await card.textContent(), /current access/);
  await shot(approver, '73-approvals-inbox');
  await card.getByLabel('Comment').fill('ok for the hotfix');
  await card.getByRole('button', { name: 'Approve' }).click();
  await approver.getByRole('status').filter({ hasText: 'Approved.' }).waitFor();

  await waitState(requester, id, 'active');
  assert.ok((await truthMembers(g1.id)).includes(R.id), 'member of the group in the tenant');
  await requester.goto(`${demo.base}/access/mine`);
  assert.ok(await requester.locator(`#active-access tr[data-request="${id}"] time.countdown`).isVisible());
  await shot(requester, '74-my-access-countdown');

  // Eight seconds later it is removed from the tenant, and verified.
  await waitState(requester, id, 'expired');
  assert.ok(!(await truthMembers(g1.id)).includes(R.id), 'removed from the group in the tenant');
  const timeline = await requester.locator('#timeline').textContent();
  for (const step of ['requested', 'approved', 'provisioning_started', 'granted', 'expiry_started', 'expired']) {
    assert.ok(timeline.includes(step), `${step} in the timeline`);
  }
  await shot(requester, '75-request-expired');

  // The approver was emailed a link to the decision page; the requester heard each step.
  await admin.goto(`${demo.base}/outbox`);
  const outbox = await admin.locator('main').textContent();
  assert.ok(outbox.includes(`/access/requests/${id}`));
  assert.match(outbox, /Approval needed/);
  assert.match(outbox, /Expires soon/);
});

test('denial with a comment', async () => {
  const id = await ask(g1, 'OPS-43 curious');
  await approver.goto(`${demo.base}/access/requests/${id}`);
  await approver.getByLabel('Comment (the requester sees it)').fill('no ticket for this');
  await approver.getByRole('button', { name: 'Deny' }).click();
  await approver.getByRole('status').filter({ hasText: 'Denied.' }).waitFor();
  await waitState(requester, id, 'denied', 5000);
  assert.match(await requester.locator('main').textContent(), /no ticket for this/);
  assert.ok(!(await truthMembers(g1.id)).includes(R.id));
});

test('break-glass: granted at once, flagged, reviewed', async () => {
  const id = await ask(g1, 'OPS-44 outage, nobody answers', { emergency: true });
  await waitState(requester, id, 'active', 20000);
  assert.ok((await truthMembers(g1.id)).includes(R.id));
  await admin.goto(`${demo.base}/access/requests?review=1`);
  await admin.getByRole('link').filter({ hasText: /\d{4}-/ }).first().click();
  assert.match(await admin.locator('main').textContent(), /Needs review/);
  await admin.getByLabel('Review note').fill('justified: outage');
  await admin.getByRole('button', { name: 'Mark as reviewed' }).click();
  await admin.getByRole('status').filter({ hasText: 'Marked as reviewed.' }).waitFor();
  await admin.goto(`${demo.base}/outbox`);
  assert.match(await admin.locator('main').textContent(), /Emergency access used/);
  await waitState(requester, id, 'expired');
});

test('automatic approval, extension, early release', async () => {
  const id = await ask(g2, 'OPS-45 data fix');
  await waitState(requester, id, 'active', 20000);
  assert.ok((await truthMembers(g2.id)).includes(R.id));
  const before = await requester.locator('time.countdown').getAttribute('datetime');
  await requester.goto(`${demo.base}/access/mine`);
  const row = requester.locator(`#active-access tr[data-request="${id}"]`);
  await row.getByPlaceholder('Why more time?').fill('OPS-45 needs one more run');
  await row.getByRole('button', { name: 'Extend' }).click();
  await requester.getByRole('status').filter({ hasText: 'Extended.' }).waitFor();
  await requester.goto(`${demo.base}/access/requests/${id}`);
  const afterExt = await requester.locator('time.countdown').getAttribute('datetime');
  assert.ok(Date.parse(afterExt) > Date.parse(before), `${afterExt} after ${before}`);

  await requester.goto(`${demo.base}/access/mine`);
  await requester.getByRole('button', { name: `Release ${g2.display_name} member` }).click();
  await requester.getByRole('status').filter({ hasText: 'Removal started' }).waitFor();
  await waitState(requester, id, 'revoked', 20000);
  assert.ok(!(await truthMembers(g2.id)).includes(R.id), 'removed from the tenant');
  await shot(requester, '76-released');

  // The audit log has every step, and the chain is intact.
  await admin.goto(`${demo.base}/audit?target=${id}`);
  assert.match(await admin.locator('#chain-status').textContent(), /Chain intact/);
  const log = await admin.locator('#audit-events').textContent();
  for (const a of ['access_request.created', 'access_request.auto_approved', 'access_request.extension_approved', 'access_request.revoked']) {
    assert.ok(log.includes(a), `${a} in the audit log`);
  }
  await shot(admin, '77-audit-log');
});
