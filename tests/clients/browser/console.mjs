// Drives the console in headless Chromium (Debian's, through playwright-core) for the
// end-to-end tests: one step per run, the browser's cookies kept per person in $STATE.
//   node console.mjs STEP ARGS...   env: BASE (console URL), STATE (storage file),
//   SHOTS (screenshot directory), CHROME (browser binary)
// Prints one JSON line: {"ok":true,...} or {"ok":false,"error":"..."}. Locators are by
// label and role, as a person (or a screen reader) finds things.
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const [step, ...args] = process.argv.slice(2);
const { BASE: base, STATE: state, SHOTS: shots } = process.env;
const browser = await chromium.launch({
  executablePath: process.env.CHROME || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 860 },
  storageState: state && fs.existsSync(state) ? state : undefined });
const page = await ctx.newPage();
page.setDefaultTimeout(10000);
const dialogs = [];
page.on('dialog', (d) => { dialogs.push(d.message()); d.accept(); });
// What the browser fetched, for the "no raw PII anywhere" check.
const fetched = [];
page.on('response', async (r) => { try { fetched.push(`${r.url()}\n${await r.text()}`); } catch {} });

const text = async () => (await page.innerText('body')).replace(/\s+/g, ' ');
const shot = async (name) => {
  if (!shots) return;
  await page.waitForLoadState('networkidle', { timeout: 3000 }).catch(() => {});
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
};
const nav = async (name) => {
  await page.goto(`${base}/`);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: new RegExp(`^${name}`) }).click();
  await page.waitForLoadState('domcontentloaded');
};
const pageState = async () => ({ url: page.url(), text: await text(), html: await page.content() });

const steps = {
  // A token in the form; signed in when the navigation bar shows and the form is gone.
  async signin(token) {
    await page.goto(`${base}/`);
    await page.getByLabel('Token').fill(token);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForLoadState('domcontentloaded');
    const signedIn = (await page.getByRole('link', { name: 'Sessions' }).count()) > 0;
    return { signedIn, ...(await pageState()) };
  },
  // The provider's button, its own login form (any password) and consent; the provider
  // sends the browser back to `back` (another replica's address), by default BASE.
  async oidc(provider, login, back = base) {
    await page.goto(`${base}/signin`);
    await shot('signin');
    await page.getByRole('link', { name: `Sign in with ${provider}` }).click();
    await page.locator('input[name="login"]').fill(login);
    await page.locator('input[name="password"]').fill('any-password');
    await page.locator('button[type="submit"]').click();
    await page.waitForLoadState('domcontentloaded');
    // Consent, when the provider asks.
    if (!page.url().startsWith(back)) {
      await page.locator('button[type="submit"]').click();
    }
    await page.waitForURL((u) => u.toString().startsWith(back), { timeout: 10000 });
    await page.waitForLoadState('domcontentloaded');
    const signedIn = (await page.getByRole('link', { name: 'Sessions' }).count()) > 0;
    return { signedIn, ...(await pageState()) };
  },
  // Filters the list by principal (and an outcome), opens the session `id`.
  async find(principal, id, outcome) {
    await nav('Sessions');
    await page.getByLabel('Principal').fill(principal);
    if (outcome) await page.getByLabel(outcome).check();
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForLoadState('domcontentloaded');
    await shot('sessions');
    const list = await pageState();
    const link = page.locator(`a[href="/sessions/${id}"]`);
    if (!(await link.count())) return { found: false, list };
    await link.first().click();
    await page.waitForLoadState('domcontentloaded');
    await shot('session');
    return { found: true, list, session: await pageState() };
  },
  async open(path, name) {
    const r = await page.goto(`${base}${path}`);
    await page.waitForLoadState('domcontentloaded');
    if (name) await shot(name);
    return { status: r.status(), ...(await pageState()) };
  },
  // Waits (polling, as the page does) until `expected` shows on the open session page.
  async live(path, expected) {
    await page.goto(`${base}${path}`);
    for (let i = 0; i < 60; i++) {
      if ((await text()).includes(expected)) return { shown: true, ...(await pageState()) };
      await page.waitForTimeout(250);
    }
    return { shown: false, ...(await pageState()) };
  },
  // Presses Approve (or Deny with a reason) on the request showing `statement`.
  async decide(statement, decision, reason) {
    await nav('Approvals');
    await shot('approvals');
    const card = page.locator('article').filter({ hasText: statement });
    if (!(await card.count())) return { decided: false, ...(await pageState()) };
    if (decision === 'deny') {
      await card.first().getByLabel(/Reason for denying/).fill(reason || '');
      await card.first().getByRole('button', { name: 'Deny' }).click();
    } else {
      await card.first().getByRole('button', { name: 'Approve' }).click();
    }
    await page.waitForLoadState('domcontentloaded');
    await shot(decision === 'deny' ? 'denied' : 'approved');
    return { decided: true, ...(await pageState()) };
  },
  async signout() {
    await page.goto(`${base}/sessions`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForLoadState('domcontentloaded');
    return await pageState();
  },
};

let result;
try {
  result = { ok: true, ...(await steps[step](...args)) };
} catch (e) {
  if (shots) await page.screenshot({ path: `${shots}/${step}-failed.png`, fullPage: true }).catch(() => {});
  result = { ok: false, error: String(e.message).split('\n')[0], url: page.url() };
}
result.fetched = fetched.join('\n');
result.dialogs = dialogs;
if (state) await ctx.storageState({ path: state });
await browser.close();
console.log(JSON.stringify(result));
