import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient, ApiError, UsageError } from "../dist/index.js";
import { FakeApi, API, KEY, TOKEN, recordingSleep, makeFile } from "./fake.mjs";

function setup(o = {}, auth = { apiKey: KEY }) {
  const api = new FakeApi(o);
  const { sleep, waits } = recordingSleep();
  const client = createClient({ baseUrl: API + "/", ...auth, fetch: api.fetch, sleep, store: null });
  return { api, client, waits };
}

test("an API key goes as x-api-key; a token as Authorization: Bearer", async () => {
  const a = setup();
  await a.client.list();
  assert.equal(a.api.calls[0].headers.get("x-api-key"), KEY);
  assert.equal(a.api.calls[0].headers.get("authorization"), null);
  const b = setup({}, { token: TOKEN });
  await b.client.list();
  assert.equal(b.api.calls[0].headers.get("authorization"), `Bearer ${TOKEN}`);
  assert.equal(b.api.calls[0].headers.get("x-api-key"), null);
  assert.throws(() => createClient({ baseUrl: API, apiKey: KEY, token: TOKEN }), UsageError);
  assert.throws(() => createClient({ baseUrl: API }), UsageError);
  assert.throws(() => createClient({ baseUrl: "ftp://x", apiKey: KEY }), UsageError);
});

test("errors carry the API's error, request_id, status and Retry-After", async () => {
  const { client, api } = setup();
  await assert.rejects(client.get("upl_00000000000000000000000000000000"), (e) => {
    assert.ok(e instanceof ApiError && e instanceof Error);
    assert.equal(e.status, 404);
    assert.equal(e.error, "Upload not found");
    assert.match(e.requestId, /^req-\d+$/);
    assert.equal(e.retryAfter, undefined);
    assert.match(e.message, /GET \/uploads\/upl_0+: Upload not found \(HTTP 404, request req-\d+\)/);
    return true;
  });
  assert.equal(api.calls.length, 1, "a 404 is not retried");
  const bad = createClient({ baseUrl: API, apiKey: "usk_wrong", fetch: api.fetch, store: null });
  await assert.rejects(bad.list(), { name: "ApiError", status: 401, error: "Unauthorized" });
  // API Gateway's own answer has `message`, no request id.
  api.onApi = () => new Response(JSON.stringify({ message: "Missing Authentication Token" }), { status: 403 });
  await assert.rejects(client.confirm("upl_00000000000000000000000000000000"), { status: 403, error: "Missing Authentication Token", requestId: undefined });
});

test("429 and 503 are retried after Retry-After; then the error surfaces with it", async () => {
  const { client, api, waits } = setup();
  let n = 0;
  api.onApi = () => (n++ < 2 ? new Response(JSON.stringify({ error: "Too many requests", request_id: "r-429" }), { status: 429, headers: { "retry-after": "10" } }) : undefined);
  const page = await client.list({ limit: 5 });
  assert.deepEqual(page.uploads, []);
  assert.deepEqual(waits, [10_000, 10_000]);
  api.onApi = () => new Response(JSON.stringify({ error: "Service busy", request_id: "r-503" }), { status: 503, headers: { "retry-after": "2" } });
  await assert.rejects(client.list(), { status: 503, error: "Service busy", requestId: "r-503", retryAfter: 2 });
  assert.equal(waits.length, 2 + 4, "4 retries by default");
});

test("a create is not sent again after a network failure (it may have opened a session); a read is", async () => {
  const { client, api } = setup();
  let n = 0;
  api.onApi = () => {
    if (n++ === 0) throw new TypeError("fetch failed");
  };
  await assert.rejects(client.create({ filename: "a", content_type: "text/plain", size: 1 }), /cannot reach/);
  assert.equal(n, 1);
  n = 0;
  await client.list();
  assert.equal(n, 2);
});

test("a 502 is retried for an idempotent call, not for a create", async () => {
  const { client, api } = setup();
  let n = 0;
  api.onApi = () => (n++ === 0 ? new Response("Bad Gateway", { status: 502 }) : undefined);
  await client.list();
  assert.equal(n, 2);
  n = 0;
  await assert.rejects(client.create({ filename: "a", content_type: "text/plain", size: 1 }), { status: 502, error: "Bad Gateway" });
  assert.equal(n, 1);
});

test("confirm answers 202 with Retry-After; confirmAndWait waits it out", async () => {
  const { client, api, waits } = setup({ confirm202: 2, retryAfter: 3 });
  const c = await client.create({ filename: "a.txt", content_type: "text/plain", size: 3 });
  const put = c.upload.parts[0];
  const { "content-length": _, ...headers } = put.headers;
  assert.equal((await api.fetch(put.url, { method: "PUT", headers, body: new Blob(["abc"]) })).status, 200);
  const once = await client.confirm(c.upload_id);
  assert.equal(once.status, 202);
  assert.equal(once.retryAfter, 3);
  assert.equal(once.session.completion, "in_progress");
  const done = await client.confirmAndWait(c.upload_id);
  assert.equal(done.status, "completed");
  assert.deepEqual(waits, [3000]);
  // Idempotent: confirming again answers the same view.
  assert.equal((await client.confirm(c.upload_id)).status, 200);
});

test("confirmAndWait gives up after its timeout with a 202 ApiError", async () => {
  const { client, waits } = setup({ confirm202: 100, retryAfter: 5 });
  await assert.rejects(
    client.upload(new Blob(["x"]), { filename: "x.txt", checksum: "none", confirmTimeoutMs: 12_000 }),
    (e) => e instanceof ApiError && e.status === 202 && e.error === "Upload still completing" && e.retryAfter === 5,
  );
  assert.deepEqual(waits, [5000, 5000], "two waits fit in 12 s; the third would not");
});

test("get, list pages, listAll, delete by path and by header, download", async () => {
  const { client } = setup();
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push((await client.upload(makeFile(10 + i, `f${i}.bin`), { checksum: "none" })).upload_id);
  const first = await client.list({ limit: 2 });
  assert.equal(first.uploads.length, 2);
  assert.ok(first.next_cursor);
  const all = [];
  for await (const u of client.listAll({ limit: 2 })) all.push(u.upload_id);
  assert.deepEqual(all, [...ids].reverse());
  const view = await client.get(ids[0]);
  assert.equal(view.status, "completed");
  assert.ok(view.download.url);
  const resp = await client.download(ids[0]);
  assert.deepEqual(new Uint8Array(await resp.arrayBuffer()), new Uint8Array(await makeFile(10, "f0.bin").arrayBuffer()));
  assert.match((await client.delete(ids[0])).message, /^Upload upl_[0-9a-f]{32} deleted successfully$/);
  assert.match((await client.delete(ids[1], { viaHeader: true })).message, /deleted successfully/);
  await assert.rejects(client.delete(ids[1]), { status: 404 });
});

test("mintToken: the body as given, 201 answer; refused on a token client before any request", async () => {
  const { client, api } = setup();
  const t = await client.mintToken({ ttl_seconds: 600, scope: "own", max_size: 1024, content_type: "image/png" });
  assert.equal(t.token, "ubt_minted1");
  assert.equal(t.scope, "own");
  assert.deepEqual(api.lastTokenRequest, { ttl_seconds: 600, scope: "own", max_size: 1024, content_type: "image/png" });
  assert.equal(api.calls.at(-1).path, "/tokens");
  assert.equal(api.calls.at(-1).headers.get("x-api-key"), KEY);
  await assert.rejects(client.mintToken({ ttl_seconds: 30 }), UsageError);
  const browser = setup({}, { token: TOKEN });
  await assert.rejects(browser.client.mintToken(), (e) => e instanceof UsageError && /apiKey/.test(e.message));
  assert.equal(browser.api.calls.length, 0);
});

test("an aborted call rejects with the signal's reason", async () => {
  const { client } = setup();
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(client.list({ signal: ac.signal }), { name: "AbortError" });
});
