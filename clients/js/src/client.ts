/**
 * Every route of the upload sessions API (`openapi.yaml`), plus minting
 * browser tokens on the server side. Types come from the generated
 * `./generated/api.ts` (`npm run generate`).
 */

import type { components } from "./generated/api.js";
import { ApiError, S3Error, UsageError, abortReason, isAbort } from "./errors.js";
import { API_BACKOFF, type Backoff, backoffDelay, parseRetryAfter, sleep as defaultSleep } from "./retry.js";
import { type UploadStore, defaultStore } from "./store.js";
import { type UploadOptions, upload as runUpload } from "./upload.js";

type Schemas = components["schemas"];
export type CreateRequest = Schemas["CreateRequest"];
export type SessionFields = Schemas["SessionFields"];
export type Session = Schemas["Session"];
export type CompletingSession = Schemas["CompletingSession"];
export type CreatedSession = Schemas["CreatedSession"];
export type ResumedSession = Schemas["ResumedSession"];
export type SessionWithProgress = Schemas["SessionWithProgress"];
export type Instructions = Schemas["Instructions"];
export type PresignedPut = Schemas["PresignedPut"];
export type Checksum = Schemas["Checksum"];
export type Download = Schemas["Download"];
export type Page = Schemas["Page"];
export type Deleted = Schemas["Deleted"];
export type ErrorBody = Schemas["Error"];

/** `POST /tokens`'s body: every field optional (`ttl_seconds` 60..3600, default 900; `scope` `own` by default). */
export type TokenRequest = Omit<Schemas["TokenRequest"], "ttl_seconds"> & { ttl_seconds?: number };
/** `POST /tokens`'s 201 answer: `token` (`ubt_…`, sent as `Authorization: Bearer`), `expires_at`, the limits. */
export type Token = Schemas["Token"];

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** The API's base URL: `http://127.0.0.1:3000`, or a stage's `https://…/v1`. */
  baseUrl: string;
  /** An owner's API key, sent as `x-api-key`. Server side only: never ship it to a browser. */
  apiKey?: string;
  /** A token minted by the owner's backend (`mintToken`), sent as `Authorization: Bearer`. For browsers. */
  token?: string;
  /** The `fetch` to use (default: the global one). */
  fetch?: FetchLike;
  /** Retries of the API's calls (default 4) and their backoff. */
  backoff?: Partial<Backoff>;
  /** Where `upload()` remembers unfinished uploads (default: `localStorage` when present, else memory). `null`: nowhere. */
  store?: UploadStore | null;
  /** Waits between retries (for tests; default `setTimeout`). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

/** One confirm's answer: completed (200), or S3 still completing (202, confirm again after `retryAfter` seconds). */
export type ConfirmResult =
  | { status: 200; session: Session }
  | { status: 202; session: CompletingSession; retryAfter: number };

/**
 * When a failed call may be sent again: reads and idempotent writes
 * (`always`: after a network failure, 429 or 5xx), or writes a lost answer
 * would make a retry do twice (`unchanged`: only 429, 500, 503, which the
 * service answers before committing anything).
 */
type Retry = "always" | "unchanged";

interface Reply {
  status: number;
  json: unknown;
  retryAfterMs: number | undefined;
}

export class UploadsClient {
  readonly baseUrl: string;
  readonly store: UploadStore | null;
  /** @internal */
  readonly fetchImpl: FetchLike;
  /** @internal */
  readonly customFetch: boolean;
  /** @internal */
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly auth: Record<string, string>;
  private readonly backoff: Backoff;
  private readonly kind: "apiKey" | "token";

  constructor(opts: ClientOptions) {
    if (!opts || typeof opts.baseUrl !== "string" || !/^https?:\/\//i.test(opts.baseUrl)) {
      throw new UsageError("baseUrl must be an http:// or https:// URL");
    }
    if (!!opts.apiKey === !!opts.token) {
      throw new UsageError("give exactly one of apiKey (server side) or token (browsers)");
    }
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.kind = opts.apiKey ? "apiKey" : "token";
    this.auth = opts.apiKey ? { "x-api-key": opts.apiKey } : { authorization: `Bearer ${opts.token}` };
    const f = opts.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (!f) throw new UsageError("no fetch in this environment: pass one as the fetch option");
    this.customFetch = opts.fetch !== undefined;
    this.fetchImpl = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.sleep = opts.sleep ?? defaultSleep;
    this.backoff = { ...API_BACKOFF, ...opts.backoff };
    this.store = opts.store === undefined ? defaultStore() : opts.store;
  }

  /** `POST /uploads`: opens a session (not retried after a lost answer, which would open two). */
  async create(body: CreateRequest, opts: CallOptions = {}): Promise<CreatedSession> {
    return (await this.call("POST", "/uploads", { body, retry: "unchanged", signal: opts.signal })).json as CreatedSession;
  }

  /** `GET /uploads/{id}`: while pending, which parts S3 holds; once completed, a presigned `download`. */
  async get(uploadId: string, opts: CallOptions = {}): Promise<SessionWithProgress> {
    return (await this.call("GET", `/uploads/${enc(uploadId)}`, { signal: opts.signal })).json as SessionWithProgress;
  }

  /** `GET /uploads`: one page of the caller's uploads, newest first. */
  async list(opts: CallOptions & { limit?: number; cursor?: string | null } = {}): Promise<Page> {
    const q = new URLSearchParams();
    if (opts.limit !== undefined) q.set("limit", String(opts.limit));
    if (opts.cursor) q.set("cursor", opts.cursor);
    const qs = q.size ? `?${q}` : "";
    return (await this.call("GET", `/uploads${qs}`, { signal: opts.signal })).json as Page;
  }

  /** Every upload of the caller, page after page. */
  async *listAll(opts: CallOptions & { limit?: number } = {}): AsyncGenerator<SessionFields> {
    let cursor: string | null = null;
    do {
      const page: Page = await this.list({ ...opts, cursor });
      yield* page.uploads;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** `POST /uploads/{id}/resume`: fresh presigned URLs for the parts S3 does not hold yet. */
  async resume(uploadId: string, opts: CallOptions = {}): Promise<ResumedSession> {
    return (await this.call("POST", `/uploads/${enc(uploadId)}/resume`, { signal: opts.signal })).json as ResumedSession;
  }

  /** `POST /uploads/{id}/confirm`, once: 200 completed, or 202 while S3 completes (see {@link confirmAndWait}). */
  async confirm(uploadId: string, opts: CallOptions = {}): Promise<ConfirmResult> {
    const r = await this.call("POST", `/uploads/${enc(uploadId)}/confirm`, { signal: opts.signal });
    if (r.status === 202) {
      return { status: 202, session: r.json as CompletingSession, retryAfter: Math.max(1, (r.retryAfterMs ?? 2000) / 1000) };
    }
    return { status: 200, session: r.json as Session };
  }

  /**
   * Confirms until completed: on 202 waits `Retry-After` (at most a
   * minute) and confirms again (idempotent), for at most `timeoutMs`
   * (default 30 minutes; then an `ApiError` with status 202).
   */
  async confirmAndWait(uploadId: string, opts: CallOptions & { timeoutMs?: number } = {}): Promise<Session> {
    const timeout = opts.timeoutMs ?? 30 * 60_000;
    const start = Date.now();
    let waited = 0;
    for (;;) {
      const r = await this.confirm(uploadId, opts);
      if (r.status === 200) return r.session;
      const wait = Math.min(r.retryAfter * 1000, 60_000);
      // Time spent, by the clock or (with a fake sleep) by the waits asked for.
      if (Math.max(Date.now() - start, waited) + wait > timeout) {
        throw new ApiError({
          status: 202,
          error: "Upload still completing",
          requestId: r.session.request_id,
          retryAfter: r.retryAfter,
          body: r.session,
          method: "POST",
          path: `/uploads/${uploadId}/confirm`,
        });
      }
      await this.sleep(wait, opts.signal);
      waited += wait;
    }
  }

  /** `DELETE /uploads/{id}` (or `DELETE /uploads` with `x-upload-id` when `viaHeader`). */
  async delete(uploadId: string, opts: CallOptions & { viaHeader?: boolean } = {}): Promise<Deleted> {
    const r = opts.viaHeader
      ? await this.call("DELETE", "/uploads", { headers: { "x-upload-id": uploadId }, retry: "unchanged", signal: opts.signal })
      : await this.call("DELETE", `/uploads/${enc(uploadId)}`, { retry: "unchanged", signal: opts.signal });
    return r.json as Deleted;
  }

  /** Where a completed upload's bytes are: a fresh presigned `GET` (through `GET /uploads/{id}`). */
  async downloadUrl(uploadId: string, opts: CallOptions = {}): Promise<Download> {
    const view = await this.get(uploadId, opts);
    if (!view.download) throw new UsageError(`upload ${uploadId} is ${view.status}: it has no bytes to download yet`);
    return view.download;
  }

  /**
   * A completed upload's bytes: the `Response` of its presigned `GET`
   * (sent with no credentials and no other header, as the URL is signed).
   */
  async download(uploadId: string, opts: CallOptions = {}): Promise<Response> {
    const { url } = await this.downloadUrl(uploadId, opts);
    let resp: Response;
    try {
      resp = await this.fetchImpl(url, { method: "GET", signal: opts.signal ?? null });
    } catch (e) {
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      throw new S3Error({ status: 0, message: `downloading ${uploadId}: network error: ${String((e as Error)?.message ?? e)}`, cause: e });
    }
    if (!resp.ok) {
      const text = await resp.text().catch(() => "");
      const code = xmlField(text, "Code");
      throw new S3Error({ status: resp.status, code, message: `downloading ${uploadId}: S3 answered ${code ?? "HTTP " + resp.status}` });
    }
    return resp;
  }

  /**
   * `POST /tokens`: a short-lived token for a browser, minted with the
   * owner's API key. Refused on a token client (the API refuses it too:
   * tokens cannot mint tokens).
   */
  async mintToken(req: TokenRequest = {}, opts: CallOptions = {}): Promise<Token> {
    if (this.kind !== "apiKey") {
      throw new UsageError("mintToken needs a client built with an owner's apiKey (server side); this one holds a token");
    }
    const ttl = req.ttl_seconds;
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 60 || ttl > 3600)) {
      throw new UsageError(`ttl_seconds must be a whole number from 60 to 3600, not ${ttl}`);
    }
    const body = Object.fromEntries(Object.entries(req).filter(([, v]) => v !== undefined));
    return (await this.call("POST", "/tokens", { body, signal: opts.signal })).json as Token;
  }

  /** Uploads `file`: see {@link UploadOptions}. Resolves to the completed session. */
  upload(file: Blob, opts: UploadOptions = {}): Promise<Session> {
    return runUpload(this, file, opts);
  }

  private async call(
    method: string,
    path: string,
    o: { body?: unknown; headers?: Record<string, string>; retry?: Retry; signal?: AbortSignal | undefined } = {},
  ): Promise<Reply> {
    const retry = o.retry ?? "always";
    const headers: Record<string, string> = { accept: "application/json", ...this.auth, ...o.headers };
    if (o.body !== undefined) headers["content-type"] = "application/json";
    const init: RequestInit = { method, headers, signal: o.signal ?? null };
    if (o.body !== undefined) init.body = JSON.stringify(o.body);
    for (let attempt = 0; ; attempt++) {
      if (o.signal?.aborted) throw abortReason(o.signal);
      let failure: ApiError | Error;
      let retryAfterMs: number | undefined;
      let again: boolean;
      try {
        const resp = await this.fetchImpl(this.baseUrl + path, init);
        const text = await resp.text();
        retryAfterMs = parseRetryAfter(resp.headers.get("retry-after"));
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        if (resp.status >= 200 && resp.status < 300) {
          if (json === undefined || typeof json !== "object") {
            throw new ApiError({ status: resp.status, error: "The API answered with a body that is not JSON", body: text, method, path });
          }
          return { status: resp.status, json, retryAfterMs };
        }
        const b = (json ?? {}) as { error?: unknown; message?: unknown; request_id?: unknown };
        const error = typeof b.error === "string" ? b.error : typeof b.message === "string" ? b.message : firstLine(text) || resp.statusText || "request failed";
        const requestId = typeof b.request_id === "string" ? b.request_id : resp.headers.get("x-request-id") ?? undefined;
        failure = new ApiError({ status: resp.status, error, requestId, retryAfter: retryAfterMs === undefined ? undefined : retryAfterMs / 1000, body: json ?? text, method, path });
        again = [429, 500, 503].includes(resp.status) || (retry === "always" && [502, 504].includes(resp.status));
      } catch (e) {
        if (o.signal?.aborted || isAbort(e)) throw o.signal?.aborted ? abortReason(o.signal) : e;
        if (e instanceof ApiError) throw e;
        // A network failure: it may have reached the API, so a write that
        // is not idempotent is not sent again.
        failure = new Error(`${method} ${path}: cannot reach ${this.baseUrl}: ${String((e as Error)?.message ?? e)}`, { cause: e });
        again = retry === "always";
      }
      if (!again || attempt >= this.backoff.retries) throw failure;
      await this.sleep(backoffDelay(this.backoff, attempt + 1, retryAfterMs), o.signal);
    }
  }
}

/** A client: `{baseUrl, apiKey}` on a server, `{baseUrl, token}` in a browser. */
export function createClient(opts: ClientOptions): UploadsClient {
  return new UploadsClient(opts);
}

function enc(id: string): string {
  return encodeURIComponent(id);
}

function firstLine(text: string): string {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l) ?? "";
  return line.startsWith("<") ? "" : line.slice(0, 200);
}

/** The text of the first `<tag>` of an S3 XML error body. */
export function xmlField(body: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(body);
  return m?.[1];
}
