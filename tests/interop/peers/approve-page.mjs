// The gateway's approval page in a real browser: headless Debian Chromium driven by
// playwright-core (pinned in ../package.json; never a browser download), driven by
// tests/interop/gateway_scenarios.py (gw7).
//
//   node peers/approve-page.mjs APPROVAL_LINK
//
// 1. opens the approval link: without a session the gateway sends the browser to sign in at its
//    own authorization server (the login and consent page of the pages' client);
// 2. fills username / password and clicks "Sign in and allow"; the browser comes back to the link;
// 3. reads the approval page (tool, arguments, buttons, the session cookie's attributes) and
//    clicks "Approve" (or "Refuse", DECISION=refuse); reads the answer page.
//
// Env: LOGIN_USER / LOGIN_PASSWORD, DECISION (approve | refuse), CHROMIUM (default
// /usr/bin/chromium). Prints progress on stderr and one line `RESULT {json}` on stdout.
import { launch, partialOnFailure } from './chromium.mjs';

const [link] = process.argv.slice(2);
const USER = process.env.LOGIN_USER || 'dev';
const PASSWORD = process.env.LOGIN_PASSWORD || 'dev';
const DECISION = process.env.DECISION || 'approve';
const STEP_TIMEOUT = 15000;
const log = (...a) => console.error('[approve]', ...a);
const result = { decision: DECISION, console: [] };

partialOnFailure(result);
const browser = await launch();
const { context } = browser;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  const origin = new URL(link).origin;

  // 1. the link, without a session: to the sign-in
  log('goto', link.split('?')[0]);
  await page.goto(link);
  result.sign_in_url = page.url().split('?')[0];
  result.sign_in_heading = (await page.locator('h1').first().textContent())?.trim() ?? null;

  // 2. sign in and allow the pages' client
  await page.getByLabel('User name').fill(USER);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(`${origin}/gateway/approve?`)),
    page.getByRole('button', { name: 'Sign in and allow' }).click(),
  ]);
  await page.locator('#tool').waitFor();
  result.back_on_link = page.url() === link;

  // 3. the approval page, then the answer
  result.page = {
    heading: (await page.locator('h1').first().textContent())?.trim() ?? null,
    tool: (await page.locator('#tool').textContent())?.trim() ?? null,
    arguments: (await page.locator('#arguments').textContent())?.trim() ?? null,
    text: (await page.locator('body').innerText()).slice(0, 2000),
    buttons: await page.getByRole('button').allTextContents(),
  };
  result.cookies = (await context.cookies(origin)).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));
  const button = DECISION === 'refuse' ? 'Refuse' : 'Approve';
  log('click', button);
  await Promise.all([
    page.waitForResponse((x) => x.request().method() === 'POST' && x.url().startsWith(`${origin}/gateway/approve`)),
    page.getByRole('button', { name: button }).click(),
  ]);
  await page.waitForLoadState('domcontentloaded');
  result.answer = {
    heading: (await page.locator('h1').first().textContent())?.trim() ?? null,
    text: (await page.locator('body').innerText()).slice(0, 1000),
  };
} finally {
  await browser.close();
}
console.log('RESULT ' + JSON.stringify(result));
process.exit(0); // nothing left to wait for (a pending Playwright waiter must not hold the process)
