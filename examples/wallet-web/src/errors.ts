// What to tell the user, chosen by ErrorCode (the schema's enum), never by
// message text.
import type { CombinedError } from 'urql';
import type { ErrorCode } from './gql/graphql';

const MESSAGES: Partial<Record<ErrorCode, string>> = {
  INSUFFICIENT_FUNDS: 'Not enough money available for this payment.',
  SAME_WALLET: 'You cannot pay your own wallet.',
  NOT_FOUND: 'No such wallet.',
  FORBIDDEN: 'You may not do that.',
  UNAUTHENTICATED: 'Sign in again: the token was not accepted.',
  INVALID_INPUT: 'Check the amount and the wallet id.',
  TRANSFER_NOT_PENDING: 'This hold has already ended.',
  REFUND_EXCEEDS_TRANSFER: 'That is more than is left to refund.',
  RATE_LIMITED: 'Too many requests: wait a moment.',
  TOO_MANY_HOLDS: 'Too many open holds.',
  BALANCE_LIMIT_EXCEEDED: 'The payee cannot receive that much.',
  WALLET_FROZEN: 'This wallet is frozen: nothing can leave it for now.',
  WALLET_CLOSED: 'That wallet is closed.',
  LIMIT_EXCEEDED: "That is over this wallet's limit for today.",
};

/** The error's code, if the server gave one. */
export function codeOf(error: CombinedError | undefined): ErrorCode | undefined {
  const code = error?.graphQLErrors[0]?.extensions?.code;
  return typeof code === 'string' ? (code as ErrorCode) : undefined;
}

export function describe(error: CombinedError | undefined): string | undefined {
  if (!error) return undefined;
  const code = codeOf(error);
  if (code) return MESSAGES[code] ?? `Refused (${code}).`;
  return 'The server could not be reached.';
}

/** Whether retrying the same request (same idempotency key) may succeed:
 * no answer at all, or the server said so. */
export function retryable(error: CombinedError): boolean {
  const code = codeOf(error);
  return code === undefined || code === 'SERVICE_UNAVAILABLE' || code === 'TIMEOUT' || code === 'INTERNAL';
}
