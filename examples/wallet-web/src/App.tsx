// The reference wallet app: sign in with a token; the wallet's balances,
// live; pay or hold money for someone (a retried click reuses its
// idempotency key, so it never pays twice); the history, with infinite
// scroll and a kind filter; and, for a merchant, the holds for it (live),
// to capture or void, and the payments it received, to refund.
import { useEffect, useMemo, useRef, useState } from 'react';
import { Provider, useClient, useMutation, useQuery, useSubscription, type CombinedError } from 'urql';
import { makeClient } from './client';
import { describe, retryable } from './errors';
import {
  AuthorizeDocument,
  CaptureDocument,
  HistoryDocument,
  IncomingHoldsDocument,
  MeDocument,
  OperationCreatedDocument,
  PayDocument,
  ReceivedDocument,
  RefundDocument,
  VoidDocument,
  WalletUpdatedDocument,
  type HistoryQuery,
  type HistoryQueryVariables,
  type OperationKind,
} from './gql/graphql';

type Session = { api: string; token: string };

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const client = useMemo(() => (session ? makeClient(session.api, session.token) : null), [session]);
  if (!session || !client) return <SignIn onSignIn={setSession} />;
  return (
    <Provider value={client}>
      <Wallet />
    </Provider>
  );
}

function SignIn({ onSignIn }: { onSignIn: (s: Session) => void }) {
  const params = new URLSearchParams(window.location.search);
  // The README's server by default; `?api=` points elsewhere.
  const [api, setApi] = useState(params.get('api') ?? 'http://127.0.0.1:8080/graphql');
  const [token, setToken] = useState('');
  return (
    <section>
      <h2>Sign in</h2>
      <label>API <input data-testid="api" value={api} onChange={(e) => setApi(e.target.value)} size={40} /></label>
      <label>Token <input data-testid="token" value={token} onChange={(e) => setToken(e.target.value)} size={50} /></label>
      <button data-testid="sign-in" onClick={() => onSignIn({ api, token: token.trim() })}>Sign in</button>
    </section>
  );
}

/** Re-run queries when the wallet's ledger moves: bumped by operationCreated. */
function useLedgerVersion(walletId: string | undefined): number {
  const [result] = useSubscription({
    query: OperationCreatedDocument,
    variables: { walletId: walletId ?? '' },
    pause: !walletId,
  });
  const [version, setVersion] = useState(0);
  useEffect(() => {
    if (result.data) setVersion((v) => v + 1);
  }, [result.data]);
  return version;
}

function Wallet() {
  const [me] = useQuery({ query: MeDocument });
  const wallet = me.data?.me?.wallet;
  // Live balances: each event updates the normalised Wallet, so every
  // place showing it re-renders.
  useSubscription({ query: WalletUpdatedDocument, variables: { walletId: wallet?.id ?? '' }, pause: !wallet });
  const version = useLedgerVersion(wallet?.id);
  if (me.error) return <p className="error" data-testid="error">{describe(me.error)}</p>;
  if (!wallet || !me.data?.me) return <p>Loading…</p>;
  return (
    <>
      <section>
        <h2>{me.data.me.name}'s wallet</h2>
        <div className="balance" data-testid="balance">{wallet.balance}</div>
        <div className="muted">
          available <span data-testid="available">{wallet.availableBalance}</span> · held{' '}
          <span data-testid="held">{wallet.heldBalance}</span> · on hold for you{' '}
          <span data-testid="incoming">{wallet.incomingHeldBalance}</span>
        </div>
        <div className="muted">wallet <code data-testid="wallet-id">{wallet.id}</code></div>
      </section>
      <PayForm walletId={wallet.id} />
      <IncomingHolds walletId={wallet.id} version={version} />
      <Received walletId={wallet.id} version={version} />
      <History walletId={wallet.id} version={version} />
    </>
  );
}

type Attempt = { verb: 'pay' | 'hold'; to: string; amount: string; key: string };

function PayForm({ walletId }: { walletId: string }) {
  const [to, setTo] = useState('');
  const [amount, setAmount] = useState('');
  const [status, setStatus] = useState<string | null>(null);
  const [error, setError] = useState<CombinedError | undefined>();
  // The attempt in flight or failed without an answer: a new click for the
  // same payment reuses its key, so the server applies it once.
  const attempt = useRef<Attempt | null>(null);
  const [, pay] = useMutation(PayDocument);
  const [, hold] = useMutation(AuthorizeDocument);

  async function submit(verb: Attempt['verb']) {
    const same = attempt.current;
    const current: Attempt =
      same && same.verb === verb && same.to === to && same.amount === amount
        ? same
        : { verb, to, amount, key: crypto.randomUUID() };
    attempt.current = current;
    setError(undefined);
    setStatus('Sending…');
    for (let tries = 0; tries < 4; tries += 1) {
      const input = { fromWalletId: walletId, toWalletId: current.to, amount: current.amount, idempotencyKey: current.key };
      const result = verb === 'pay' ? await pay({ input }) : await hold({ input });
      const done = result.data && ('transfer' in result.data ? result.data.transfer : result.data.authorizeTransfer);
      if (done && !result.error) {
        attempt.current = null;
        setStatus(verb === 'pay' ? `Paid ${current.amount}` : `Held ${current.amount}`);
        return;
      }
      if (result.error && !retryable(result.error)) {
        attempt.current = null;
        setStatus(null);
        setError(result.error);
        return;
      }
      await new Promise((r) => setTimeout(r, 300 * (tries + 1)));
    }
    setStatus('No answer yet: press again to retry safely.');
  }

  return (
    <section>
      <h2>Pay someone</h2>
      <label>To wallet <input data-testid="pay-to" value={to} onChange={(e) => setTo(e.target.value)} size={40} /></label>
      <label>Amount <input data-testid="pay-amount" value={amount} onChange={(e) => setAmount(e.target.value)} size={10} /></label>
      <button data-testid="pay" onClick={() => submit('pay')}>Pay</button>
      <button data-testid="hold" onClick={() => submit('hold')}>Authorise (hold)</button>
      {status && <p data-testid="pay-status">{status}</p>}
      {error && <p className="error" data-testid="pay-error">{describe(error)}</p>}
    </section>
  );
}

function IncomingHolds({ walletId, version }: { walletId: string; version: number }) {
  const [holds, refetch] = useQuery({ query: IncomingHoldsDocument, variables: { walletId }, requestPolicy: 'network-only' });
  useEffect(() => {
    if (version > 0) refetch({ requestPolicy: 'network-only' });
  }, [version, refetch]);
  const [captured, capture] = useMutation(CaptureDocument);
  const [voided, voidHold] = useMutation(VoidDocument);
  const [amounts, setAmounts] = useState<Record<string, string>>({});
  const nodes = holds.data?.transfers.nodes ?? [];
  return (
    <section>
      <h2>Holds for you</h2>
      {nodes.length === 0 && <p className="muted" data-testid="no-holds">None open.</p>}
      <ul>
        {nodes.map((hold) => (
          <li key={hold.id} data-testid="incoming-hold">
            <span data-testid="hold-amount">{hold.amount}</span> from <code>{hold.fromWallet.walletId.slice(0, 8)}</code>{' '}
            <input data-testid="capture-amount" placeholder={hold.amount} size={8}
              value={amounts[hold.id] ?? ''} onChange={(e) => setAmounts({ ...amounts, [hold.id]: e.target.value })} />
            <button data-testid="capture" onClick={() => capture({ input: { transferId: hold.id, amount: amounts[hold.id] || null, idempotencyKey: `capture-${hold.id}` } })}>Capture</button>
            <button data-testid="void" onClick={() => voidHold({ input: { transferId: hold.id, idempotencyKey: `void-${hold.id}` } })}>Void</button>
          </li>
        ))}
      </ul>
      {(captured.error || voided.error) && <p className="error">{describe(captured.error ?? voided.error)}</p>}
    </section>
  );
}

function Received({ walletId, version }: { walletId: string; version: number }) {
  const [received, refetch] = useQuery({ query: ReceivedDocument, variables: { walletId }, requestPolicy: 'network-only' });
  useEffect(() => {
    if (version > 0) refetch({ requestPolicy: 'network-only' });
  }, [version, refetch]);
  const [refunded, refund] = useMutation(RefundDocument);
  const nodes = received.data?.transfers.nodes ?? [];
  return (
    <section>
      <h2>Payments received</h2>
      <ul>
        {nodes.map((t) => (
          <li key={t.id} data-testid="received">
            <span>{t.capturedAmount ?? t.amount}</span> (refunded <span data-testid="refunded">{t.refundedAmount}</span>){' '}
            <button data-testid="refund-one" onClick={() => refund({ input: { transferId: t.id, amount: '1.00', idempotencyKey: crypto.randomUUID() } })}>Refund 1.00</button>
          </li>
        ))}
      </ul>
      {refunded.error && <p className="error">{describe(refunded.error)}</p>}
    </section>
  );
}

const KINDS: OperationKind[] = ['DEPOSIT', 'TRANSFER_IN', 'TRANSFER_OUT', 'WITHDRAWAL', 'HOLD', 'HOLD_RELEASE', 'INCOMING_HOLD', 'INCOMING_HOLD_RELEASE', 'CREDIT_LIMIT'];

type Edge = HistoryQuery['operations']['edges'][number];

/** Adds rows to a newest-first list, each once. */
function merge(older: Edge[], newer: Edge[]): Edge[] {
  const seen = new Set(older.map((e) => e.node.id));
  return [...newer.filter((e) => !seen.has(e.node.id)), ...older];
}

/**
 * The history, newest first: the first page, then the next as the end of
 * the list scrolls into view (infinite scroll); rows committed meanwhile
 * are put on top (`before` the newest row's cursor), so pages never shift
 * under the reader.
 */
function History({ walletId, version }: { walletId: string; version: number }) {
  const client = useClient();
  const [kind, setKind] = useState<OperationKind | ''>('');
  const [rows, setRows] = useState<Edge[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<CombinedError | undefined>();
  const loading = useRef(false);
  const filter = kind ? { kinds: [kind] } : null;

  async function fetchPage(variables: Omit<HistoryQueryVariables, 'walletId' | 'filter'>) {
    const result = await client
      .query(HistoryDocument, { walletId, filter, ...variables }, { requestPolicy: 'network-only' })
      .toPromise();
    setError(result.error);
    return result.data?.operations;
  }

  // The first page, again whenever the filter changes.
  useEffect(() => {
    let current = true;
    setRows([]);
    setNext(null);
    fetchPage({ first: 10 }).then((page) => {
      if (!current || !page) return;
      setRows(page.edges);
      setNext(page.pageInfo.hasNextPage ? page.pageInfo.endCursor ?? null : null);
    });
    return () => {
      current = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [walletId, kind]);

  // Live: what committed since the newest row shown goes on top. One
  // catch-up at a time, and another after it if the ledger moved meanwhile:
  // two identical queries in flight are one for urql (deduplicated), so a
  // second one sent while the first was out would get the first's answer,
  // read before the newer row committed.
  const shownRef = useRef(rows);
  shownRef.current = rows;
  const live = useRef({ busy: false, again: false });
  async function catchUp() {
    if (live.current.busy) {
      live.current.again = true;
      return;
    }
    live.current.busy = true;
    do {
      live.current.again = false;
      const top = shownRef.current[0];
      if (!top) break;
      const page = await fetchPage({ last: 50, before: top.cursor });
      if (page) {
        shownRef.current = merge(shownRef.current, page.edges);
        setRows((shown) => merge(shown, page.edges));
      }
    } while (live.current.again);
    live.current.busy = false;
  }
  useEffect(() => {
    if (version === 0) return;
    void catchUp();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [version]);

  // The end of the list coming into view while a page loads asks again
  // once it has loaded (the view would not come again by itself).
  const wanted = useRef(false);
  const nextRef = useRef<string | null>(null);
  nextRef.current = next;
  async function more() {
    if (loading.current) {
      wanted.current = true;
      return;
    }
    const after = nextRef.current;
    if (!after) return;
    loading.current = true;
    wanted.current = false;
    const page = await fetchPage({ first: 10, after });
    loading.current = false;
    if (!page) return;
    const following = page.pageInfo.hasNextPage ? page.pageInfo.endCursor ?? null : null;
    setRows((shown) => [...shown, ...page.edges.filter((e) => !shown.some((s) => s.node.id === e.node.id))]);
    nextRef.current = following;
    setNext(following);
    if (wanted.current) void more();
  }

  const sentinel = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const node = sentinel.current;
    if (!node || !next) return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) void more();
    });
    observer.observe(node);
    return () => observer.disconnect();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [next]);

  return (
    <section>
      <h2>History</h2>
      <label>Kind{' '}
        <select data-testid="kind" value={kind} onChange={(e) => setKind(e.target.value as OperationKind | '')}>
          <option value="">all</option>
          {KINDS.map((k) => <option key={k} value={k}>{k}</option>)}
        </select>
      </label>
      <ul data-testid="history">
        {rows.map(({ node }) => (
          <li key={node.id} data-testid="operation">
            <span data-testid="op-kind">{node.kind}</span> <span data-testid="op-amount">{node.amount}</span>{' '}
            <span className="muted">→ {node.balanceAfter} · {new Date(node.createdAt).toLocaleTimeString()}</span>
          </li>
        ))}
      </ul>
      <div ref={sentinel} className="muted">{next ? 'Loading more…' : ''}</div>
      {error && <p className="error">{describe(error)}</p>}
    </section>
  );
}
