import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
const req = createRequire('/work/main/tests/frontend/package.json');
const { buildSchema, graphqlSync } = req('graphql');
const fake = process.env.FAKE === '1';
const schema = buildSchema(readFileSync(process.env.SCHEMA ?? '/work/main/schema.graphql', 'utf8'));
const dir = mkdtempSync(join(tmpdir(), 'x-'));
const server = spawn(process.env.WALLETQL_BIN, [], { cwd: dir, env: { ...process.env, LISTEN_ADDR: '127.0.0.1:0', OPERATOR_TOKEN: 'a'.repeat(40), RUST_LOG: 'info' }, stdio: ['ignore', 'pipe', 'inherit'] });
const base = await new Promise((r) => server.stdout.on('data', (c) => { const m = /address=([0-9.:]+)/.exec(c.toString()); if (m) r(`http://${m[1]}`); }));
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
  if (fake) await page.route(`${base}/graphql`, async (route) => {
    const body = route.request().postData();
    if (body && body.includes('__schema')) {
      const { query } = JSON.parse(body);
      return route.fulfill({ contentType: 'application/json', body: JSON.stringify(graphqlSync({ schema, source: query })) });
    }
    return route.continue();
  });
  await page.goto(`${base}/graphql`);
  await page.locator('.graphiql-query-editor .CodeMirror').first().waitFor();
  await page.waitForTimeout(2000);
  const buttons = await page.$$eval('.graphiql-sidebar button', (bs) => bs.map((b) => `${b.getAttribute('aria-label')} | ${b.className} | disabled=${b.disabled}`));
  console.log(buttons.join('\n'));
  await page.locator('.graphiql-sidebar button[aria-label="Show Documentation Explorer"]').click();
  await page.waitForTimeout(1500);
  console.log('--- doc explorer html:\n', (await page.locator('.graphiql-doc-explorer').first().innerHTML().catch((e) => 'none ' + e)).slice(0, 4000));
  await page.screenshot({ path: '/tmp/explore.png' });
  console.log('--- body text:\n', (await page.innerText('body')).slice(0, 1500));
} finally { await browser.close(); server.kill(); }
