// Browser test of the dashboard against a real ferry server: starts `ferry server`, deploys the e2e test
// app as "demo", makes calls over the HTTP API (successes, a failure, a pipeline with a graph), then drives
// headless Chromium through playwright-core and checks what a person would see, live refresh included.
//
//   node dashboard.test.mjs FERRY_CLI APP_BINARY OUTPUT_DIR
//
// Needs Debian's chromium and `npm ci --prefix tests/browser`: `bash scripts/setup.sh` installs both.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDeployedServer } from '../support/ferry_server.mjs';

const CHROMIUM = '/usr/bin/chromium';
const TIMEOUT_MS = 20_000;  // for any one thing to show up
const APP = 'demo';

const [ferryCli, appBinary, outputDir] = process.argv.slice(2);
if (!ferryCli || !appBinary || !outputDir) {
  console.error('usage: node dashboard.test.mjs FERRY_CLI APP_BINARY OUTPUT_DIR');
  process.exit(2);
}

class CheckFailed extends Error {}
const fail = (message) => { throw new CheckFailed(message); };
const step = (message) => console.log(`- ${message}`);

function loadPlaywright() {
  if (!existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing: run \`bash scripts/setup.sh\` (installs Debian's chromium)`);
  try {
    return createRequire(import.meta.url)('playwright-core');
  } catch {
    return fail('playwright-core is missing: run `bash scripts/setup.sh` (runs `npm ci --prefix tests/browser`)');
  }
}

/// Calls the server's HTTP API; resolves to {status, body}.
async function http(base, token, method, path, body) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* reported below when it matters */ }
  return { status: res.status, body: json, text };
}

/// POSTs a call and returns its response; `expect` is the HTTP status it must answer with.
async function call(base, token, fn, args, expect) {
  const r = await http(base, token, 'POST', `/v1/apps/${APP}/functions/${fn}/call?timeout=60`, args);
  if (r.status !== expect) fail(`POST call ${fn}(${JSON.stringify(args)}) answered ${r.status} (expected ${expect}): ${r.text}`);
  const callId = r.body && (r.body.call_id || (r.body.error && r.body.error.call_id));
  if (!callId) fail(`POST call ${fn} answered without a call_id: ${r.text}`);
  return { ...r, callId };
}

/// Waits for `locator` to become visible, failing with `what` (not Playwright's stack) if it does not.
async function see(locator, what, timeout = TIMEOUT_MS) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout });
  } catch {
    fail(`the dashboard did not show ${what} within ${timeout} ms`);
  }
}

/// Polls `probe` (async, returns a value) until `ok(value)` holds; fails with `what` and the last value.
async function until(probe, ok, what, timeout = TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (ok(last)) return last;
    if (Date.now() > deadline) fail(`${what} (last seen: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));  // polling interval, not a wait for the app
  }
}

async function main() {
  const { chromium } = loadPlaywright();
  mkdirSync(outputDir, { recursive: true });
  const stateDir = mkdtempSync(join(tmpdir(), 'ferry-browser-'));
  const server = await startDeployedServer({ ferryCli, appBinary, app: APP, stateDir })
    .catch((e) => fail(e.message));
  let browser;
  try {
    const { address, token } = server;
    const base = `http://${address}`;
    step(`server at ${address}`);
    const apps = await http(base, token, 'GET', `/v1/apps/${APP}`);
    if (apps.status !== 200) fail(`GET /v1/apps/${APP} answered ${apps.status}: ${apps.text}`);
    const functions = (apps.body.functions || []).map((f) => f.name);
    step(`deployed ${APP}: ${functions.join(', ')}`);
    for (const fn of ['add', 'square', 'raise_test_error']) {
      if (!functions.includes(fn)) fail(`GET /v1/apps/${APP} lists no function ${fn}: ${apps.text}`);
    }

    // Calls: successes, a failure, and one whose body makes calls (so it has a graph).
    const added = await call(base, token, 'add', [2, 3], 200);
    if (added.body.result !== 5) fail(`add(2, 3) returned ${added.text}`);
    const squared = await call(base, token, 'square', [7], 200);
    const failed = await call(base, token, 'raise_test_error', [], 500);
    const crashed = await call(base, token, 'crash', [], 502);  // a long, many-line error quoting stderr
    if (crashed.body.error.code !== 'container_crashed' || !crashed.body.error.message.includes('\n')) {
      fail(`crash should fail with container_crashed and a many-line message: ${crashed.text}`);
    }
    const failedMessage = failed.body.error.message;
    if (!/the answer is not 42/.test(failedMessage)) fail(`raise_test_error's error says ${failed.text}`);
    const hasPipeline = functions.includes('pipeline');
    const graphCall = hasPipeline ? await call(base, token, 'pipeline', [3], 200)
      : await call(base, token, 'sum_of_squares', [3], 200);
    step(`calls made: ${[added, squared, failed, graphCall].map((c) => c.callId).join(' ')}${hasPipeline ? '' : ' (no pipeline function: sum_of_squares stands in)'}`);
    const graph = await until(() => http(base, token, 'GET', `/v1/calls/${graphCall.callId}/graph`).then((r) => r.body),
      (g) => g && g.nodes && g.nodes.length >= 3 && g.edges && g.edges.length >= 2,
      `GET /v1/calls/${graphCall.callId}/graph should have 3+ nodes and 2+ edges`);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.setDefaultTimeout(TIMEOUT_MS);
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${base}/#token=${encodeURIComponent(token)}`);

    // The token leaves the address bar at once, and stays in the browser.
    await until(async () => page.url(), (url) => !url.includes('token'), 'the token should leave the address bar');
    if (await page.evaluate(() => localStorage.getItem('ferry.token')) !== token) fail('the token was not kept in localStorage');
    const header = await page.locator('header').textContent();
    if (!header.includes(address)) fail(`the header should name the server ${address}, it says: ${header}`);

    // Apps and their functions, with their options.
    const app = page.locator(`#apps [data-app="${APP}"]`);
    await see(app, `the app ${APP}`);
    for (const fn of ['add', 'square', 'raise_test_error']) await see(app.locator(`tr[data-function="${APP}.${fn}"]`), `function ${fn}`);
    for (const f of apps.body.functions) {  // e.g. rendezvous: max_inputs 4, max_containers 1
      for (const option of ['max_inputs', 'max_containers', 'min_containers', 'max_retries']) {
        const cell = app.locator(`tr[data-function="${APP}.${f.name}"] td[data-option="${option}"]`);
        await see(cell, `${f.name}'s ${option}`);
        const text = (await cell.textContent()).trim();
        if (text !== String(f.options[option])) fail(`${f.name}'s ${option} shows "${text}", the API says ${f.options[option]}`);
      }
    }
    step('apps and functions with options shown');

    // Containers (the calls above started some; they stay for the scaledown window).
    await see(page.locator('#containers tbody tr[data-container-id]'), 'any container');
    const containerText = await page.locator('#containers tbody tr[data-container-id]').first().textContent();
    if (!containerText.includes(APP)) fail(`a container row should name its app: ${containerText}`);
    step(`containers shown (${await page.locator('#containers tbody tr[data-container-id]').count()})`);

    // Calls with their statuses, the failure with its message.
    for (const c of [added, squared, graphCall]) {
      await see(page.locator(`#calls tr[data-call-id="${c.callId}"][data-status="succeeded"]`), `call ${c.callId} as succeeded`);
    }
    const failedRow = page.locator(`#calls tr[data-call-id="${failed.callId}"][data-status="failed"]`);
    await see(failedRow, `call ${failed.callId} as failed`);
    if (!(await failedRow.textContent()).includes(failedMessage)) fail(`the failed call's row should show "${failedMessage}"`);
    const ids = await page.locator('#calls tbody tr[data-call-id]').evaluateAll((rows) => rows.map((r) => r.dataset.callId));
    if (ids.indexOf(graphCall.callId) > ids.indexOf(added.callId)) fail(`calls should be listed newest first: ${ids.join(' ')}`);
    // A long, many-line error takes one line in its row (the whole message is its tooltip).
    const crashedRow = page.locator(`#calls tr[data-call-id="${crashed.callId}"][data-status="failed"]`);
    await see(crashedRow, `call ${crashed.callId} as failed`);
    const crashedCell = crashedRow.locator('td.error-message');
    const shown = await crashedCell.textContent();
    if (shown.includes('\n') || shown.length > 161) fail(`a long error should be cut to one line in its row: ${JSON.stringify(shown)}`);
    if (await crashedCell.getAttribute('title') !== crashed.body.error.message) fail('the cut error\'s tooltip should be the whole message');
    const rowHeight = async (id) => (await page.locator(`#calls tr[data-call-id="${id}"]`).boundingBox()).height;
    if (await rowHeight(crashed.callId) > 1.5 * await rowHeight(added.callId)) {
      fail(`the crashed call's row is ${await rowHeight(crashed.callId)} px tall, an ordinary one ${await rowHeight(added.callId)} px`);
    }
    step('calls shown with statuses and the error message; a long error on one line');
    await page.screenshot({ path: join(outputDir, 'overview.png'), fullPage: true });

    // One call's detail: its graph of futures and its logs.
    await page.locator(`#calls tr[data-call-id="${graphCall.callId}"]`).click();
    await see(page.locator(`#call-detail[data-call-id="${graphCall.callId}"]`), 'the call detail');
    if (!page.url().includes(`call=${graphCall.callId}`)) fail(`the selected call should be in the URL: ${page.url()}`);
    const nodes = page.locator('#call-graph g.node[data-call-id]');
    await until(() => nodes.count(), (n) => n >= graph.nodes.length,
      `the graph should draw the ${graph.nodes.length} nodes of GET /v1/calls/{id}/graph`);
    for (const n of graph.nodes) await see(page.locator(`#call-graph g.node[data-call-id="${n.call_id}"][data-status="${n.status}"]`), `graph node ${n.call_id} (${n.status})`);
    const edges = await page.locator('#call-graph g.edge').count();
    if (edges < graph.edges.length) fail(`the graph draws ${edges} edges, the API has ${graph.edges.length}`);
    for (const kind of new Set(graph.edges.map((e) => e.kind))) await see(page.locator(`#call-graph g.edge[data-kind="${kind}"]`), `a ${kind} edge`);
    await see(page.locator(`#call-graph g.node[data-call-id="${graphCall.callId}"]`), 'the call itself in its graph');
    const logs = await http(base, token, 'GET', `/v1/calls/${graphCall.callId}/logs`);
    if (logs.status !== 200) fail(`GET /v1/calls/${graphCall.callId}/logs answered ${logs.status}: ${logs.text}`);
    if (hasPipeline) {
      if (!logs.body.logs.length) fail(`pipeline printed lines, but GET /v1/calls/${graphCall.callId}/logs has none`);
      await see(page.locator('#call-logs .log').filter({ hasText: logs.body.logs[0].text }), `the log line "${logs.body.logs[0].text}"`);
    }
    step(`call detail shows ${graph.nodes.length} nodes, ${edges} edges, ${logs.body.logs.length} log lines`);

    // A reload keeps the selected call; a node opens its call (whose graph holds only what it led to).
    await page.reload();
    await see(page.locator(`#call-detail[data-call-id="${graphCall.callId}"] #call-graph g.node`), 'the selected call after a reload');
    const child = graph.nodes.find((n) => n.call_id !== graphCall.callId);
    await page.locator(`#call-graph g.node[data-call-id="${child.call_id}"]`).click();
    await see(page.locator(`#call-detail[data-call-id="${child.call_id}"]`), `call ${child.call_id} after clicking its node`);
    await page.locator(`#calls tr[data-call-id="${graphCall.callId}"]`).click();
    await see(page.locator(`#call-detail[data-call-id="${graphCall.callId}"] #call-graph g.node`), 'the graph call again');
    await until(() => nodes.count(), (n) => n >= graph.nodes.length, 'the graph should be drawn again');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(outputDir, 'call-detail.png'), fullPage: true });

    // The failed call's detail shows its error: the exception's type with the code beside it.
    await page.locator(`#calls tr[data-call-id="${failed.callId}"]`).click();
    await see(page.locator('#call-error').filter({ hasText: failedMessage }), 'the failed call\'s error in its detail');
    const failedHeading = await page.locator('#call-error').textContent();
    if (!failedHeading.startsWith('e2e::test_error (remote_exception)')) fail(`the error's heading says: ${failedHeading}`);
    // An error without an exception type names its code once.
    await page.locator(`#calls tr[data-call-id="${crashed.callId}"]`).click();
    await see(page.locator(`#call-detail[data-call-id="${crashed.callId}"]`), 'the crashed call\'s detail');
    const crashedHeading = await page.locator('#call-error strong').textContent();
    const crashedError = await page.locator('#call-error').textContent();
    if (crashedHeading !== 'container_crashed' || crashedError.includes('(container_crashed)')) {
      fail(`the crashed call's error should name its code once: ${crashedError.slice(0, 120)}`);
    }
    // Dates in one format, the CLI's.
    const fieldsText = await page.locator('#call-fields').textContent();
    for (const label of ['created', 'ended']) {
      const value = await page.locator('#call-fields dt', { hasText: label }).locator('xpath=following-sibling::dd[1]').textContent();
      if (!/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(value)) fail(`'${label}' shows "${value}", not YYYY-MM-DD HH:MM:SS (${fieldsText})`);
    }
    step('a call\'s error names its code once; dates read YYYY-MM-DD HH:MM:SS');

    // Live refresh: a call made while the page is open shows up without a reload.
    const late = await call(base, token, 'add', [40, 2], 200);
    await see(page.locator(`#calls tr[data-call-id="${late.callId}"][data-status="succeeded"]`), `call ${late.callId}, made after the page opened`);
    step('a new call appeared without reload');

    if (pageErrors.length) fail(`the page raised errors: ${pageErrors.join('; ')}`);
    console.log(`dashboard: all checks passed; screenshots in ${outputDir}`);
  } finally {
    if (browser) await browser.close().catch(() => {});
    await server.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e instanceof CheckFailed ? `FAILED: ${e.message}` : `FAILED: ${e.stack || e}`);
  process.exit(1);
});
