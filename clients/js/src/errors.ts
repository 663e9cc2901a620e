/**
 * Errors: what the API answered (`ApiError`), what S3 answered to a part's
 * `PUT` (`S3Error`), and what this client refuses before any request
 * (`UsageError`). An aborted call rejects with the signal's reason (a
 * `DOMException` named `AbortError` unless the caller gave another).
 */

/** A non-2xx answer of the API, with its `error` and `request_id`. */
export class ApiError extends Error {
  override name = "ApiError";
  /** The HTTP status. */
  readonly status: number;
  /**
   * The API's message (`error`), API Gateway's (`message`), or the start
   * of a body that is not JSON.
   */
  readonly error: string;
  /** The API's `request_id` (also its `x-request-id` header), when it gave one. */
  readonly requestId: string | undefined;
  /** `Retry-After` in seconds, when the answer carried it (429, 503, 202). */
  readonly retryAfter: number | undefined;
  /** The parsed body, as it came. */
  readonly body: unknown;

  constructor(init: { status: number; error: string; requestId?: string | undefined; retryAfter?: number | undefined; body?: unknown; method?: string; path?: string }) {
    const where = init.method && init.path ? `${init.method} ${init.path}: ` : "";
    const id = init.requestId ? `, request ${init.requestId}` : "";
    super(`${where}${init.error} (HTTP ${init.status}${id})`);
    this.status = init.status;
    this.error = init.error;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
    this.body = init.body;
  }
}

/** S3 refused a part's `PUT` (or a download), or kept failing it past the retries. */
export class S3Error extends Error {
  override name = "S3Error";
  /** The part (1-based), for a part's `PUT`. */
  readonly partNumber: number | undefined;
  /** S3's HTTP status; 0 for a network failure. */
  readonly status: number;
  /** S3's error `Code` (e.g. `BadDigest`, `NoSuchUpload`), when it gave one. */
  readonly code: string | undefined;
  /** True when S3 refused the bytes as not matching their declared checksum. */
  readonly integrity: boolean;

  constructor(init: { partNumber?: number | undefined; status: number; code?: string | undefined; message: string; integrity?: boolean; cause?: unknown }) {
    const where = init.partNumber === undefined ? "" : `part ${init.partNumber}: `;
    super(`${where}${init.message}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.partNumber = init.partNumber;
    this.status = init.status;
    this.code = init.code;
    this.integrity = init.integrity ?? false;
  }
}

/** A call this client refuses to make (wrong credentials kind, bad option, a file too large...). */
export class UsageError extends Error {
  override name = "UsageError";
}

/** What an aborted signal rejects with. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}

/** Whether `e` is an abort (ours or the fetch's). */
export function isAbort(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { name?: unknown }).name === "AbortError";
}
