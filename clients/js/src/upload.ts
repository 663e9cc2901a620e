/**
 * `upload()`: plans the parts, checksums them, opens a session (or resumes
 * the one a previous run left), sends the parts to their presigned `PUT`s
 * with bounded concurrency and exactly the signed headers, retries with
 * backoff and fresh URLs, confirms, and answers the completed session.
 * The same steps as the CLI's `put` (`client/src/transfer.rs`).
 */

import type { CreateRequest, Instructions, PresignedPut, ResumedSession, Session, UploadsClient } from "./client.js";
import { xmlField } from "./client.js";
import { objectChecksum, partDigests, toBase64 } from "./checksum.js";
import { ApiError, S3Error, UsageError, abortReason, isAbort } from "./errors.js";
import { type ChecksumAlgorithm, partLength, partStart, planParts } from "./plan.js";
import { type Backoff, PART_BACKOFF, backoffDelay, parseRetryAfter } from "./retry.js";
import { type SavedUpload, type UploadStore, fingerprintKey } from "./store.js";

export interface UploadProgress {
  /** Bytes S3 holds or is receiving (with `fetch`, counted per completed part). */
  loaded: number;
  /** The file's size. */
  total: number;
  partsDone: number;
  partCount: number;
}

export interface UploadOptions {
  /** The upload's name (default: the `File`'s `name`; required for a plain `Blob`). */
  filename?: string;
  /** Default: the file's `type`, else `application/octet-stream`. */
  contentType?: string;
  /** Declared per part and checked by S3 as it stores them (default `SHA256`). */
  checksum?: ChecksumAlgorithm | "none";
  /** Bytes per part, 5 MiB..5 GiB (default: at least 8 MiB, larger as needed to fit 300 checksums). */
  partSize?: number;
  /** Parts in flight at once (default 4). */
  concurrency?: number;
  /** Retries of each part's `PUT` (default 5). */
  retries?: number;
  signal?: AbortSignal;
  onProgress?: (p: UploadProgress) => void;
  /**
   * While the parts' checksums are computed, before the session is created
   * (they are declared at create): bytes hashed so far, and the file's size.
   */
  onChecksumProgress?: (hashed: number, total: number) => void;
  /** Overrides the client's store for this upload; `null`: do not remember it. */
  store?: UploadStore | null;
  /** Identifies the file for resume when it is a `Blob` without `name` and `lastModified`. */
  fingerprint?: string;
  /** Look for an unfinished upload of this file to resume (default true). */
  resume?: boolean;
  /** How long to keep confirming while S3 completes (202), default 30 minutes. */
  confirmTimeoutMs?: number;
  /** `xhr` (byte-level progress; default in browsers) or `fetch` (default in Node, or with a custom `fetch`). */
  transport?: "fetch" | "xhr";
}

type Upload = Instructions & { parts_received?: number[] };

export async function upload(client: UploadsClient, file: Blob, opts: UploadOptions = {}): Promise<Session> {
  const signal = opts.signal;
  if (signal?.aborted) throw abortReason(signal);
  const filename = opts.filename ?? (file as Partial<File>).name;
  if (!filename) throw new UsageError("filename is required to upload a Blob that is not a File");
  const algorithm: ChecksumAlgorithm | null = opts.checksum === undefined ? "SHA256" : opts.checksum === "none" ? null : opts.checksum;
  if (algorithm !== null && algorithm !== "SHA256" && algorithm !== "CRC32C") {
    throw new UsageError(`checksum must be 'SHA256', 'CRC32C' or 'none', not ${String(opts.checksum)}`);
  }
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? 4));
  const store = opts.store === undefined ? client.store : opts.store;
  const key = store ? fingerprintKey(client.baseUrl, file, filename, opts.fingerprint) : undefined;

  // An unfinished upload of this file: resume it.
  let id: string | undefined;
  let first: Upload | undefined;
  let digests: Uint8Array[] | undefined;
  if (store && key && opts.resume !== false) {
    const saved = await store.get(key);
    if (saved && saved.size === file.size) {
      let resumed: ResumedSession | undefined;
      try {
        resumed = await client.resume(saved.upload_id, { signal });
      } catch (e) {
        if (e instanceof ApiError && e.status === 409 && e.error === "Upload already completed") {
          // Completed before the record could be removed: confirm is idempotent.
          const done = await client.confirmAndWait(saved.upload_id, { signal, timeoutMs: opts.confirmTimeoutMs });
          await store.remove(key);
          report(opts, file.size, file.size, 1, 1);
          return done;
        }
        if (!(e instanceof ApiError) || ![400, 404, 409].includes(e.status)) throw e;
        // Gone, expired or unusable: start afresh.
      }
      if (resumed && resumed.size === file.size && resumed.upload.part_size === saved.part_size) {
        id = resumed.upload_id;
        first = resumed.upload;
      } else {
        await store.remove(key);
      }
    }
  }

  // Else a new session, declaring each part's checksum.
  if (!id || !first) {
    const plan = planParts(file.size, algorithm, opts.partSize);
    const body: CreateRequest = {
      filename,
      content_type: opts.contentType || file.type || "application/octet-stream",
      size: file.size,
      part_size: plan.partSize,
    };
    if (algorithm) {
      opts.onChecksumProgress?.(0, file.size);
      digests = await partDigests(file, algorithm, plan.partSize, {
        signal,
        onPart: opts.onChecksumProgress && ((hashed) => opts.onChecksumProgress!(hashed, file.size)),
      });
      body.checksum_algorithm = algorithm;
      body.checksums = digests.map(toBase64);
    }
    const created = await client.create(body, { signal });
    id = created.upload_id;
    first = created.upload;
    if (store && key) {
      const saved: SavedUpload = { upload_id: id, part_size: first.part_size, size: file.size, filename, saved_at: Date.now() };
      await store.set(key, saved);
    }
  }

  await sendParts(client, id, file, first, {
    concurrency,
    backoff: { ...PART_BACKOFF, ...(opts.retries === undefined ? {} : { retries: opts.retries }) },
    signal,
    onProgress: opts.onProgress,
    useXhr: opts.transport === "xhr" || (opts.transport === undefined && !client.customFetch && typeof XMLHttpRequest === "function"),
  });

  const session = await client.confirmAndWait(id, { signal, timeoutMs: opts.confirmTimeoutMs });
  if (store && key) await store.remove(key);
  if (algorithm && digests && session.checksum && session.checksum.algorithm === algorithm) {
    const expected = await objectChecksum(algorithm, digests, first.type === "multipart");
    if (session.checksum.value !== expected) {
      throw new S3Error({
        status: 0,
        integrity: true,
        message: `upload ${id}: S3 holds an object whose ${algorithm} is ${session.checksum.value}, not ${expected} as sent`,
      });
    }
  }
  return session;
}

function report(opts: UploadOptions, loaded: number, total: number, partsDone: number, partCount: number): void {
  opts.onProgress?.({ loaded, total, partsDone, partCount });
}

interface SendOptions {
  concurrency: number;
  backoff: Backoff;
  signal: AbortSignal | undefined;
  onProgress: ((p: UploadProgress) => void) | undefined;
  useXhr: boolean;
}

/**
 * Sends every part S3 does not hold, `concurrency` at a time. The first
 * part that fails for good stops the others.
 */
async function sendParts(client: UploadsClient, id: string, file: Blob, first: Upload, o: SendOptions): Promise<void> {
  const size = file.size;
  const partSize = first.part_size;
  const partCount = first.part_count;
  const received = new Set(first.parts_received ?? []);
  const missing: number[] = [];
  for (let n = 1; n <= partCount; n++) if (!received.has(n)) missing.push(n);

  // Progress: the parts done, plus what the attempts in flight sent.
  let doneBytes = 0;
  let partsDone = 0;
  for (const n of received) {
    doneBytes += partLength(size, partSize, n);
    partsDone++;
  }
  const inFlight = new Map<number, number>();
  const emit = () => {
    let loaded = doneBytes;
    for (const b of inFlight.values()) loaded += b;
    o.onProgress?.({ loaded: Math.min(loaded, size), total: size, partsDone, partCount });
  };
  emit();

  // One controller for every part: aborted by the caller, or by the first failure.
  const inner = new AbortController();
  const onAbort = () => inner.abort(abortReason(o.signal!));
  o.signal?.addEventListener("abort", onAbort, { once: true });
  const book = new UrlBook(client, id, first);
  let failure: { error: unknown } | undefined;
  let next = 0;

  const sendPart = async (n: number): Promise<void> => {
    const len = partLength(size, partSize, n);
    const body = file.slice(partStart(partSize, n), partStart(partSize, n) + len);
    let refusedBytes = 0;
    for (let retry = 0; ; ) {
      const got = await book.url(n, inner.signal);
      if (got === "stored") break;
      const { put, generation } = got;
      if (put.size !== len) {
        throw new S3Error({ partNumber: n, status: 0, message: `the API's URL is for ${put.size} bytes; the part has ${len}` });
      }
      inFlight.set(n, 0);
      const outcome = await putOnce(client, put, body, inner.signal, o.useXhr, (sent) => {
        inFlight.set(n, sent);
        emit();
      }).finally(() => inFlight.delete(n));
      if (outcome.kind === "stored") break;
      if (outcome.kind === "fatal") throw outcome.error;
      if (outcome.kind === "expired") book.expire(generation);
      if (outcome.kind === "digest") {
        // The bytes S3 got are not the bytes hashed: altered on the way
        // (sent again, read from the file anew), or, refused a second
        // time, the file itself changed since it was hashed.
        if (++refusedBytes > DIGEST_RETRIES) throw outcome.error;
      }
      retry++;
      if (retry > o.backoff.retries) {
        throw new S3Error({ partNumber: n, status: outcome.status, code: outcome.code, message: `${outcome.why}, after ${o.backoff.retries} retries` });
      }
      emit();
      await client.sleep(backoffDelay(o.backoff, retry, outcome.kind === "retry" ? outcome.retryAfterMs : undefined), inner.signal);
    }
    doneBytes += len;
    partsDone++;
    emit();
  };

  const worker = async () => {
    while (!failure && next < missing.length) {
      const n = missing[next++]!;
      try {
        await sendPart(n);
      } catch (e) {
        if (!failure) {
          failure = { error: e };
          inner.abort(e);
        }
        return;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(o.concurrency, missing.length) }, worker));
  } finally {
    o.signal?.removeEventListener("abort", onAbort);
  }
  if (o.signal?.aborted) throw abortReason(o.signal);
  if (failure) throw failure.error;
}

type Outcome =
  | { kind: "stored" }
  /** Worth another try: a network error, 5xx, 429 or 408. */
  | { kind: "retry"; why: string; status: number; code?: string | undefined; retryAfterMs: number | undefined }
  /** 403: the URL expired (or S3 refuses its signature): retry with a fresh one. */
  | { kind: "expired"; why: string; status: number; code?: string | undefined }
  /** S3 refused the bytes as not matching their declared checksum: sent again {@link DIGEST_RETRIES} times. */
  | { kind: "digest"; why: string; status: number; code?: string | undefined; error: S3Error }
  | { kind: "fatal"; error: unknown };

/**
 * How many times a part S3 refused as not matching its checksum is sent
 * again: once. Bytes altered on the way are sent right the second time;
 * bytes refused twice are the file's own, changed since they were hashed.
 */
export const DIGEST_RETRIES = 1;

/** Headers a script may not (and need not) set: the runtime sets them to what the body is. */
const UNSETTABLE = new Set(["content-length", "host", "connection"]);

/** One `PUT` of one part, with exactly the signed headers. */
async function putOnce(
  client: UploadsClient,
  put: PresignedPut,
  body: Blob,
  signal: AbortSignal,
  useXhr: boolean,
  onBytes: (sent: number) => void,
): Promise<Outcome> {
  const n = put.part_number;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(put.headers)) {
    if (!UNSETTABLE.has(k.toLowerCase())) headers[k] = v;
  }
  let status: number;
  let text: string;
  let retryAfterMs: number | undefined;
  try {
    if (useXhr) {
      ({ status, text, retryAfterMs } = await xhrPut(put, headers, body, signal, onBytes));
    } else {
      const resp = await client.fetchImpl(put.url, { method: put.method || "PUT", headers, body, signal });
      status = resp.status;
      text = await resp.text().catch(() => "");
      retryAfterMs = parseRetryAfter(resp.headers.get("retry-after"));
    }
  } catch (e) {
    if (signal.aborted || isAbort(e)) return { kind: "fatal", error: signal.aborted ? abortReason(signal) : e };
    return { kind: "retry", why: `network error: ${String((e as Error)?.message ?? e)}`, status: 0, retryAfterMs: undefined };
  }
  if (status >= 200 && status < 300) return { kind: "stored" };
  const code = xmlField(text, "Code");
  const message = xmlField(text, "Message") ?? "";
  const says = code ? `${code}: ${message} (HTTP ${status})` : `HTTP ${status}`;
  if (code && (code.includes("Digest") || code.includes("Checksum"))) {
    return {
      kind: "digest",
      why: `S3 refused the bytes as not matching their checksum: ${says}`,
      status,
      code,
      error: new S3Error({ partNumber: n, status, code, integrity: true, message: `S3 refused the bytes twice: they do not match the checksum declared for them (${code}); did the file change?` }),
    };
  }
  // 412 on a single PUT: the object is already there (an earlier attempt whose answer was lost).
  if (status === 412) return { kind: "stored" };
  if (status === 403) return { kind: "expired", why: `S3 refused the URL: ${says}`, status, code };
  if (status === 408 || status === 429 || status >= 500 || status === 0) {
    return { kind: "retry", why: `S3 answered ${says}`, status, code, retryAfterMs };
  }
  const what = status === 404 ? `S3 no longer has this upload (${code ?? "NoSuchUpload"})` : `S3 refused it: ${says}`;
  return { kind: "fatal", error: new S3Error({ partNumber: n, status, code, message: what }) };
}

/** A `PUT` through `XMLHttpRequest`, for its upload progress. Status 0: a network failure. */
function xhrPut(
  put: PresignedPut,
  headers: Record<string, string>,
  body: Blob,
  signal: AbortSignal,
  onBytes: (sent: number) => void,
): Promise<{ status: number; text: string; retryAfterMs: number | undefined }> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortReason(signal));
    const xhr = new XMLHttpRequest();
    const onAbort = () => xhr.abort();
    xhr.open(put.method || "PUT", put.url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onBytes(e.loaded);
    xhr.onload = () => {
      signal.removeEventListener("abort", onAbort);
      resolve({ status: xhr.status, text: xhr.responseText ?? "", retryAfterMs: parseRetryAfter(xhr.getResponseHeader("retry-after")) });
    };
    xhr.onerror = xhr.ontimeout = () => {
      signal.removeEventListener("abort", onAbort);
      reject(new TypeError("network error"));
    };
    xhr.onabort = () => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    xhr.send(body);
  });
}

/** URLs are renewed this long before they expire (or within a quarter of their lifetime when shorter). */
const URL_MARGIN_MS = 60_000;

/**
 * The presigned `PUT`s at hand, renewed through the resume route when they
 * are about to expire, when S3 refused one as expired, or for parts no
 * answer has carried yet (an answer carries at most 1,000). One renewal at
 * a time: parts waiting for a URL wait for it.
 */
class UrlBook {
  private byPart = new Map<number, PresignedPut>();
  private received = new Set<number>();
  private renewAt = Infinity;
  private generation = 0;
  private stale = false;
  private renewing: Promise<void> | null = null;

  constructor(
    private readonly client: UploadsClient,
    private readonly id: string,
    first: Upload,
  ) {
    this.take(first);
  }

  private take(t: Upload): void {
    this.byPart = new Map(t.parts.map((p) => [p.part_number, p]));
    this.received = new Set(t.parts_received ?? []);
    const now = Date.now();
    const expires = Date.parse(t.urls_expire_at);
    this.renewAt = Number.isNaN(expires) ? Infinity : expires - Math.min(URL_MARGIN_MS, Math.max(0, expires - now) / 4);
  }

  private needsRenewal(n: number): boolean {
    return this.stale || Date.now() >= this.renewAt || (!this.byPart.has(n) && !this.received.has(n));
  }

  /** A URL for part `n` that will not expire within a minute, or word that S3 already holds it. */
  async url(n: number, signal: AbortSignal): Promise<{ put: PresignedPut; generation: number } | "stored"> {
    let renewed = false;
    for (;;) {
      if (this.renewing) {
        await this.renewing.catch(() => undefined);
        continue;
      }
      if (renewed || !this.needsRenewal(n)) break;
      renewed = true;
      const p = this.client.resume(this.id, { signal }).then((r) => {
        this.take(r.upload);
        this.generation++;
        this.stale = false;
      });
      this.renewing = p.finally(() => {
        this.renewing = null;
      });
      await this.renewing;
    }
    const put = this.byPart.get(n);
    if (put) return { put, generation: this.generation };
    if (this.received.has(n)) return "stored";
    throw new S3Error({ partNumber: n, status: 0, message: `the API gave no URL for it (upload ${this.id})` });
  }

  /** S3 refused a URL of `generation` as expired: renew at the next lookup, unless done meanwhile. */
  expire(generation: number): void {
    if (this.generation === generation) this.stale = true;
  }
}
