import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient, memoryStore, S3Error, ApiError, UsageError, MIB } from "../dist/index.js";
import { FakeApi, API, KEY, recordingSleep, makeFile } from "./fake.mjs";

const PART = 5 * MIB;

function setup(o = {}, store = memoryStore()) {
  const api = new FakeApi(o);
  const { sleep, waits } = recordingSleep();
  const client = createClient({ baseUrl: API, apiKey: KEY, fetch: api.fetch, sleep, store });
  return { api, client, waits, store };
}

async function storedBytes(api, id) {
  const u = api.uploads.get(id);
  return Buffer.concat([...u.parts.keys()].sort((a, b) => a - b).map((n) => u.parts.get(n)));
}

for (const checksum of ["SHA256", "CRC32C"]) {
  test(`multipart with ${checksum}: checksums declared per part, exact signed headers, confirmed`, async () => {
    const { api, client } = setup();
    const file = makeFile(2 * PART + 12345, "big.bin");
    const progress = [];
    const session = await client.upload(file, { partSize: PART, checksum, onProgress: (p) => progress.push(p) });
    assert.equal(session.status, "completed");
    assert.equal(session.checksum.algorithm, checksum);
    assert.equal(session.checksum.type, "COMPOSITE");
    assert.match(session.checksum.value, /-3$/);
    assert.equal(api.lastCreate.part_size, PART);
    assert.equal(api.lastCreate.checksum_algorithm, checksum);
    assert.equal(api.lastCreate.checksums.length, 3);
    assert.deepEqual(api.putsOf(200).sort(), [1, 2, 3]);
    assert.equal(api.puts.length, 3, "no refused PUT: the fake S3 checks every signed header");
    assert.deepEqual(await storedBytes(api, session.upload_id), Buffer.from(await file.arrayBuffer()));
    // Progress only grows, and ends at the whole file.
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i].loaded >= progress[i - 1].loaded);
    assert.deepEqual(progress.at(-1), { loaded: file.size, total: file.size, partsDone: 3, partCount: 3 });
  });
}

test("a small file is one PUT with if-none-match, FULL_OBJECT checksum; checksum 'none' declares none", async () => {
  const { api, client } = setup();
  const s = await client.upload(makeFile(1000, "small.txt"));
  assert.equal(s.checksum.type, "FULL_OBJECT");
  assert.equal(api.lastCreate.checksum_algorithm, "SHA256", "SHA256 by default");
  assert.equal(api.lastCreate.content_type, "application/octet-stream");
  const n = await client.upload(new Blob(["hello"], { type: "text/plain" }), { filename: "h.txt", checksum: "none" });
  assert.equal(n.checksum, undefined);
  assert.equal(api.lastCreate.checksums, undefined);
  assert.equal(api.lastCreate.content_type, "text/plain");
  await assert.rejects(client.upload(new Blob(["x"])), UsageError, "a Blob needs a filename");
  await assert.rejects(client.upload(new Blob([])), UsageError, "no empty uploads");
});

test("concurrency bounds the PUTs in flight", async () => {
  for (const concurrency of [1, 3]) {
    const { api, client } = setup({ putDelayMs: 15 });
    await client.upload(makeFile(6 * PART, "six.bin"), { partSize: PART, concurrency, checksum: "CRC32C" });
    assert.equal(api.maxInflight, concurrency);
    assert.equal(api.puts.length, 6);
  }
  const { api, client } = setup({ putDelayMs: 15 });
  await client.upload(makeFile(6 * PART, "six.bin"), { partSize: PART, checksum: "none" });
  assert.equal(api.maxInflight, 4, "4 by default");
});

test("a failed PUT is retried with backoff; 503's Retry-After is honoured", async () => {
  const { api, client, waits } = setup();
  api.onPut = ({ part, attempt }) => {
    if (part === 2 && attempt <= 2) return new Response("<Error><Code>SlowDown</Code></Error>", { status: 503, headers: { "retry-after": "4" } });
    if (part === 3 && attempt === 1) throw new TypeError("fetch failed: socket hang up");
  };
  const s = await client.upload(makeFile(3 * PART, "r.bin"), { partSize: PART, checksum: "none" });
  assert.equal(s.status, "completed");
  assert.equal(api.puts.filter((p) => p.part === 2).length, 3);
  assert.equal(waits.filter((w) => w >= 4000).length, 2);
  assert.equal(waits.length, 3);
});

test("a part failing past its retries fails the upload with an S3Error and stops the other parts", async () => {
  const { api, client } = setup();
  api.onPut = ({ part }) => (part === 1 ? new Response("<Error><Code>InternalError</Code><Message>oops</Message></Error>", { status: 500 }) : undefined);
  await assert.rejects(client.upload(makeFile(8 * PART, "f.bin"), { partSize: PART, checksum: "none", retries: 2, concurrency: 1 }), (e) => {
    assert.ok(e instanceof S3Error);
    assert.equal(e.partNumber, 1);
    assert.equal(e.status, 500);
    assert.equal(e.code, "InternalError");
    assert.match(e.message, /after 2 retries/);
    return true;
  });
  assert.equal(api.puts.length, 3, "with one part at a time, nothing after part 1 was sent");
});

test("an expired URL (403) gets fresh URLs from the resume route, once for all parts refused", async () => {
  const { api, client } = setup({ putDelayMs: 5 });
  let expired = false;
  api.onPut = ({ part }) => {
    if (part === 2 && !expired) {
      expired = true;
      api.expireUrls();
    }
  };
  const s = await client.upload(makeFile(5 * PART, "e.bin"), { partSize: PART, checksum: "SHA256", concurrency: 4 });
  assert.equal(s.status, "completed");
  const refused = api.puts.filter((p) => p.status === 403);
  assert.ok(refused.length >= 1);
  assert.equal(api.calls.filter((c) => c.path.endsWith("/resume")).length, 1, "one renewal serves every refused part");
  assert.deepEqual(api.putsOf(200).sort(), [1, 2, 3, 4, 5]);
});

test("URLs about to expire are renewed before they are used", async () => {
  const { api, client } = setup({ createUrlTtlMs: 0 });
  await client.upload(makeFile(2 * PART, "n.bin"), { partSize: PART, checksum: "none" });
  const kinds = api.calls.map((c) => c.path.split("/").at(-1));
  assert.deepEqual(kinds.slice(0, 2), ["uploads", "resume"]);
  assert.equal(api.puts.filter((p) => p.status !== 200).length, 0);
});

test("more parts than an answer carries (more_parts): the rest come from the resume route", async () => {
  const { api, client } = setup({ partsPerAnswer: 2 });
  const s = await client.upload(makeFile(5 * PART, "m.bin"), { partSize: PART, checksum: "CRC32C", concurrency: 1 });
  assert.equal(s.status, "completed");
  assert.equal(api.calls.filter((c) => c.path.endsWith("/resume")).length, 2);
  assert.deepEqual(api.putsOf(200), [1, 2, 3, 4, 5]);
});

test("abort, then upload the same file again (a reload): only the missing parts are sent", async () => {
  const store = memoryStore();
  const first = setup({}, store);
  const file = makeFile(5 * PART + 7, "resume.bin");
  const ac = new AbortController();
  await assert.rejects(
    first.client.upload(file, { partSize: PART, concurrency: 1, signal: ac.signal, onProgress: (p) => p.partsDone === 2 && ac.abort() }),
    { name: "AbortError" },
  );
  assert.deepEqual(first.api.putsOf(200), [1, 2]);
  const id = [...first.api.uploads.keys()][0];
  const key = `${API}|resume.bin|${file.size}|${file.lastModified}`;
  assert.equal(store.get(key).upload_id, id, "remembered under the file's name, size and lastModified");

  // A new page: a new client, the same store and the same API.
  const { sleep } = recordingSleep();
  const again = createClient({ baseUrl: API, apiKey: KEY, fetch: first.api.fetch, sleep, store });
  first.api.puts.length = 0;
  const progress = [];
  const s = await again.upload(makeFile(5 * PART + 7, "resume.bin"), { partSize: PART, onProgress: (p) => progress.push(p) });
  assert.equal(s.upload_id, id, "the same session");
  assert.equal(first.api.uploads.size, 1, "no second create");
  assert.deepEqual(first.api.putsOf(200).sort(), [3, 4, 5, 6]);
  assert.equal(progress[0].loaded, 2 * PART, "the parts S3 holds count from the start");
  assert.deepEqual(await storedBytes(first.api, id), Buffer.from(await file.arrayBuffer()));
  assert.equal(store.get(key), undefined, "forgotten once completed");
});

test("a remembered upload that is gone, changed or already completed", async () => {
  const store = memoryStore();
  const { api, client } = setup({}, store);
  const file = makeFile(2 * PART, "g.bin");
  const ac = new AbortController();
  await assert.rejects(client.upload(file, { partSize: PART, concurrency: 1, signal: ac.signal, onProgress: (p) => p.partsDone === 1 && ac.abort() }));
  // Deleted meanwhile: a fresh session.
  api.uploads.clear();
  const s = await client.upload(file, { partSize: PART });
  assert.equal(api.uploads.size, 1);
  assert.equal(s.status, "completed");

  // Completed before the record was removed: confirm answers it, nothing is sent.
  const ac2 = new AbortController();
  const f2 = makeFile(2 * PART, "h.bin");
  await assert.rejects(client.upload(f2, { partSize: PART, concurrency: 1, signal: ac2.signal, onProgress: (p) => p.partsDone === 1 && ac2.abort() }));
  const id = [...api.uploads.keys()].at(-1);
  const u = api.uploads.get(id);
  u.parts.set(2, Buffer.from(await f2.slice(PART).arrayBuffer()));
  u.status = "completed";
  api.puts.length = 0;
  const done = await client.upload(f2, { partSize: PART });
  assert.equal(done.upload_id, id);
  assert.equal(api.puts.length, 0);

  // Another file of the same name and size but another lastModified: not resumed.
  const before = api.uploads.size;
  await client.upload(makeFile(2 * PART, "h.bin", 42), { partSize: PART, resume: true });
  assert.equal(api.uploads.size, before + 1);
});

test("bytes altered on the way (BadDigest) are sent again; refused twice, an integrity error", async () => {
  const badDigest = () => new Response("<Error><Code>BadDigest</Code><Message>The SHA256 you specified did not match</Message></Error>", { status: 400 });
  {
    const { api, client } = setup();
    api.onPut = ({ part, attempt }) => (part === 2 && attempt === 1 ? badDigest() : undefined);
    const file = makeFile(2 * PART + 1, "once.bin");
    const s = await client.upload(file, { partSize: PART, concurrency: 1 });
    assert.equal(s.status, "completed");
    assert.deepEqual(api.puts.map((p) => [p.part, p.status]), [[1, 200], [2, 400], [2, 200], [3, 200]]);
    assert.deepEqual(await storedBytes(api, s.upload_id), Buffer.from(await file.arrayBuffer()));
  }
  const { api, client } = setup();
  api.onPut = badDigest;
  await assert.rejects(client.upload(makeFile(PART + 1, "b.bin"), { partSize: PART, concurrency: 1 }), (e) => e instanceof S3Error && e.integrity && e.code === "BadDigest" && e.partNumber === 1);
  assert.equal(api.puts.length, 2, "sent twice, then given up");
});

test("onChecksumProgress reports the hashing before create, up to the whole file", async () => {
  const { api, client } = setup();
  const seen = [];
  const file = makeFile(3 * PART, "h.bin");
  await client.upload(file, { partSize: PART, onChecksumProgress: (hashed, total) => seen.push([hashed, total, api.calls.length]) });
  assert.deepEqual(seen.map(([h, t]) => [h, t]), [[0, file.size], [PART, file.size], [2 * PART, file.size], [3 * PART, file.size]]);
  assert.ok(seen.every(([, , calls]) => calls === 0), "all before the create");
});

test("the upload confirms through 202s, honouring Retry-After", async () => {
  const { client, waits } = setup({ confirm202: 3, retryAfter: 7 });
  const s = await client.upload(makeFile(PART + 1, "c.bin"), { partSize: PART });
  assert.equal(s.status, "completed");
  assert.deepEqual(waits, [7000, 7000, 7000]);
});

test("an API error during the upload carries its error and request id", async () => {
  const { api, client } = setup();
  api.onApi = (req) => (req.path === "/uploads" && req.method === "POST" ? new Response(JSON.stringify({ error: "Quota exceeded", request_id: "req-quota" }), { status: 403 }) : undefined);
  await assert.rejects(client.upload(makeFile(10, "q.bin")), (e) => e instanceof ApiError && e.status === 403 && e.error === "Quota exceeded" && e.requestId === "req-quota");
});

test("aborting before the start sends nothing", async () => {
  const { api, client } = setup();
  const ac = new AbortController();
  ac.abort(new DOMException("user cancelled", "AbortError"));
  await assert.rejects(client.upload(makeFile(10, "a.bin"), { signal: ac.signal }), { name: "AbortError", message: "user cancelled" });
  assert.equal(api.calls.length, 0);
});
