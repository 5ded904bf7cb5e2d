// The playground, as a newcomer uses it, with no internet: load GraphiQL
// from a running walletql, run createClient through the editor, see the
// result; then put the client's token in the headers editor and run a
// subscription over WebSocket, and see a deposit arrive; then open the
// documentation explorer and see that the playground loaded the schema (its
// introspection query got through). Screenshots are kept in target/browser/
// (the first is the README's picture).
//
//   WALLETQL_BIN=target/debug/walletql node tests/browser/graphiql.mjs
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const bin = resolve(process.env.WALLETQL_BIN ?? 'target/debug/walletql');
const out = resolve(process.env.SCREENSHOT_DIR ?? 'target/browser');
// 40 characters: the server refuses operator tokens shorter than 32.
const operator = randomBytes(30).toString('base64url');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const dir = mkdtempSync(join(tmpdir(), 'walletql-browser-'));

// The embedded default database, as a newcomer's first run.
const env = { ...process.env, LISTEN_ADDR: '127.0.0.1:0', OPERATOR_TOKEN: operator, RUST_LOG: 'info' };
delete env.DATABASE_URL;
const server = spawn(bin, [], {
  cwd: dir,
  env,
  stdio: ['ignore', 'pipe', 'inherit'],
});
const base = await new Promise((resolveAddr, reject) => {
  const timer = setTimeout(() => reject(new Error('walletql did not start')), 30000);
  server.stdout.on('data', (chunk) => {
    const match = /address=([0-9.:]+)/.exec(chunk.toString());
    if (match) {
      clearTimeout(timer);
      resolveAddr(`http://${match[1]}`);
    }
  });
  server.on('exit', (code, signal) => {
    clearTimeout(timer);
    reject(new Error(`walletql exited (${signal ?? `code ${code}`}) before reporting its address`));
  });
}).catch((error) => {
  console.error(error.message);
  server.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
});

let browser;
let failed = false;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
  const offsite = [];
  page.on('request', (request) => {
    if (!request.url().startsWith(base) && !request.url().startsWith(base.replace('http', 'ws'))) offsite.push(request.url());
  });
  await page.goto(`${base}/graphql`);
  const editor = page.locator('.graphiql-query-editor .CodeMirror').first();
  await editor.waitFor({ timeout: 30000 });

  // Type a mutation into the editor and run it.
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type('mutation NewClient { createClient(input: { name: "Browser Ada" }) { token wallet { id balance } } }');
  // GraphiQL re-reads the document's operations after a short debounce.
  await page.waitForTimeout(700);
  await page.locator('.graphiql-execute-button').click();
  const result = page.locator('.graphiql-response .CodeMirror');
  await page.waitForFunction(() => document.querySelector('.graphiql-response')?.innerText.includes('"token"'), null, { timeout: 30000 });
  const text = await result.innerText();
  if (!text.includes('Browser Ada') && !text.includes('"balance": "0.00"')) throw new Error(`unexpected result: ${text}`);
  await page.screenshot({ path: join(out, 'graphiql.png') });
  const token = /"token": "([^"]+)"/.exec(text)?.[1];
  const wallet = /"id": "([^"]+)"/.exec(text)?.[1];
  if (!token || !wallet) throw new Error(`no token or wallet in: ${text}`);

  // Authenticate in the headers editor and subscribe over WebSocket.
  await page.getByText('Headers', { exact: true }).click();
  const headers = page.locator('.graphiql-editor-tool .CodeMirror').last();
  await headers.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(`{"Authorization": "Bearer ${token}"}`);
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(`subscription Live { operationCreated(walletId: "${wallet}") { kind amount balanceAfter sequence } }`);
  await page.waitForTimeout(700);
  await page.locator('.graphiql-execute-button').click();
  // A deposit by the operator while the subscription runs.
  let arrived = false;
  for (let attempt = 0; attempt < 20 && !arrived; attempt += 1) {
    await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${operator}` },
      body: JSON.stringify({ query: `mutation { deposit(input: { walletId: "${wallet}", amount: "12.34" }) { wallet { balance } } }` }),
    });
    arrived = await page
      .waitForFunction(() => document.querySelector('.graphiql-response')?.innerText.includes('12.34'), null, { timeout: 1000 })
      .then(() => true, () => false);
  }
  await page.screenshot({ path: join(out, 'graphiql-subscription.png') });
  if (!arrived) throw new Error('the deposit never reached the subscription');

  // The schema reached the playground: its documentation explorer lists the
  // root query type's fields (GraphiQL shows "Error fetching schema" there
  // when its introspection query was refused).
  const docsButton = page.locator('.graphiql-sidebar button[aria-label="Show Documentation Explorer"]');
  await docsButton.waitFor({ timeout: 15000 });
  await docsButton.click();
  const docs = page.locator('.graphiql-doc-explorer').first();
  const queryRoot = docs
    .locator('.graphiql-doc-explorer-section-content > div', {
      has: page.locator('.graphiql-doc-explorer-root-type', { hasText: /^query$/ }),
    })
    .locator('a.graphiql-doc-explorer-type-name');
  const docsError = docs.locator('.graphiql-doc-explorer-error');
  const loaded = await Promise.race([
    queryRoot.waitFor({ timeout: 15000 }).then(() => true),
    docsError.waitFor({ timeout: 15000 }).then(() => false),
  ]).catch(() => null);
  if (loaded !== true) {
    await page.screenshot({ path: join(out, 'graphiql-docs.png') });
    const shown = loaded === false ? `the explorer says "${(await docsError.innerText()).trim()}"` : 'no root types within 15 s';
    // GraphiQL puts the introspection error in the response pane too.
    await page.locator('.graphiql-sidebar button[aria-label="Re-fetch GraphQL schema"]').click().catch(() => {});
    await page.waitForTimeout(1000);
    const response = (await page.locator('.graphiql-response').innerText().catch(() => '')).replace(/\s+/g, ' ').slice(0, 500);
    throw new Error(`GraphiQL did not load the schema: ${shown}; response pane: ${response}`);
  }
  const rootName = (await queryRoot.innerText()).trim();
  await queryRoot.click();
  const fieldNames = docs.locator('a.graphiql-doc-explorer-field-name');
  const listed = await page
    .waitForFunction(
      () => {
        const names = [...document.querySelectorAll('.graphiql-doc-explorer a.graphiql-doc-explorer-field-name')].map((a) => a.textContent.trim());
        return names.includes('wallet') && names.includes('me');
      },
      null,
      { timeout: 15000 },
    )
    .then(() => true, () => false);
  await page.screenshot({ path: join(out, 'graphiql-docs.png') });
  const names = await fieldNames.allInnerTexts();
  if (!listed) throw new Error(`the docs for the query type ${rootName} do not list wallet and me: [${names.join(', ')}]`);
  console.log(`ok: the documentation explorer shows the schema (query type ${rootName}: ${names.join(', ')})`);
  if (offsite.length > 0) throw new Error(`the page reached outside walletql: ${offsite.join(', ')}`);
  console.log(`ok: createClient and a live subscription through GraphiQL; screenshots in ${out}`);
} catch (error) {
  failed = true;
  console.error(error);
  const pages = browser ? browser.contexts().flatMap((c) => c.pages()) : [];
  if (pages.length > 0) {
    await pages[0].screenshot({ path: join(out, 'failure.png') }).catch(() => {});
    console.error(`page text: ${(await pages[0].innerText('body').catch(() => '')).slice(0, 2000)}`);
  }
} finally {
  if (browser) await browser.close();
  server.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
