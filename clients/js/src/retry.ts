/** Exponential backoff with full jitter, for the API's calls and each part's `PUT`. */

import { abortReason } from "./errors.js";

export interface Backoff {
  /** Retries after the first attempt. */
  retries: number;
  /** The first delay's ceiling in ms; each retry doubles it. */
  baseMs: number;
  /** The largest delay in ms. */
  capMs: number;
}

/** For the API's calls: quick, since they are small. */
export const API_BACKOFF: Backoff = { retries: 4, baseMs: 200, capMs: 10_000 };
/** For parts: a failed part may mean a congested link, so wait longer. */
export const PART_BACKOFF: Backoff = { retries: 5, baseMs: 500, capMs: 30_000 };

/** `Retry-After` is honoured up to this long. */
export const MAX_RETRY_AFTER_MS = 60_000;

/**
 * The delay before retry number `retry` (1-based): a random time up to
 * `baseMs * 2^(retry-1)` (capped), and at least `retryAfterMs` (itself
 * capped at a minute) when the server asked for it.
 */
export function backoffDelay(b: Backoff, retry: number, retryAfterMs?: number, random: () => number = Math.random): number {
  const ceiling = Math.min(b.baseMs * 2 ** Math.min(Math.max(retry - 1, 0), 16), b.capMs);
  const jittered = ceiling * random();
  return retryAfterMs === undefined ? jittered : Math.max(jittered, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS));
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** `Retry-After` in ms: seconds, or an HTTP date. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
