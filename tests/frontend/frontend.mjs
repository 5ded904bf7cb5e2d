// What a frontend team does with walletql, with the npm tools they use:
//   1. graphql-codegen (typescript + typescript-operations) introspects the
//      LIVE endpoint and types a small operations document; tsc --strict
//      compiles those types with code that uses them, and no custom scalar
//      (Decimal, UUID, DateTime) may have come out as `any` or `unknown`;
//   2. a graphql-ws client (over the `ws` package) subscribes to a wallet's
//      operationCreated while HTTP mutations deposit into it and transfer out
//      of it, and must see DEPOSIT then TRANSFER_OUT with the right amounts;
//   3. the wallet query pages through that history;
//   4. a hold: the payer authorises, the payee captures part of it, and the
//      payer's subscription sees HOLD, HOLD_RELEASE and TRANSFER_OUT;
//   5. relay-compiler accepts @refetchable fragments on Wallet and Transfer;
//   6. Apollo's InMemoryCache and urql's graphcache show both wallets' new
//      balances after an operator ends a hold, with no refetch (the
//      payload's `wallets`).
// The server is the built binary, on a fresh SQLite database, killed at the
// end whatever happens.
//
//   (cd tests/frontend && npm ci)
//   WALLETQL_BIN=target/debug/walletql node tests/frontend/frontend.mjs
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { generate } from '@graphql-codegen/cli';
import { Kind, parse, print, visit } from 'graphql';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const bin = resolve(process.env.WALLETQL_BIN ?? 'target/debug/walletql');
// 40 characters: the server refuses operator tokens shorter than 32.
const operator = randomBytes(30).toString('base64url');
const dir = mkdtempSync(join(tmpdir(), 'walletql-frontend-'));
const STEP_TIMEOUT = 15000;

// The operations our apps send, written once in documents/ (the web app's
// two files and service.graphql; load.graphql is the load generator's): all
// go through codegen, and each is sent on its own at run time, as a client
// cuts it out with the fragments it spreads.
const DOCUMENT_FILES = ['wallet.graphql', 'payments.graphql', 'service.graphql']
  .map((file) => join(here, '..', '..', 'documents', file));
const DOCUMENTS = parse(DOCUMENT_FILES.map((file) => readFileSync(file, 'utf8')).join('\n'));
const OPERATIONS = Object.fromEntries(
  DOCUMENTS.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION).map((d) => [d.name.value, cutOut(d)]),
);

// Code that uses the generated types as an app would. Besides compiling, it
// asserts at the type level that amounts, ids and timestamps are `string`
// (not `any`, not `unknown`) and that a number is refused as an amount.
const USAGE = `import type {
  AuthorizeTransferMutation,
  CaptureTransferMutation,
  CreateClientMutation,
  DepositMutation,
  OperationCreatedSubscription,
  TransferMutation,
  TransferMutationVariables,
  HistoryQuery,
  HistoryQueryVariables,
} from './operations';
import type { Mutation, Query, Scalars, Subscription } from './schema-types';

type IsAny<T> = 0 extends 1 & T ? true : false;
type IsUnknown<T> = IsAny<T> extends true ? false : unknown extends T ? true : false;
type StrictString<T> = IsAny<T> extends true ? 'any' : IsUnknown<T> extends true ? 'unknown' : [T] extends [string] ? true : 'not a string';
// Every mutation field is nullable: one refused alias is null on its own
// and never hides another that committed.
type Nullable<T> = null extends T ? true : 'never null';
const nullableMutations: [
  Nullable<TransferMutation['transfer']>,
  Nullable<DepositMutation['deposit']>,
  Nullable<CaptureTransferMutation['captureTransfer']>,
  Nullable<Mutation['transferBatch']>,
] = [true, true, true, true];
const scalarChecks: [
  StrictString<NonNullable<TransferMutation['transfer']>['transfer']['amount']>,
  StrictString<NonNullable<TransferMutation['transfer']>['transfer']['id']>,
  StrictString<NonNullable<TransferMutation['transfer']>['fromWallet']['balance']>,
  StrictString<NonNullable<DepositMutation['deposit']>['operation']['amount']>,
  StrictString<NonNullable<CreateClientMutation['createClient']>['wallet']['id']>,
  StrictString<HistoryQuery['operations']['edges'][number]['node']['createdAt']>,
  StrictString<HistoryQuery['operations']['edges'][number]['node']['balanceAfter']>,
  StrictString<OperationCreatedSubscription['operationCreated']['amount']>,
  StrictString<TransferMutationVariables['input']['amount']>,
  StrictString<HistoryQueryVariables['walletId']>,
  StrictString<Scalars['Decimal']['output']>,
  StrictString<Scalars['UUID']['input']>,
  StrictString<Scalars['DateTime']['output']>,
  StrictString<Query['wallet']['balance']>,
  StrictString<NonNullable<Mutation['transfer']>['transfer']['amount']>,
  StrictString<Subscription['operationCreated']['createdAt']>,
  StrictString<NonNullable<AuthorizeTransferMutation['authorizeTransfer']>['fromWallet']['availableBalance']>,
  StrictString<NonNullable<NonNullable<CaptureTransferMutation['captureTransfer']>['transfer']['capturedAmount']>>,
] = [true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true];

// Until POSTED a transfer has no captured amount: the type says so.
export function captured(result: CaptureTransferMutation): string | null {
  return result.captureTransfer ? result.captureTransfer.transfer.capturedAmount ?? '0.00' : null;
}

// null: refused (its error says why), and nothing moved.
export function transferred(result: TransferMutation): { id: string; amount: string; payee: string; balance: string } | null {
  const paid = result.transfer;
  if (!paid) return null;
  const amount: string = paid.transfer.amount;
  return {
    id: paid.transfer.id,
    amount: amount.padStart(12),
    payee: paid.toWallet.walletId,
    balance: paid.fromWallet.balance,
  };
}

export function signUp(result: CreateClientMutation): { token: string; walletId: string; name: string } | null {
  const created = result.createClient;
  return created && { token: created.token, walletId: created.wallet.id, name: created.client.name };
}

export function historyRows(result: HistoryQuery): string[] {
  return result.operations.edges.map(
    (edge) => \`\${edge.cursor} \${edge.node.kind} \${edge.node.amount.trim()} → \${edge.node.balanceAfter} at \${new Date(edge.node.createdAt).toISOString()}\`,
  );
}

export function nextPage(walletId: string, result: HistoryQuery): HistoryQueryVariables | null {
  const { hasNextPage, endCursor } = result.operations.pageInfo;
  return hasNextPage && endCursor ? { walletId, first: 10, after: endCursor } : null;
}

export function describe(event: OperationCreatedSubscription): string {
  const op = event.operationCreated;
  return \`\${op.kind}: \${op.amount.toUpperCase()} (balance \${op.balanceAfter}) #\${op.cursor}\`;
}

export const pay: TransferMutationVariables = {
  input: { fromWalletId: randomId(), toWalletId: randomId(), amount: '2.50', idempotencyKey: 'k', description: null },
};
// @ts-expect-error an amount is a decimal string, never a JS number
export const payWithNumber: TransferMutationVariables = { input: { fromWalletId: 'a', toWalletId: 'b', amount: 2.5 } };

function randomId(): string {
  return '00000000-0000-0000-0000-000000000000';
}
void scalarChecks;
void nullableMutations;
`;

const CUSTOM_SCALARS = ['Decimal', 'UUID', 'DateTime'];

// ---------------------------------------------------------------- the server
const serverLog = [];
const server = spawn(bin, [], {
  cwd: dir,
  env: {
    ...process.env,
    DATABASE_URL: `sqlite://${join(dir, 'fe.db')}?mode=rwc`,
    LISTEN_ADDR: '127.0.0.1:0',
    OPERATOR_TOKEN: operator,
    RUST_LOG: 'info',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
const stopServer = () => {
  if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM');
};
process.on('exit', stopServer);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopServer();
    process.exit(1);
  });
}
createInterface({ input: server.stderr }).on('line', (line) => serverLog.push(line));

let results = [];
let failedToStart = null;
let base;
try {
  // As tests/browser/graphiql.mjs does: the address is in the log line
  // `... walletql listening; ... address=127.0.0.1:PORT ...` on stdout.
  base = await new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error('walletql did not report its address within 30 s')), 30000);
    createInterface({ input: server.stdout }).on('line', (line) => {
      serverLog.push(line);
      const match = /address=([0-9.:]+)/.exec(line);
      if (match && line.includes('listening')) {
        clearTimeout(timer);
        resolveAddr(`http://${match[1]}`);
      }
    });
    server.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${bin}: ${error.message}`));
    });
    server.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`walletql exited (${signal ?? `code ${code}`}) before reporting its address`));
    });
  });
  console.log(`walletql (${bin}) at ${base}`);
  results = await runChecks(base);
} catch (error) {
  failedToStart = error;
} finally {
  stopServer();
  rmSync(dir, { recursive: true, force: true });
}

if (failedToStart) {
  console.error(`FAIL: ${failedToStart.message}`);
  console.error(`server output:\n${serverLog.slice(-40).join('\n')}`);
  process.exit(1);
}
const passed = results.filter((r) => r.status === 'passed').length;
const failed = results.filter((r) => r.status === 'failed').length;
const skipped = results.filter((r) => r.status === 'skipped').length;
if (failed > 0) {
  console.error('\nfailed:');
  for (const r of results.filter((r) => r.status !== 'passed')) console.error(`  ${r.status}: ${r.name}: ${r.message.replace(/\s*\n\s*/g, ' ').slice(0, 400)}`);
  console.error(`\nlast server output:\n${serverLog.slice(-20).join('\n')}`);
}
console.log(`\nfrontend: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);

// ---------------------------------------------------------------- the checks
async function runChecks(base) {
  const out = [];
  const check = async (name, fn, needs = []) => {
    const missing = needs.filter((n) => out.find((r) => r.name === n)?.status !== 'passed');
    if (missing.length > 0) {
      const message = `needs: ${missing.join('; ')}`;
      out.push({ name, status: 'skipped', message });
      console.log(`skipped: ${name} (${message})`);
      return;
    }
    try {
      const detail = await withTimeout(fn(), 60000, name);
      out.push({ name, status: 'passed' });
      console.log(`ok: ${name}${detail ? ` — ${detail}` : ''}`);
    } catch (error) {
      out.push({ name, status: 'failed', message: error.message });
      console.error(`FAIL: ${name}: ${error.message}`);
    }
  };

  const work = mkdtempSync(join(tmpdir(), 'walletql-codegen-'));
  // codegen 6's multi-file setup: the `typescript` plugin writes the schema's
  // types; `typescript-operations` writes the operations' types and imports
  // the inputs and enums they use from that file.
  const schemaTypesPath = join(work, 'schema-types.ts');
  const operationsPath = join(work, 'operations.ts');
  try {
    await check('root types are named Query, Mutation, Subscription', async () => {
      const data = await post(base, '{ __schema { queryType { name } mutationType { name } subscriptionType { name } } }');
      const names = [data.__schema.queryType?.name, data.__schema.mutationType?.name, data.__schema.subscriptionType?.name];
      if (names.join() !== 'Query,Mutation,Subscription') throw new Error(`root types are ${names.join(', ')}`);
    });

    const CODEGEN = 'graphql-codegen (typescript + typescript-operations) from the live endpoint';
    await check(CODEGEN, async () => {
      
      const scalar = { input: 'string', output: 'string' };
      try {
        await generate(
          {
            cwd: work,
            schema: `${base}/graphql`,
            documents: DOCUMENT_FILES,
            generates: {
              [schemaTypesPath]: { plugins: ['typescript'] },
              [operationsPath]: {
                plugins: ['typescript-operations'],
                // Resolved from the process's working directory.
                config: { importSchemaTypesFrom: relative(process.cwd(), schemaTypesPath) },
              },
            },
            config: {
              // An unmapped custom scalar is an error, not a silent `any`.
              strictScalars: true,
              scalars: { Decimal: scalar, UUID: scalar, DateTime: scalar },
            },
            silent: true,
            // Plugins resolve from this folder's node_modules, wherever the
            // script is run from.
            pluginLoader: (name) => import(name),
          },
          true,
        );
      } catch (error) {
        throw new Error(`codegen failed: ${describeCodegenError(error)}`);
      }
      const schemaTypes = readFileSync(schemaTypesPath, 'utf8');
      const operations = readFileSync(operationsPath, 'utf8');
      for (const name of Object.keys(OPERATIONS)) {
        const kind = /^(\w+)/.exec(OPERATIONS[name])[1];
        const type = `${name}${kind[0].toUpperCase()}${kind.slice(1)}`;
        if (!new RegExp(`export type ${type}\\b`).test(operations)) throw new Error(`no type ${type} in operations.ts`);
      }
      for (const name of CUSTOM_SCALARS) {
        const line = new RegExp(`^\\s*${name}: (.*)$`, 'm').exec(schemaTypes)?.[1];
        if (!line) throw new Error(`scalar ${name} missing from Scalars in schema-types.ts`);
        if (line.replace(/\s/g, '') !== '{input:string;output:string;}') throw new Error(`scalar ${name} came out as ${line}`);
      }
      // No `any`/`unknown` anywhere but in codegen's own helper types.
      for (const [file, text] of [['schema-types.ts', schemaTypes], ['operations.ts', operations]]) {
        const loose = text
          .replace(/\/\*[\s\S]*?\*\//g, '')
          .replace(/\/\/.*$/gm, '')
          .split('\n')
          .filter((l) => !/^\s*(export )?type (Exact|Incremental|MakeOptional|MakeMaybe|MakeEmpty)\b/.test(l))
          .filter((l) => /\b(any|unknown)\b/.test(l));
        if (loose.length > 0) throw new Error(`loose types in ${file}:\n    ${loose.join('\n    ')}`);
      }
      const lines = (text) => text.split('\n').length;
      return `schema-types.ts ${lines(schemaTypes)} lines, operations.ts ${lines(operations)} lines; Decimal/UUID/DateTime → string`;
    });

    await check('tsc --noEmit --strict on the generated types and code using them', async () => {
      writeFileSync(join(work, 'usage.ts'), USAGE);
      const tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
      const args = [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler',
        '--lib', 'es2022', '--pretty', 'false', 'schema-types.ts', 'operations.ts', 'usage.ts'];
      const run = spawnSync(process.execPath, args, { cwd: work, encoding: 'utf8', timeout: 120000 });
      if (run.error) throw new Error(`tsc did not run: ${run.error.message}`);
      if (run.status !== 0) throw new Error(`tsc exited ${run.status}:\n${run.stdout}${run.stderr}`);
      const version = spawnSync(process.execPath, [tsc, '--version'], { encoding: 'utf8' }).stdout.trim();
      return version;
    }, [CODEGEN]);

    let alice;
    let bob;
    const CLIENTS = 'createClient over HTTP (two clients)';
    await check(CLIENTS, async () => {
      alice = (await run(base, 'CreateClient', { input: { name: 'Frontend Alice' } })).createClient;
      bob = (await run(base, 'CreateClient', { input: { name: 'Frontend Bob' } })).createClient;
      for (const c of [alice, bob]) {
        if (!c.token || !c.wallet?.id || c.wallet.balance !== '0.00') throw new Error(`unexpected createClient result: ${JSON.stringify(c)}`);
      }
      if (alice.client.name !== 'Frontend Alice') throw new Error(`client name came back as ${alice.client.name}`);
    });

    let deposit;
    let transfer;
    const LIVE = 'graphql-ws subscription sees DEPOSIT then TRANSFER_OUT from HTTP mutations';
    await check(LIVE, async () => {
      const events = [];
      const problems = [];
      let connected = false;
      const ws = createWsClient({
        url: `${base.replace(/^http/, 'ws')}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams: { Authorization: `Bearer ${alice.token}` },
        retryAttempts: 0,
        lazy: false,
        on: { connected: () => { connected = true; } },
      });
      let unsubscribe = () => {};
      try {
        // From the wallet's snapshot cursor: the server replays anything that
        // commits before it has set the subscription up, so no race.
        unsubscribe = ws.subscribe(
          { query: OPERATIONS.OperationCreated, operationName: 'OperationCreated', variables: { walletId: alice.wallet.id, after: alice.wallet.cursor } },
          {
            next: (message) => events.push(message),
            error: (error) => problems.push(`subscription error: ${describeWsError(error)}`),
            complete: () => problems.push('the subscription completed early'),
          },
        );
        await waitFor(() => connected || problems.length > 0, STEP_TIMEOUT, 'the WebSocket connection to be acknowledged');
        if (problems.length > 0) throw new Error(problems.join('; '));

        deposit = (await run(base, 'Deposit', {
          input: { walletId: alice.wallet.id, amount: '10.00', idempotencyKey: randomUUID(), description: 'frontend test deposit' },
        }, operator)).deposit;
        if (deposit.operation.kind !== 'DEPOSIT' || deposit.operation.amount !== '10.00' || deposit.wallet.balance !== '10.00') {
          throw new Error(`unexpected deposit result: ${JSON.stringify(deposit)}`);
        }
        transfer = (await run(base, 'Transfer', {
          input: { fromWalletId: alice.wallet.id, toWalletId: bob.wallet.id, amount: '2.50', idempotencyKey: randomUUID(), description: 'frontend test transfer' },
        }, alice.token)).transfer;
        const t = transfer;
        if (t.transfer.amount !== '2.50' || t.fromWallet.balance !== '7.50' || t.toWallet.walletId !== bob.wallet.id || t.transfer.toWalletId !== bob.wallet.id) {
          throw new Error(`unexpected transfer result: ${JSON.stringify(t)}`);
        }

        await waitFor(() => events.length >= 2 || problems.length > 0, STEP_TIMEOUT, 'two subscription events');
        // Anything extra (a duplicate, an error) would show up right after.
        await new Promise((r) => setTimeout(r, 500));
        if (problems.length > 0) throw new Error(`${problems.join('; ')} (events so far: ${JSON.stringify(events)})`);
        const withErrors = events.filter((e) => e.errors);
        if (withErrors.length > 0) throw new Error(`events with errors: ${JSON.stringify(withErrors)}`);
        const seen = events.map((e) => e.data?.operationCreated);
        const expected = [
          { kind: 'DEPOSIT', amount: '10.00', balanceAfter: '10.00', id: deposit.operation.id },
          { kind: 'TRANSFER_OUT', amount: '2.50', balanceAfter: '7.50', id: transfer.operation.id },
        ];
        const brief = (ops) => JSON.stringify(ops.map((o) => o && { kind: o.kind, amount: o.amount, balanceAfter: o.balanceAfter, id: o.id }));
        if (brief(seen) !== brief(expected)) throw new Error(`events ${brief(seen)}, expected ${brief(expected)}`);
        return seen.map((o) => `${o.kind} ${o.amount}`).join(', ');
      } finally {
        unsubscribe();
        await ws.dispose();
      }
    }, [CLIENTS]);

    await check('wallet query pages the history (newest first)', async () => {
      const firstPage = (await run(base, 'History', { walletId: alice.wallet.id, first: 1 }, alice.token)).operations;
      if (firstPage.totalCount !== 2) throw new Error(`totalCount ${firstPage.totalCount}, expected 2`);
      if (firstPage.edges.length !== 1 || firstPage.edges[0].node.kind !== 'TRANSFER_OUT' || firstPage.edges[0].node.amount !== '2.50') {
        throw new Error(`first page: ${JSON.stringify(firstPage)}`);
      }
      if (!firstPage.pageInfo.hasNextPage || !firstPage.pageInfo.endCursor) throw new Error(`no next page: ${JSON.stringify(firstPage.pageInfo)}`);
      const second = (await run(base, 'History', { walletId: alice.wallet.id, first: 10, after: firstPage.pageInfo.endCursor }, alice.token)).operations;
      if (second.edges.length !== 1 || second.edges[0].node.kind !== 'DEPOSIT' || second.edges[0].node.amount !== '10.00' || second.pageInfo.hasNextPage) {
        throw new Error(`second page: ${JSON.stringify(second)}`);
      }
      for (const edge of [...firstPage.edges, ...second.edges]) {
        if (Number.isNaN(Date.parse(edge.node.createdAt))) throw new Error(`createdAt ${edge.node.createdAt} is not a date`);
      }
      return 'TRANSFER_OUT 2.50, then DEPOSIT 10.00';
    }, [LIVE]);

    await check('a hold captured in part: graphql-ws sees HOLD, HOLD_RELEASE, TRANSFER_OUT', async () => {
      const events = [];
      const problems = [];
      const ws = createWsClient({
        url: `${base.replace(/^http/, 'ws')}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams: { Authorization: `Bearer ${alice.token}` },
        retryAttempts: 0,
        lazy: false,
      });
      let unsubscribe = () => {};
      try {
        unsubscribe = ws.subscribe(
          { query: OPERATIONS.OperationCreated, operationName: 'OperationCreated', variables: { walletId: alice.wallet.id, after: alice.wallet.cursor } },
          {
            next: (message) => events.push(message),
            error: (error) => problems.push(`subscription error: ${describeWsError(error)}`),
            complete: () => problems.push('the subscription completed early'),
          },
        );
        const held = (await run(base, 'AuthorizeTransfer', {
          input: { fromWalletId: alice.wallet.id, toWalletId: bob.wallet.id, amount: '3.00', idempotencyKey: randomUUID() },
        }, alice.token)).authorizeTransfer;
        const w = held.fromWallet;
        if (held.transfer.status !== 'PENDING' || w.balance !== '7.50' || w.heldBalance !== '3.00' || w.availableBalance !== '4.50') {
          throw new Error(`unexpected authorisation: ${JSON.stringify(held)}`);
        }
        const done = (await run(base, 'CaptureTransfer', {
          input: { transferId: held.transfer.id, amount: '2.00', idempotencyKey: randomUUID() },
        }, bob.token)).captureTransfer;
        if (done.transfer.status !== 'POSTED' || done.transfer.capturedAmount !== '2.00' || done.toWallet.balance !== '4.50') {
          throw new Error(`unexpected capture: ${JSON.stringify(done)}`);
        }
        // From the wallet's first cursor: the deposit and transfer above, then these three.
        await waitFor(() => events.length >= 5 || problems.length > 0, STEP_TIMEOUT, 'five subscription events');
        if (problems.length > 0) throw new Error(problems.join('; '));
        const seen = events.map((e) => e.data?.operationCreated).map((o) => o && `${o.kind} ${o.amount} ${o.balanceAfter}`);
        const expected = ['DEPOSIT 10.00 10.00', 'TRANSFER_OUT 2.50 7.50', 'HOLD 3.00 7.50', 'HOLD_RELEASE 3.00 7.50', 'TRANSFER_OUT 2.00 5.50'];
        if (JSON.stringify(seen) !== JSON.stringify(expected)) throw new Error(`events ${JSON.stringify(seen)}, expected ${JSON.stringify(expected)}`);
        return seen.slice(2).join(', ');
      } finally {
        unsubscribe();
        await ws.dispose();
      }
    }, [LIVE]);

    await check('relay-compiler 21 accepts @refetchable fragments on Wallet and Transfer (Node)', async () => {
      const relay = join(work, 'relay');
      mkdirSync(join(relay, 'src'), { recursive: true });
      writeFileSync(join(relay, 'relay.config.json'), JSON.stringify({
        src: './src',
        schema: resolve(here, '../../schema.graphql'),
        language: 'javascript',
        customScalarTypes: { Decimal: 'string', UUID: 'string', DateTime: 'string' },
      }));
      writeFileSync(join(relay, 'src', 'fragments.js'), [
        'graphql`fragment fragments_wallet on Wallet @refetchable(queryName: "WalletRefetchQuery") { id balance availableBalance incomingHeldBalance }`;',
        'graphql`fragment fragments_transfer on Transfer @refetchable(queryName: "TransferRefetchQuery") { id status amount capturedAmount toWallet { walletId } }`;',
        '',
      ].join('\n'));
      const compiled = spawnSync(process.execPath, [require.resolve('relay-compiler/cli.js')], { cwd: relay, encoding: 'utf8' });
      if (compiled.status !== 0) throw new Error(`relay-compiler failed:\n${compiled.stdout}\n${compiled.stderr}`);
      const refetch = readFileSync(join(relay, 'src', '__generated__', 'WalletRefetchQuery.graphql.js'), 'utf8');
      if (!refetch.includes('"node"')) throw new Error('the refetch query does not go through Query.node');
      readFileSync(join(relay, 'src', '__generated__', 'TransferRefetchQuery.graphql.js'), 'utf8');
      return 'WalletRefetchQuery and TransferRefetchQuery through node(id:)';
    });

    // Two wallets read into a normalised cache, then an operator ends a hold
    // between them: the payload's `wallets` must refresh both entries, with
    // no request but the mutation.
    // A wallet read (service.graphql), then Capture or Void (payments.graphql,
    // whose payload selects the wallets it changed).
    const CACHED_WALLET = OPERATIONS.Wallet;
    const holdBetweenTwo = async () => {
      const created = [];
      for (const name of ['Cache payer', 'Cache payee']) {
        created.push((await run(base, 'CreateClient', { input: { name } })).createClient);
      }
      const [payer, payee] = created;
      await run(base, 'Deposit', { input: { walletId: payer.wallet.id, amount: '20.00', idempotencyKey: randomUUID() } }, operator);
      const held = (await run(base, 'AuthorizeTransfer', {
        input: { fromWalletId: payer.wallet.id, toWalletId: payee.wallet.id, amount: '5.00', idempotencyKey: randomUUID() },
      }, payer.token)).authorizeTransfer;
      return { payer, payee, transferId: held.transfer.id };
    };
    const countingFetch = () => {
      const counted = { requests: 0 };
      counted.fetch = (url, init) => {
        counted.requests += 1;
        return fetch(url, init);
      };
      return counted;
    };

    await check("Apollo Client 4's InMemoryCache shows both wallets after an operator's capture, without a refetch", async () => {
      const { ApolloClient, HttpLink, InMemoryCache, gql } = await import('@apollo/client');
      const { payer, payee, transferId } = await holdBetweenTwo();
      const counted = countingFetch();
      const client = new ApolloClient({
        link: new HttpLink({ uri: `${base}/graphql`, fetch: counted.fetch, headers: { authorization: `Bearer ${operator}` } }),
        cache: new InMemoryCache(),
      });
      const query = gql(CACHED_WALLET);
      for (const w of [payer, payee]) await client.query({ query, variables: { id: w.wallet.id } });
      await client.mutate({
        mutation: gql(OPERATIONS.Capture),
        variables: { input: { transferId, amount: '3.00', idempotencyKey: randomUUID() } },
      });
      const seen = [payer, payee].map((w) => client.readQuery({ query, variables: { id: w.wallet.id } })?.wallet);
      const got = seen.map((w) => `${w?.balance}/${w?.incomingHeldBalance}`);
      if (JSON.stringify(got) !== JSON.stringify(['17.00/0.00', '3.00/0.00'])) throw new Error(`cached wallets ${JSON.stringify(got)}`);
      if (counted.requests !== 3) throw new Error(`${counted.requests} requests: the cache refetched`);
      return `payer ${got[0]}, payee ${got[1]} from the cache`;
    });

    await check("urql's graphcache shows both wallets after an operator's void, without a refetch", async () => {
      const { Client, fetchExchange } = await import('@urql/core');
      const { cacheExchange } = await import('@urql/exchange-graphcache');
      const { payer, payee, transferId } = await holdBetweenTwo();
      const counted = countingFetch();
      const client = new Client({
        url: `${base}/graphql`,
        preferGetMethod: false,
        fetch: counted.fetch,
        fetchOptions: { headers: { authorization: `Bearer ${operator}` } },
        exchanges: [cacheExchange({ keys: { PublicWallet: () => null } }), fetchExchange],
      });
      const query = parse(CACHED_WALLET);
      for (const w of [payer, payee]) {
        const result = await client.query(query, { id: w.wallet.id }).toPromise();
        if (result.error) throw result.error;
      }
      const voided = await client.mutation(parse(OPERATIONS.Void), {
        input: { transferId, idempotencyKey: randomUUID() },
      }).toPromise();
      if (voided.error) throw voided.error;
      const seen = [payer, payee].map((w) => client.readQuery(query, { id: w.wallet.id })?.data?.wallet);
      const got = seen.map((w) => `${w?.availableBalance}/${w?.incomingHeldBalance}`);
      if (JSON.stringify(got) !== JSON.stringify(['20.00/0.00', '0.00/0.00'])) throw new Error(`cached wallets ${JSON.stringify(got)}`);
      if (counted.requests !== 3) throw new Error(`${counted.requests} requests: the cache refetched`);
      return `payer ${got[0]}, payee ${got[1]} from the cache`;
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}

// ---------------------------------------------------------------- helpers
async function post(base, query, variables, token, operationName) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables, operationName }),
    signal: AbortSignal.timeout(STEP_TIMEOUT),
  });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`HTTP ${response.status}, not JSON: ${text.slice(0, 300)}`);
  }
  if (body.errors) throw new Error(`${operationName ?? 'query'}: errors ${JSON.stringify(body.errors)}`);
  if (!response.ok || !body.data) throw new Error(`${operationName ?? 'query'}: HTTP ${response.status} ${text.slice(0, 300)}`);
  return body.data;
}

// One operation with the fragments it spreads (and those spread by them).
function cutOut(operation) {
  const fragments = new Map(DOCUMENTS.definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION).map((d) => [d.name.value, d]));
  const used = new Set();
  const spreadIn = (node) => visit(node, {
    FragmentSpread(spread) {
      const name = spread.name.value;
      if (!used.has(name) && fragments.has(name)) {
        used.add(name);
        spreadIn(fragments.get(name));
      }
    },
  });
  spreadIn(operation);
  return [operation, ...[...used].map((name) => fragments.get(name))].map(print).join('\n\n');
}

function run(base, name, variables, token) {
  return post(base, OPERATIONS[name], variables, token, name);
}

async function waitFor(predicate, ms, what) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function describeWsError(error) {
  if (Array.isArray(error)) return error.map((e) => e.message ?? JSON.stringify(e)).join('; ');
  if (error && typeof error === 'object' && 'code' in error && 'reason' in error) return `socket closed ${error.code} ${error.reason}`;
  return error?.message ?? String(error);
}

function describeCodegenError(error) {
  // codegen wraps per-file failures (e.g. a schema that failed to load) and
  // repeats them with stacks and a list of what it supports: keep the gist.
  const nested = error?.errors ?? error?.error?.errors;
  const parts = [error?.message ?? String(error)];
  if (Array.isArray(nested)) parts.push(...nested.map((e) => e?.details ?? e?.message ?? String(e)));
  if (error?.details) parts.push(error.details);
  const lines = parts
    .join('\n')
    .replace(/GraphQL Code Generator supports:[\s\S]*?run codegen again\./g, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('at ') && !l.startsWith('AggregateError'));
  return [...new Set(lines)].join('\n  ').slice(0, 3000);
}
