// The reference web app against a real walletql, in headless Chromium:
// two browser contexts, a customer and a merchant. The customer authorises
// a payment and it appears on the merchant's screen without a reload; the
// merchant captures part and both screens update; a refund appears live;
// a payment whose answer is lost after it committed is retried by the app
// with the same idempotency key and charged once. The server runs with the
// app's trusted-documents manifest, as in production.
//
//   (cd examples/wallet-web && npm ci && npm run build)
//   WALLETQL_BIN=target/debug/walletql node examples/wallet-web/test/e2e.mjs
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const app = resolve(here, '..');
const dist = join(app, 'dist');
const bin = resolve(process.env.WALLETQL_BIN ?? 'target/debug/walletql');
const shots = resolve(process.env.SCREENSHOT_DIR ?? 'target/web');
const operator = randomBytes(30).toString('base64url');
mkdirSync(shots, { recursive: true });
if (!existsSync(join(dist, 'index.html'))) throw new Error('build the app first: npm run build');

// The built app, served as a CDN would.
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
const statics = createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const file = join(dist, path === '/' ? 'index.html' : path);
  if (!file.startsWith(dist) || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
  res.end(readFileSync(file));
});
await new Promise((r) => statics.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${statics.address().port}`;

const dir = mkdtempSync(join(tmpdir(), 'wallet-web-'));
const env = {
  ...process.env,
  LISTEN_ADDR: '127.0.0.1:0',
  OPERATOR_TOKEN: operator,
  CORS_ALLOWED_ORIGINS: origin,
  TRUSTED_DOCUMENTS: join(app, 'src/gql/persisted-documents.json'),
  RUST_LOG: 'info',
};
delete env.DATABASE_URL;
const server = spawn(bin, [], { cwd: dir, env, stdio: ['ignore', 'pipe', 'inherit'] });
const api = await new Promise((ok, fail) => {
  const timer = setTimeout(() => fail(new Error('walletql did not start')), 30000);
  server.stdout.on('data', (chunk) => {
    const match = /address=([0-9.:]+)/.exec(chunk.toString());
    if (match) {
      clearTimeout(timer);
      ok(`http://${match[1]}/graphql`);
    }
  });
  server.on('exit', (code) => fail(new Error(`walletql exited (${code})`)));
});

// The operator's own calls (documents/service.graphql, exempt from the
// trusted documents), sent by operation name.
const SERVICE = readFileSync(join(here, '..', '..', '..', 'documents', 'service.graphql'), 'utf8');

async function asOperator(operationName, variables = {}) {
  const response = await fetch(api, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${operator}` },
    body: JSON.stringify({ query: SERVICE, operationName, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const results = [];
async function step(name, fn) {
  try {
    const detail = await fn();
    results.push(true);
    console.log(`ok: ${name}${detail ? ` — ${detail}` : ''}`);
  } catch (error) {
    results.push(false);
    console.log(`FAILED: ${name}: ${error.stack ?? error}`);
    throw error;
  }
}

let browser;
try {
  const customer = (await asOperator('CreateClient', { input: { name: 'Customer' } })).createClient;
  const merchant = (await asOperator('CreateClient', { input: { name: 'Merchant' } })).createClient;
  await asOperator('Deposit', { input: { walletId: customer.wallet.id, amount: '100.00' } });

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  async function signIn(who) {
    const context = await browser.newContext({ viewport: { width: 900, height: 1100 } });
    const page = await context.newPage();
    page.on('pageerror', (error) => console.log(`page error (${who.wallet.id.slice(0, 8)}): ${error}`));
    page.on('console', (message) => { if (message.type() === 'error') console.log(`console (${who.wallet.id.slice(0, 8)}): ${message.text()}`); });
    await page.goto(`${origin}/?api=${encodeURIComponent(api)}`);
    await page.getByTestId('token').fill(who.token);
    await page.getByTestId('sign-in').click();
    await page.getByTestId('wallet-id').waitFor({ timeout: 10000 }).catch(async (error) => {
      throw new Error(`${error.message}; the page shows: ${await page.locator('body').innerText()}`);
    });
    return page;
  }
  const text = (page, id) => page.getByTestId(id).first();
  const expectText = async (page, id, value) => {
    await page.waitForFunction(
      ([id, value]) => document.querySelector(`[data-testid="${id}"]`)?.textContent === value,
      [id, value],
      { timeout: 10000 },
    ).catch(async () => {
      throw new Error(`${id} is "${await text(page, id).textContent()}", expected "${value}"`);
    });
  };

  const shop = await signIn(merchant);
  const buyer = await signIn(customer);
  await step('both sign in with their tokens and see their balances', async () => {
    await expectText(buyer, 'balance', '100.00');
    await expectText(shop, 'balance', '0.00');
  });

  await step('an authorised payment appears on the merchant screen without a reload', async () => {
    await buyer.getByTestId('pay-to').fill(merchant.wallet.id);
    await buyer.getByTestId('pay-amount').fill('40.00');
    await buyer.getByTestId('hold').click();
    await expectText(buyer, 'pay-status', 'Held 40.00');
    await expectText(buyer, 'available', '60.00');
    await shop.getByTestId('incoming-hold').waitFor({ timeout: 10000 });
    await expectText(shop, 'hold-amount', '40.00');
    await expectText(shop, 'incoming', '40.00');
    return 'INCOMING_HOLD heard live';
  });

  await step('the merchant captures part; both screens update', async () => {
    await shop.getByTestId('capture-amount').fill('25.00');
    await shop.getByTestId('capture').click();
    await expectText(shop, 'balance', '25.00');
    await expectText(shop, 'incoming', '0.00');
    await expectText(buyer, 'balance', '75.00');
    await expectText(buyer, 'available', '75.00');
    await shop.getByTestId('no-holds').waitFor();
  });

  await step('a refund appears live on the customer screen', async () => {
    await shop.getByTestId('refund-one').click();
    await expectText(shop, 'refunded', '1.00');
    await expectText(buyer, 'balance', '76.00');
    await expectText(buyer, 'op-kind', 'TRANSFER_IN');
    await expectText(buyer, 'op-amount', '1.00');
  });

  await step('a payment whose answer is lost is retried with its key and charged once', async () => {
    let dropped = 0;
    await buyer.route('**/graphql', async (route) => {
      const body = route.request().postData() ?? '';
      if (dropped === 0 && route.request().method() === 'POST' && body.includes('"operationName":"Pay"')) {
        dropped += 1;
        // The request reaches the server and commits; its answer is lost.
        await route.fetch();
        await route.abort('connectionreset');
        return;
      }
      await route.continue();
    });
    await buyer.getByTestId('pay-amount').fill('10.00');
    await buyer.getByTestId('pay').click();
    await expectText(buyer, 'pay-status', 'Paid 10.00');
    await expectText(buyer, 'balance', '66.00');
    await expectText(shop, 'balance', '34.00');
    const seen = await asOperator('Transfers', { walletId: customer.wallet.id, first: 20, filter: { direction: 'OUTGOING' } });
    const tens = seen.transfers.nodes.filter((t) => t.amount === '10.00');
    if (dropped !== 1 || tens.length !== 1) throw new Error(`dropped ${dropped}, 10.00 payments ${tens.length}`);
    return 'one answer dropped, one transfer stored';
  });

  await step('history scrolls and filters by kind', async () => {
    // 25 more rows: the history shows 10 at a time and loads the rest as
    // its end scrolls into view.
    for (let i = 0; i < 25; i += 1) {
      await asOperator('Deposit', { input: { walletId: customer.wallet.id, amount: '0.01' } });
    }
    await expectText(buyer, 'balance', '66.25');
    const rows = () => buyer.locator('[data-testid="operation"]').count();
    // As a reader would: scroll to the end, and if nothing came, up a
    // little and down again (the end coming into view again is what asks
    // for the next page; a load in flight when it came into view took it).
    for (let tries = 0; tries < 40 && (await rows()) < 31; tries += 1) {
      if (tries % 2 === 1) await buyer.mouse.wheel(0, -400);
      await buyer.mouse.wheel(0, 5000);
      await buyer.waitForTimeout(200);
    }
    const total = await rows();
    if (total !== 31) throw new Error(`${total} rows after scrolling, expected all 31`);
    await buyer.getByTestId('kind').selectOption('HOLD');
    await buyer.waitForFunction(() => {
      const kinds = [...document.querySelectorAll('[data-testid="op-kind"]')].map((e) => e.textContent);
      return kinds.length === 1 && kinds[0] === 'HOLD';
    });
    await buyer.getByTestId('kind').selectOption('');
    await buyer.screenshot({ path: join(shots, 'customer.png'), fullPage: true });
    await shop.screenshot({ path: join(shots, 'merchant.png'), fullPage: true });
  });
} catch (error) {
  // A failed step was reported by it; anything else is reported here.
  if (results.every((ok) => ok)) {
    results.push(false);
    console.log(`FAILED: setting up: ${error.stack ?? error}`);
  }
} finally {
  await browser?.close();
  server.kill('SIGTERM');
  statics.close();
  rmSync(dir, { recursive: true, force: true });
}
const failed = results.filter((ok) => !ok).length;
console.log(`\nwallet-web: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 && results.length === 6 ? 0 : 1);
