// The gateway's pages signed in through an identity provider (`mcp-oauth gateway --login oidc`):
// headless Debian Chromium driven by playwright-core (pinned in ../package.json; never a browser
// download), driven by tests/interop/pages_scenarios.py (pg2).
//
//   node peers/login-pages.mjs APPROVAL_LINK
//
// 1. opens the approval link without a session: the gateway sends the browser to its own
//    /authorize, which (proxy mode) sends it on to the provider, whose sign-in and consent are
//    automatic (peers/oidc-upstream.mjs), back to the gateway's /oauth/callback and to the link.
//    A consent page of the gateway on the way is approved as a user would ("decision=approve").
//    Every navigation request (redirects included) is recorded;
// 2. reads the approval page and clicks "Approve"; reads the answer;
// 3. opens /gateway (the index that says who is signed in) in the same session.
//
// Env: CHROMIUM (default /usr/bin/chromium). Prints progress on stderr and one line
// `RESULT {json}` on stdout.
import { launch, partialOnFailure } from './chromium.mjs';

const [link] = process.argv.slice(2);
const STEP_TIMEOUT = 15000;
const MAX_PAGES = 5; // consent pages on the way before giving up
const log = (...a) => console.error('[login-pages]', ...a);
const result = { navigations: [], consent_pages: [], console: [] };

partialOnFailure(result);

const heading = async (page) => ((await page.locator('h1').count()) ? (await page.locator('h1').first().textContent())?.trim() ?? null : null);

const browser = await launch();
const { context } = browser;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on('request', (r) => { if (r.isNavigationRequest()) result.navigations.push(`${r.method()} ${r.url()}`); });
  const origin = new URL(link).origin;

  // 1. the link without a session: through the provider and back
  log('goto', link.split('?')[0]);
  await page.goto(link);
  for (let i = 0; page.url() !== link; i++) {
    const approve = page.locator('button[name="decision"][value="approve"]');
    if (i >= MAX_PAGES || !(await approve.count())) {
      throw new Error(`stuck at ${page.url()} (${await heading(page)}): ${(await page.locator('body').innerText()).slice(0, 400)}`);
    }
    result.consent_pages.push({ url: page.url().split('?')[0], heading: await heading(page) });
    log('approve at', page.url().split('?')[0]);
    const here = page.url();
    await Promise.all([page.waitForURL((u) => u.href !== here), approve.first().click()]);
    await page.waitForLoadState('domcontentloaded');
  }
  await page.locator('#tool').waitFor();
  result.back_on_link = page.url() === link;

  // 2. the approval page, then the answer
  result.page = {
    heading: await heading(page),
    tool: (await page.locator('#tool').textContent())?.trim() ?? null,
    arguments: (await page.locator('#arguments').textContent())?.trim() ?? null,
  };
  result.cookies = (await context.cookies(origin)).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));
  log('click Approve');
  await Promise.all([
    page.waitForResponse((x) => x.request().method() === 'POST' && x.url().startsWith(`${origin}/gateway/approve`)),
    page.getByRole('button', { name: 'Approve' }).click(),
  ]);
  await page.waitForLoadState('domcontentloaded');
  result.answer = { heading: await heading(page), text: (await page.locator('body').innerText()).slice(0, 1000) };

  // 3. the index, in the same session
  const index = await page.goto(`${origin}/gateway`);
  result.index = { status: index.status(), url: page.url(), heading: await heading(page), text: (await page.locator('body').innerText()).slice(0, 1000) };
} finally {
  await browser.close();
}
console.log('RESULT ' + JSON.stringify(result));
process.exit(0); // nothing left to wait for (a pending Playwright waiter must not hold the process)
