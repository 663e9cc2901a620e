// An in-memory upload sessions API and S3, as a `fetch`: enough of
// openapi.yaml's behaviour to drive the client, with hooks to inject faults.

import { createHash, randomBytes } from "node:crypto";
import { crc32c, crc32cBytes } from "../dist/index.js";

export const API = "https://api.test/v1";
export const S3 = "https://bucket.s3.test";
export const KEY = "usk_testkey";
export const TOKEN = "ubt_testtoken";

const MIB = 1024 * 1024;

function digestB64(algorithm, bytes) {
  if (algorithm === "CRC32C") return Buffer.from(crc32cBytes(crc32c(bytes))).toString("base64");
  return createHash("sha256").update(bytes).digest("base64");
}
function rawDigest(algorithm, bytes) {
  if (algorithm === "CRC32C") return Buffer.from(crc32cBytes(crc32c(bytes)));
  return createHash("sha256").update(bytes).digest();
}

const iso = (ms) => new Date(ms).toISOString();
let seq = 0;
const requestId = () => `req-${++seq}`;

function json(status, body, headers = {}) {
  const rid = body?.request_id;
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...(rid ? { "x-request-id": rid } : {}), ...headers },
  });
}
const err = (status, error, headers) => json(status, { error, request_id: requestId() }, headers);
const s3err = (status, code, message = "") =>
  new Response(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`, { status });

export class FakeApi {
  constructor(o = {}) {
    this.urlTtlMs = o.urlTtlMs ?? 900_000;
    this.createUrlTtlMs = o.createUrlTtlMs ?? this.urlTtlMs;
    this.partsPerAnswer = o.partsPerAnswer ?? 1000;
    this.confirm202 = o.confirm202 ?? 0;
    this.retryAfter = o.retryAfter ?? 3;
    this.putDelayMs = o.putDelayMs ?? 0;
    this.uploads = new Map();
    this.calls = []; // API calls: {method, path, status, headers}
    this.puts = []; // S3 PUTs: {id, part, status}
    this.inflight = 0;
    this.maxInflight = 0;
    this.minGeneration = 0; // URLs signed before this generation are refused (403), as expired ones
    this.generation = 0;
    this.onApi = null; // (req) => Response | undefined
    this.onPut = null; // ({id, part, attempt}) => Response | undefined
    // Browser tokens: token -> {scope: "own" | "owner", expired?, maxSize?}. "own" reaches only the uploads it created.
    this.tokens = new Map([[TOKEN, { scope: "owner" }]]);
    this.minted = 0;
    this.fetch = this.fetch.bind(this);
  }

  /** Every URL signed so far stops working, as if it expired. */
  expireUrls() {
    this.minGeneration = ++this.generation;
  }

  putsOf(status = 200) {
    return this.puts.filter((p) => p.status === status).map((p) => p.part);
  }

  async fetch(input, init = {}) {
    const url = new URL(input);
    if (init.signal?.aborted) throw init.signal.reason ?? new DOMException("aborted", "AbortError");
    if (url.origin === S3) return this.s3(url, init);
    if (!input.startsWith(API)) throw new TypeError(`fetch failed: no route to ${input}`);
    const method = init.method ?? "GET";
    const headers = new Headers(init.headers);
    const path = url.pathname.slice(new URL(API).pathname.length);
    const req = { method, path, query: url.searchParams, headers, body: init.body };
    const injected = this.onApi?.(req);
    const resp = injected ? await injected : this.route(req);
    this.calls.push({ method, path, status: resp.status, headers });
    return resp;
  }

  owner(headers) {
    if (headers.get("x-api-key") === KEY) return { kind: "key" };
    const bearer = /^Bearer (.+)$/.exec(headers.get("authorization") ?? "")?.[1];
    const t = bearer && this.tokens.get(bearer);
    if (t) return { kind: "token", token: bearer, ...t };
    return null;
  }

  /** A new token, as POST /tokens mints it. */
  mint(o = {}) {
    const token = `ubt_minted${++this.minted}`;
    this.tokens.set(token, { scope: o.scope ?? "own", maxSize: o.max_size });
    return token;
  }

  route(req) {
    const who = this.owner(req.headers);
    if (!who) return err(401, req.headers.get("authorization") ? "Invalid token" : "Unauthorized");
    if (who.expired) return err(401, "Token expired");
    const { method, path } = req;
    let m;
    // A token with scope "own" reaches only the uploads it created.
    const id = /^\/uploads\/([^/]+)/.exec(path)?.[1] ?? (path === "/uploads" && method === "DELETE" ? req.headers.get("x-upload-id") : undefined);
    const u = id && this.uploads.get(id);
    if (u && who.kind === "token" && who.scope === "own" && u.token !== who.token) return err(403, "Upload is outside the token's scope");
    if (path === "/uploads" && method === "POST") {
      if (who.maxSize !== undefined && JSON.parse(req.body).size > who.maxSize) return err(403, "Upload larger than the token allows");
      const r = this.create(req);
      if (r.status === 201) this.lastCreated.token = who.token;
      return r;
    }
    if (path === "/uploads" && method === "GET") return this.list(req);
    if (path === "/uploads" && method === "DELETE") return this.remove(req.headers.get("x-upload-id"));
    if (path === "/tokens" && method === "POST") {
      if (who.kind !== "key") return err(401, "Unauthorized");
      const body = JSON.parse(req.body);
      this.lastTokenRequest = body;
      return json(201, { token: this.mint(body), expires_at: iso(Date.now() + 1000 * (body.ttl_seconds ?? 900)), scope: body.scope ?? "own", request_id: requestId() });
    }
    if ((m = /^\/uploads\/([^/]+)$/.exec(path))) {
      if (method === "GET") return this.get(m[1]);
      if (method === "DELETE") return this.remove(m[1]);
    }
    if ((m = /^\/uploads\/([^/]+)\/(resume|confirm)$/.exec(path)) && method === "POST") {
      return m[2] === "resume" ? this.resume(m[1]) : this.confirm(m[1]);
    }
    return json(403, { message: "Missing Authentication Token" });
  }

  create(req) {
    let b;
    try {
      b = JSON.parse(req.body);
    } catch {
      return err(400, "Invalid JSON body");
    }
    if (!Number.isInteger(b.size) || b.size < 1) return err(400, "Invalid size");
    const partSize = b.part_size ?? 8 * MIB;
    if (partSize < 5 * MIB || partSize > 5 * 1024 * MIB) return err(400, "Invalid part_size");
    const type = b.size <= partSize ? "single" : "multipart";
    const partCount = type === "single" ? 1 : Math.ceil(b.size / partSize);
    if (b.checksums && (b.checksums.length !== partCount || b.checksums.length > 300)) return err(400, "Invalid checksums");
    const id = `upl_${randomBytes(16).toString("hex")}`;
    const now = Date.now();
    const u = {
      id, filename: b.filename, content_type: b.content_type, size: b.size, type,
      part_size: type === "single" ? b.size : partSize, part_count: partCount,
      algorithm: b.checksum_algorithm ?? null, checksums: b.checksums ?? null,
      parts: new Map(), status: "pending", created_at: iso(now), completed_at: null,
      expires_at: iso(now + 86_400_000), confirms: 0,
    };
    this.uploads.set(id, u);
    this.lastCreate = b;
    this.lastCreated = u;
    return json(201, { ...this.view(u), upload: this.instructions(u, this.createUrlTtlMs, false), request_id: requestId() });
  }

  view(u) {
    const v = {
      upload_id: u.id, status: u.status, filename: u.filename, content_type: u.content_type, size: u.size,
      created_at: u.created_at, expires_at: u.status === "completed" ? null : u.expires_at, completed_at: u.completed_at,
    };
    if (u.algorithm && u.status === "completed") {
      let value;
      if (u.type === "single") value = u.checksums[0];
      else {
        const raws = [...Array(u.part_count).keys()].map((i) => Buffer.from(u.checksums[i], "base64"));
        value = `${digestB64(u.algorithm, Buffer.concat(raws))}-${u.part_count}`;
      }
      v.checksum = { algorithm: u.algorithm, type: u.type === "single" ? "FULL_OBJECT" : "COMPOSITE", value, part_size: u.part_size };
    }
    return v;
  }

  missing(u) {
    const out = [];
    for (let n = 1; n <= u.part_count; n++) if (!u.parts.has(n)) out.push(n);
    return out;
  }

  instructions(u, ttl, withReceived) {
    const exp = Date.now() + ttl;
    const gen = this.generation;
    const missing = this.missing(u);
    const parts = missing.slice(0, this.partsPerAnswer).map((n) => {
      const size = Math.min(u.part_size, u.size - (n - 1) * u.part_size);
      const headers = { "content-length": String(size) };
      if (u.type === "single") headers["if-none-match"] = "*";
      if (u.algorithm) headers[`x-amz-checksum-${u.algorithm.toLowerCase()}`] = u.checksums[n - 1];
      return { part_number: n, method: "PUT", url: `${S3}/${u.id}?partNumber=${n}&gen=${gen}&exp=${exp}`, headers, size };
    });
    const out = { type: u.type, part_size: u.part_size, part_count: u.part_count, urls_expire_at: iso(exp), parts, more_parts: missing.length > parts.length };
    if (withReceived) out.parts_received = [...u.parts.keys()].sort((a, b) => a - b);
    return out;
  }

  resume(id) {
    const u = this.uploads.get(id);
    if (!u) return err(404, "Upload not found");
    if (u.status === "completed") return err(409, "Upload already completed");
    return json(200, { ...this.view(u), upload: this.instructions(u, this.urlTtlMs, true), request_id: requestId() });
  }

  confirm(id) {
    const u = this.uploads.get(id);
    if (!u) return err(404, "Upload not found");
    if (u.status !== "completed") {
      if (this.missing(u).length) return err(409, "Upload bytes missing");
      if (u.confirms++ < this.confirm202) {
        return json(202, { ...this.view(u), completion: "in_progress", request_id: requestId() }, { "retry-after": String(this.retryAfter) });
      }
      u.status = "completed";
      u.completed_at = iso(Date.now());
    }
    return json(200, { ...this.view(u), request_id: requestId() });
  }

  get(id) {
    const u = this.uploads.get(id);
    if (!u) return err(404, "Upload not found");
    const v = { ...this.view(u), request_id: requestId() };
    if (u.status === "completed") v.download = { url: `${S3}/${u.id}?download=1`, method: "GET", expires_at: iso(Date.now() + 900_000) };
    else v.upload = { type: u.type, part_size: u.part_size, part_count: u.part_count, parts_received: [...u.parts.keys()], parts_missing: this.missing(u) };
    return json(200, v);
  }

  list(req) {
    const all = [...this.uploads.values()].reverse();
    const limit = Number(req.query.get("limit") ?? 50);
    const start = Number(req.query.get("cursor")?.split(".")[0] ?? 0);
    const page = all.slice(start, start + limit);
    const next = start + limit < all.length ? `${start + limit}.${"x".repeat(43)}` : null;
    return json(200, { uploads: page.map((u) => this.view(u)), next_cursor: next, request_id: requestId() });
  }

  remove(id) {
    if (!id) return err(400, "Missing Upload-Id header");
    if (!this.uploads.delete(id)) return err(404, "Upload not found");
    return json(200, { message: `Upload ${id} deleted successfully`, request_id: requestId() });
  }

  async s3(url, init) {
    const id = url.pathname.slice(1);
    const u = this.uploads.get(id);
    if ((init.method ?? "GET") === "GET") {
      if (!u || u.status !== "completed") return s3err(404, "NoSuchKey");
      if (init.headers && Object.keys(init.headers).length) return s3err(403, "SignatureDoesNotMatch");
      return new Response(Buffer.concat([...u.parts.keys()].sort((a, b) => a - b).map((n) => u.parts.get(n))));
    }
    const part = Number(url.searchParams.get("partNumber"));
    const attempt = this.puts.filter((p) => p.id === id && p.part === part).length + 1;
    this.inflight++;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    try {
      if (this.putDelayMs) {
        await new Promise((resolve, reject) => {
          const t = setTimeout(resolve, this.putDelayMs);
          init.signal?.addEventListener("abort", () => {
            clearTimeout(t);
            reject(init.signal.reason ?? new DOMException("aborted", "AbortError"));
          });
        });
      }
      let resp;
      try {
        resp = await this.s3put(u, id, part, attempt, url, init);
      } catch (e) {
        this.puts.push({ id, part, status: 0 });
        throw e;
      }
      this.puts.push({ id, part, status: resp.status });
      return resp;
    } finally {
      this.inflight--;
    }
  }

  async s3put(u, id, part, attempt, url, init) {
    const injected = this.onPut?.({ id, part, attempt });
    if (injected) return injected;
    if (!u) return s3err(404, "NoSuchUpload");
    if (Number(url.searchParams.get("exp")) < Date.now() || Number(url.searchParams.get("gen")) < this.minGeneration) {
      return s3err(403, "AccessDenied", "Request has expired");
    }
    // Exactly the signed headers: each present with its value, no other x-amz-* or conditional one.
    const signed = this.instructionsHeaders(u, part);
    const sent = new Headers(init.headers);
    for (const [k, v] of Object.entries(signed)) {
      if (k === "content-length") continue;
      if (sent.get(k) !== v) return s3err(403, "SignatureDoesNotMatch", `header ${k}`);
    }
    for (const [k] of sent) {
      if ((k.startsWith("x-amz-") || k === "if-none-match") && !(k in signed)) return s3err(403, "SignatureDoesNotMatch", `unsigned ${k}`);
      if (k === "content-length") return s3err(400, "BadRequest", "a script set content-length");
    }
    const bytes = Buffer.from(await init.body.arrayBuffer());
    if (String(bytes.length) !== signed["content-length"]) return s3err(403, "SignatureDoesNotMatch", "content-length");
    if (u.algorithm && digestB64(u.algorithm, bytes) !== u.checksums[part - 1]) return s3err(400, "BadDigest", "checksum");
    if (u.type === "single" && u.parts.has(1)) return s3err(412, "PreconditionFailed");
    u.parts.set(part, bytes);
    return new Response(null, { status: 200, headers: { etag: `"${part}"` } });
  }

  instructionsHeaders(u, n) {
    const size = Math.min(u.part_size, u.size - (n - 1) * u.part_size);
    const headers = { "content-length": String(size) };
    if (u.type === "single") headers["if-none-match"] = "*";
    if (u.algorithm) headers[`x-amz-checksum-${u.algorithm.toLowerCase()}`] = u.checksums[n - 1];
    return headers;
  }
}

/** A `File` of `size` pseudo-random bytes. */
export function makeFile(size, name = "data.bin", lastModified = 1_700_000_000_000, seed = 1) {
  const bytes = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return new File([bytes], name, { type: "application/octet-stream", lastModified });
}

/** A sleep that records what it was asked to wait and returns at once (honouring aborts). */
export function recordingSleep() {
  const waits = [];
  const sleep = async (ms, signal) => {
    waits.push(ms);
    if (signal?.aborted) throw signal.reason;
    await new Promise((r) => setImmediate(r));
    if (signal?.aborted) throw signal.reason;
  };
  return { sleep, waits };
}

export { MIB, rawDigest, digestB64 };
