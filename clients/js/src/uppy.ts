/**
 * `UploadSessions`: an uploader plugin for Uppy 6 (`@uppy/core`, shown by
 * `@uppy/dashboard`, restored by `@uppy/golden-retriever`) that sends each
 * file through the upload sessions API with this package's `upload()`:
 * checksums computed before create (the API signs each part's checksum
 * into its URL, so S3 checks every byte), parts `PUT` in parallel with the
 * exact signed headers, retries with fresh URLs from the resume route,
 * confirm through 202 + `Retry-After`. Pause, resume and retry send only
 * the parts S3 does not hold; removing or cancelling a file deletes its
 * session.
 *
 * Why not `@uppy/aws-s3`: in Uppy 6 it talks to S3 itself
 * (`CreateMultipartUpload`, `ListParts`, `CompleteMultipartUpload` signed by
 * a `signRequest` callback or by credentials), which would bypass the API's
 * create and confirm: the session record, the quota, the declared checksums
 * and the completion the API verifies. This plugin is an uploader of its
 * own, as `@uppy/tus` is.
 *
 * ```js
 * import Uppy from "@uppy/core";
 * import Dashboard from "@uppy/dashboard";
 * import GoldenRetriever from "@uppy/golden-retriever";
 * import UploadSessions from "@upload-sessions/client/uppy";
 *
 * new Uppy()
 *   .use(Dashboard, { inline: true, target: "#uploader" })
 *   .use(GoldenRetriever)
 *   .use(UploadSessions, {
 *     endpoint: "https://abc.execute-api.eu-central-1.amazonaws.com/v1",
 *     getToken: async ({ uploadId }) => (await fetch(`/my-backend/upload-token?upload_id=${uploadId ?? ""}`)).json(),
 *   });
 * ```
 */

import { BasePlugin, EventManager } from "@uppy/core";
import type { Body, DefinePluginOpts, Meta, PluginOpts, Uppy, UppyFile } from "@uppy/core";
import { type ClientOptions, type Session, UploadsClient } from "./client.js";
import { ApiError, UsageError, abortReason } from "./errors.js";
import type { ChecksumAlgorithm } from "./plan.js";
import type { SavedUpload, UploadStore } from "./store.js";

/** What `getToken` answers: a token, or `POST /tokens`' answer as it came (its `expires_at` lets the plugin ask again in time). */
export type TokenAnswer = string | { token: string; expires_at?: string | undefined };

/**
 * What the plugin asks `getToken` for: a token for new uploads (no
 * `uploadId`), or one that may resume, confirm and delete the existing
 * upload `uploadId`, which the token at hand may not (expired, or minted
 * for another page load with scope `own`). Your backend mints it with
 * `mintToken({ upload_id: uploadId, scope: "owner" })` once it has
 * checked that this user may touch that upload.
 */
export interface TokenFor {
  uploadId?: string | undefined;
}

export interface UploadSessionsOptions extends PluginOpts {
  /** The API's base URL: `https://…/v1`, or `http://127.0.0.1:3000` under `cargo xtask dev`. */
  endpoint: string;
  /** A token your backend minted (`POST /tokens`), used for every call. Or give {@link getToken}. */
  token?: string;
  /** Asks your backend for a token: at the first upload, when one expires, and for an upload another token made. */
  getToken?: (request: TokenFor) => TokenAnswer | Promise<TokenAnswer>;
  /** Declared per part and checked by S3 as it stores them (default `SHA256`). */
  checksum?: ChecksumAlgorithm | "none";
  /** Bytes per part (default: at least 8 MiB, larger as needed to fit 300 checksums). */
  partSize?: number;
  /** Parts in flight at once, per file (default 4). */
  concurrency?: number;
  /** Files uploading at once (default 3). */
  limit?: number;
  /** Retries of each part's `PUT` (default 5). */
  retries?: number;
  /** Removing or cancelling a file deletes its unfinished session (default true). */
  deleteOnRemove?: boolean;
  /**
   * Keep the token with the file's session in Uppy's file state, which
   * Golden Retriever persists, so an upload restored after a reload resumes
   * with the token that created it while that token lives (default true).
   * Without it, a restored upload asks `getToken({ uploadId })`.
   */
  keepToken?: boolean;
  /** For the client under the plugin: `fetch`, `backoff`, `sleep` (tests, proxies). */
  clientOptions?: Pick<ClientOptions, "fetch" | "backoff" | "sleep">;
  /** `xhr` (byte-level progress; default in browsers) or `fetch`. */
  transport?: "fetch" | "xhr";
}

const defaultOptions = {
  checksum: "SHA256",
  concurrency: 4,
  limit: 3,
  deleteOnRemove: true,
  keepToken: true,
} satisfies Partial<UploadSessionsOptions>;

type Opts = DefinePluginOpts<UploadSessionsOptions, keyof typeof defaultOptions>;

/** `upload-success`'s body: the completed session. */
export interface UploadSessionsBody extends Body {
  upload_id: string;
  session: Session;
}

/**
 * What the plugin keeps on an Uppy file while its upload is unfinished
 * (`file.uploadSessions`), persisted by Golden Retriever: the session, and
 * the token that created it unless `keepToken` is false.
 */
export interface FileSession extends SavedUpload {
  token?: string | undefined;
  token_expires_at?: string | undefined;
}

declare module "@uppy/core" {
  interface UppyEventMap<M extends Meta, B extends Body> {
    /** A file's session was opened (its upload id is known from here on). */
    "upload-sessions:created": (file: UppyFile<M, B> | undefined, uploadId: string) => void;
    /** A removed file's unfinished session was deleted (`error` when the API refused). */
    "upload-sessions:deleted": (file: UppyFile<M, B>, uploadId: string, error: unknown) => void;
  }
}

/** The session kept on `file`, if any. */
export function fileSession(file: unknown): FileSession | undefined {
  const s = (file as { uploadSessions?: FileSession } | undefined)?.uploadSessions;
  return s && typeof s.upload_id === "string" ? s : undefined;
}

/** A token and when it expires (ms since the epoch; `Infinity` when unknown). */
interface Held {
  token: string;
  expiresAt: number;
  expires_at?: string | undefined;
}

/** A token is renewed this long before it expires. */
const TOKEN_MARGIN_MS = 30_000;

function held(answer: TokenAnswer): Held {
  const a = typeof answer === "string" ? { token: answer } : answer;
  if (!a || typeof a.token !== "string" || !a.token) {
    throw new UsageError("getToken must answer a token: a string, or POST /tokens' answer ({token, expires_at})");
  }
  const at = a.expires_at ? Date.parse(a.expires_at) : NaN;
  return { token: a.token, expiresAt: Number.isNaN(at) ? Infinity : at, expires_at: a.expires_at };
}

const fresh = (h: Held) => h.expiresAt - TOKEN_MARGIN_MS > Date.now();

/** The tokens at hand: a fixed one, or those `getToken` answers (one at a time, kept until they expire). */
class Tokens {
  private current: Held | undefined;
  private pending: Promise<Held> | undefined;

  constructor(private readonly opts: Opts) {
    if (!!opts.token === !!opts.getToken) {
      throw new UsageError("UploadSessions: give exactly one of token (a string your backend minted) or getToken (a function asking your backend)");
    }
    if (opts.token) this.current = { token: opts.token, expiresAt: Infinity };
  }

  get renewable(): boolean {
    return !!this.opts.getToken;
  }

  /** The token for new uploads; a new one when `renew` or when it is about to expire. */
  async forNew(renew = false): Promise<Held> {
    if (this.current && !(renew && this.renewable) && fresh(this.current)) return this.current;
    if (!this.opts.getToken) return this.current!;
    this.pending ??= Promise.resolve(this.opts.getToken({}))
      .then(held)
      .finally(() => {
        this.pending = undefined;
      });
    this.current = await this.pending;
    return this.current;
  }

  /** A token for the existing upload `uploadId` (only with `getToken`). */
  async forUpload(uploadId: string): Promise<Held> {
    return held(await this.opts.getToken!({ uploadId }));
  }
}

/** At most `n` at once; the others wait their turn (or their abort). */
class Slots {
  private waiting: Array<() => void> = [];

  constructor(private free: number) {}

  acquire(signal: AbortSignal): Promise<() => void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(abortReason(signal));
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.free++;
        this.next();
      };
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve(release);
      };
      const onAbort = () => {
        this.waiting = this.waiting.filter((g) => g !== grant);
        reject(abortReason(signal));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(grant);
      this.next();
    });
  }

  private next(): void {
    while (this.free > 0 && this.waiting.length) {
      this.free--;
      this.waiting.shift()!();
    }
  }
}

/** Whether another token may succeed where `e`'s was refused: expired, unknown, or not the upload's. */
function tokenRefused(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 401 || (e.status === 403 && e.error === "Upload is outside the token's scope"));
}

/** Why an attempt was stopped: a pause, a removal, or Uppy's cancel. */
const STOPPED = "upload-sessions: stopped";

export default class UploadSessions<M extends Meta, B extends Body> extends BasePlugin<Opts, M, B> {
  static VERSION = "0.1.0";
  private readonly tokens: Tokens;
  private readonly slots: Slots;
  private readonly clients = new Map<string, UploadsClient>();

  constructor(uppy: Uppy<M, B>, opts: UploadSessionsOptions) {
    // An option given as `undefined` takes its default.
    const given = Object.fromEntries(Object.entries(opts ?? {}).filter(([, v]) => v !== undefined));
    super(uppy, { ...defaultOptions, ...given } as Opts);
    this.type = "uploader";
    this.id = this.opts.id || "UploadSessions";
    if (typeof this.opts.endpoint !== "string" || !/^https?:\/\//i.test(this.opts.endpoint)) {
      throw new UsageError("UploadSessions: endpoint must be the API's http:// or https:// base URL");
    }
    this.tokens = new Tokens(this.opts);
    this.slots = new Slots(Math.max(1, Math.floor(this.opts.limit)));
    this.defaultLocale = { strings: { computingChecksums: "Computing checksums" } };
    this.i18nInit();
  }

  override install(): void {
    const { capabilities } = this.uppy.getState();
    this.uppy.setState({ capabilities: { ...capabilities, resumableUploads: true } });
    this.uppy.addUploader(this.handleUpload);
    this.uppy.on("file-removed", this.onFileRemoved);
  }

  override uninstall(): void {
    const { capabilities } = this.uppy.getState();
    this.uppy.setState({ capabilities: { ...capabilities, resumableUploads: false } });
    this.uppy.removeUploader(this.handleUpload);
    this.uppy.off("file-removed", this.onFileRemoved);
  }

  /** The client sending with `token` (one per token). */
  private client(token: string): UploadsClient {
    let c = this.clients.get(token);
    if (!c) {
      c = new UploadsClient({ ...this.opts.clientOptions, baseUrl: this.opts.endpoint, token, store: null });
      this.clients.set(token, c);
    }
    return c;
  }

  private handleUpload = async (fileIDs: string[]): Promise<void> => {
    const files = this.uppy.getFilesByIds(fileIDs).filter((f) => !f.error && !f.progress.uploadComplete);
    const starting = files.filter((f) => !f.progress.uploadStarted || !f.isRestored);
    this.uppy.emit("upload-start", starting);
    await Promise.allSettled(files.map((f) => this.uploadFile(f.id)));
  };

  /**
   * One file, until it completes, fails or is removed: started now, stopped
   * by a pause, started again by a resume (sending only what S3 lacks).
   * Resolves on success or removal; rejects with the error it reported.
   */
  private uploadFile(fileId: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const events = new EventManager(this.uppy);
      let run: AbortController | undefined;
      let settled = false;
      const settle = (error?: { e: unknown }) => {
        if (settled) return;
        settled = true;
        events.remove();
        run?.abort(STOPPED);
        if (error) reject(error.e);
        else resolve();
      };
      const stop = () => {
        run?.abort(STOPPED);
        run = undefined;
      };
      const start = async () => {
        if (settled || run) return;
        const file = this.uppy.getFile(fileId);
        if (!file) return settle();
        if (file.isPaused) return;
        const controller = new AbortController();
        run = controller;
        let release: (() => void) | undefined;
        try {
          release = await this.slots.acquire(controller.signal);
          const session = await this.send(fileId, controller.signal);
          const now = this.uppy.getFile(fileId);
          if (now) {
            const body = { upload_id: session.upload_id, session } as UploadSessionsBody as unknown as B;
            this.uppy.emit("upload-success", now, { status: 200, body, uploadURL: undefined });
          }
          settle();
        } catch (e) {
          // Paused, removed or cancelled: not a failure.
          if (controller.signal.aborted) return;
          const now = this.uppy.getFile(fileId);
          if (now) {
            const response = e instanceof ApiError ? { status: e.status, body: e.body as B } : undefined;
            this.uppy.emit("upload-error", now, e as Error, response);
          }
          settle({ e });
        } finally {
          release?.();
          if (run === controller) run = undefined;
        }
      };
      events.onFileRemove(fileId, () => settle());
      events.onPause(fileId, (paused) => (paused ? stop() : void start()));
      events.onPauseAll(fileId, stop);
      events.onResumeAll(fileId, () => void start());
      void start();
    });
  }

  /**
   * Uploads the file with `upload()`, its session kept in Uppy's file state;
   * once more with another token when the API refused this one (expired, or
   * not the upload's) and `getToken` can give another.
   */
  private async send(fileId: string, signal: AbortSignal): Promise<Session> {
    const file = this.uppy.getFile(fileId);
    if (!file) throw abortReason(signal);
    if (file.isRemote) throw new UsageError(`${file.name}: files from Companion (remote) are not supported; add local files`);
    const data = file.data;
    if (!data) throw new UsageError(`${file.name}: its bytes are gone (restored without them); add the file again`);
    const saved = fileSession(file);
    let token = saved?.token ? { token: saved.token, expiresAt: Infinity } : await this.tokens.forNew();
    for (let renewed = false; ; renewed = true) {
      let hashing = false;
      const endHashing = () => {
        if (hashing && this.uppy.getFile(fileId)) this.uppy.emit("preprocess-complete", this.uppy.getFile(fileId));
        hashing = false;
      };
      try {
        return await this.client(token.token).upload(data, {
          filename: file.name ?? "file",
          contentType: file.type || "application/octet-stream",
          checksum: this.opts.checksum,
          partSize: this.opts.partSize,
          concurrency: this.opts.concurrency,
          retries: this.opts.retries,
          transport: this.opts.transport,
          signal,
          store: this.store(fileId, token),
          fingerprint: fileId,
          onChecksumProgress: (hashed, total) => {
            const now = this.uppy.getFile(fileId);
            if (!now) return;
            hashing = true;
            this.uppy.emit("preprocess-progress", now, { mode: "determinate", message: this.i18n("computingChecksums"), value: total ? hashed / total : 1 });
            if (hashed >= total) endHashing();
          },
          onProgress: ({ loaded, total }) => {
            const now = this.uppy.getFile(fileId);
            if (!now) return;
            endHashing();
            this.uppy.emit("upload-progress", now, { uploadStarted: now.progress.uploadStarted || Date.now(), bytesUploaded: loaded, bytesTotal: total });
          },
        });
      } catch (e) {
        endHashing();
        if (renewed || signal.aborted || !this.tokens.renewable || !tokenRefused(e)) throw e;
        const session = fileSession(this.uppy.getFile(fileId));
        if (session) {
          token = await this.tokens.forUpload(session.upload_id);
          this.keep(fileId, { ...session, ...this.tokenFields(token) });
        } else {
          token = await this.tokens.forNew(true);
        }
      }
    }
  }

  private tokenFields(token: Held): Pick<FileSession, "token" | "token_expires_at"> {
    return this.opts.keepToken ? { token: token.token, token_expires_at: token.expires_at } : {};
  }

  private keep(fileId: string, session: FileSession | undefined): void {
    if (this.uppy.getFile(fileId)) this.uppy.setFileState(fileId, { uploadSessions: session } as Partial<UppyFile<M, B>>);
  }

  /** `upload()`'s store for one file: its session in Uppy's file state, with the token that made it. */
  private store(fileId: string, token: Held): UploadStore {
    return {
      get: () => fileSession(this.uppy.getFile(fileId)),
      set: (_key, value) => {
        this.keep(fileId, { ...value, ...this.tokenFields(token) });
        this.uppy.emit("upload-sessions:created", this.uppy.getFile(fileId), value.upload_id);
      },
      remove: () => this.keep(fileId, undefined),
    };
  }

  /** A removed (or cancelled) file's unfinished session is deleted. */
  private onFileRemoved = (file: UppyFile<M, B>): void => {
    const session = fileSession(file);
    if (!session || !this.opts.deleteOnRemove) return;
    void this.deleteSession(session).then(
      () => this.uppy.emit("upload-sessions:deleted", file, session.upload_id, undefined),
      (e) => {
        this.uppy.log(`[UploadSessions] could not delete upload ${session.upload_id}: ${String((e as Error)?.message ?? e)}`, "warning");
        this.uppy.emit("upload-sessions:deleted", file, session.upload_id, e);
      },
    );
  };

  private async deleteSession(session: FileSession): Promise<void> {
    let token = session.token ? { token: session.token, expiresAt: Infinity } : await this.tokens.forNew();
    for (let renewed = false; ; renewed = true) {
      try {
        await this.client(token.token).delete(session.upload_id);
        return;
      } catch (e) {
        // Already gone: what was asked for.
        if (e instanceof ApiError && e.status === 404) return;
        if (renewed || !this.tokens.renewable || !tokenRefused(e)) throw e;
        token = await this.tokens.forUpload(session.upload_id);
      }
    }
  }
}

export { UploadSessions };
