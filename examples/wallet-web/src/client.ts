// The urql client: graphcache (normalised by __typename + id), HTTP for
// queries and mutations, graphql-ws for subscriptions, and persisted
// documents: every request names its document by the id in the
// trusted-documents manifest (src/gql/persisted-documents.json), so the
// server can run with TRUSTED_DOCUMENTS and no query text crosses the wire.
import { Client, fetchExchange, subscriptionExchange } from 'urql';
import { cacheExchange } from '@urql/exchange-graphcache';
import { createClient as createWsClient } from 'graphql-ws';
import type { DocumentNode } from 'graphql';
import * as documents from './gql/graphql';

type Persisted = DocumentNode & { __meta__?: { hash?: string } };

/** Operation name -> document id, from the generated documents. */
const ids = new Map<string, string>();
for (const value of Object.values(documents)) {
  const document = value as Persisted;
  const hash = document?.__meta__?.hash;
  const definition = document?.definitions?.find((d) => d.kind === 'OperationDefinition');
  if (hash && definition && 'name' in definition && definition.name) {
    ids.set(definition.name.value, hash);
  }
}

/** POSTs `{documentId, operationName, variables}` instead of the query. */
function persistedFetch(url: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  if (typeof init?.body === 'string') {
    const body = JSON.parse(init.body) as { operationName?: string; variables?: unknown };
    const documentId = body.operationName ? ids.get(body.operationName) : undefined;
    if (documentId) {
      init = { ...init, body: JSON.stringify({ documentId, operationName: body.operationName, variables: body.variables }) };
    }
  }
  return fetch(url, init);
}

export function makeClient(api: string, token: string): Client {
  const ws = createWsClient({
    url: api.replace(/^http/, 'ws'),
    connectionParams: { Authorization: `Bearer ${token}` },
    retryAttempts: Infinity,
    shouldRetry: () => true,
  });
  return new Client({
    url: api,
    preferGetMethod: false,
    fetch: persistedFetch,
    fetchOptions: () => ({ headers: { Authorization: `Bearer ${token}` } }),
    exchanges: [
      cacheExchange({
        // Objects without an id of their own live inside their parent.
        keys: {
          PublicWallet: () => null,
          PageInfo: () => null,
          OperationConnection: () => null,
          OperationEdge: () => null,
          TransferConnection: () => null,
          TransferEdge: () => null,
        },
      }),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request, operation) {
          const documentId = (operation.query as Persisted).__meta__?.hash;
          const payload = documentId
            ? { query: '', variables: request.variables, extensions: { persistedQuery: { version: 1, sha256Hash: documentId } } }
            : { ...request, query: request.query ?? '' };
          return {
            subscribe: (sink) => ({ unsubscribe: ws.subscribe(payload, sink) }),
          };
        },
      }),
    ],
  });
}
