// The Uppy plugin with the real @uppy/core (Node runs it without a DOM),
// against the in-memory API and S3 of fake.mjs: several files, checksums
// before create, pause/resume and retry sending only the missing parts, a
// restored session resumed, tokens renewed through getToken, removal and
// cancel deleting sessions.

import { test } from "node:test";
import assert from "node:assert/strict";
import Uppy from "@uppy/core";
import UploadSessions, { fileSession } from "../dist/uppy.js";
import { ApiError, UsageError, MIB } from "../dist/index.js";
import { FakeApi, API, TOKEN, recordingSleep, makeFile } from "./fake.mjs";

const PART = 5 * MIB;

function setup(pluginOpts = {}, apiOpts = {}) {
  const api = new FakeApi(apiOpts);
  const { sleep, waits } = recordingSleep();
  const uppy = new Uppy({ id: `t${Math.random()}` });
  const events = [];
  for (const name of ["upload-start", "upload-success", "upload-error", "preprocess-progress", "preprocess-complete", "upload-sessions:created", "upload-sessions:deleted"]) {
    uppy.on(name, (file, ...rest) => events.push({ name, file: file?.id ?? file, rest, calls: api.calls.length }));
  }
  const opts = { endpoint: API, token: TOKEN, partSize: PART, clientOptions: { fetch: api.fetch, sleep }, ...pluginOpts };
  if (opts.getToken) delete opts.token;
  uppy.use(UploadSessions, opts);
  return { api, uppy, events, waits };
}

function add(uppy, size, name, seed = 1) {
  return uppy.addFile({ name, type: "application/octet-stream", data: makeFile(size, name, 1_700_000_000_000, seed) });
}

async function storedBytes(api, id) {
  const u = api.uploads.get(id);
  return Buffer.concat([...u.parts.keys()].sort((a, b) => a - b).map((n) => u.parts.get(n)));
}

function nextEvent(uppy, name, pred = () => true) {
  return new Promise((resolve) => {
    const on = (...args) => {
      if (!pred(...args)) return;
      uppy.off(name, on);
      resolve(args);
    };
    uppy.on(name, on);
  });
}

test("several files at once: each its own session, completed, bytes as sent; at most `limit` files at a time", async () => {
  // One part at a time per file: the PUTs in flight are the files sending at once.
  const { api, uppy, events } = setup({ limit: 2, concurrency: 1 }, { putDelayMs: 30 });
  const files = [add(uppy, 1000, "small.txt", 1), add(uppy, 2 * PART + 7, "two.bin", 2), add(uppy, PART + 1, "one.bin", 3), add(uppy, 3 * PART, "three.bin", 4)];
  const result = await uppy.upload();
  assert.equal(result.successful.length, 4, JSON.stringify(result.failed.map((f) => f.error)));
  assert.equal(result.failed.length, 0);
  assert.equal(api.uploads.size, 4);
  for (const id of files) {
    const f = uppy.getFile(id);
    assert.equal(f.progress.uploadComplete, true);
    assert.equal(f.progress.bytesUploaded, f.size);
    const body = f.response.body;
    assert.match(body.upload_id, /^upl_/);
    assert.equal(body.session.status, "completed");
    assert.equal(body.session.checksum.algorithm, "SHA256");
    assert.deepEqual(await storedBytes(api, body.upload_id), Buffer.from(await f.data.arrayBuffer()));
    assert.equal(fileSession(f), undefined, "a completed upload leaves no session on the file");
  }
  assert.equal(api.maxInflight, 2, "2 files sending at once, no more");
  assert.equal(events.filter((e) => e.name === "upload-sessions:created").length, 4);
});

test("checksums are computed before create, reported as preprocessing, and declared per part", async () => {
  const { api, uppy, events } = setup();
  const id = add(uppy, 3 * PART, "h.bin");
  await uppy.upload();
  const hashing = events.filter((e) => e.name === "preprocess-progress" && e.file === id);
  assert.deepEqual(hashing.map((e) => e.rest[0].value), [0, 1 / 3, 2 / 3, 1]);
  assert.ok(hashing.every((e) => e.calls === 0 && e.rest[0].message === "Computing checksums"), "all before any API call");
  assert.ok(events.some((e) => e.name === "preprocess-complete" && e.file === id));
  assert.equal(uppy.getFile(id).progress.preprocess, undefined, "preprocessing cleared");
  assert.equal(api.lastCreate.checksum_algorithm, "SHA256");
  assert.equal(api.lastCreate.checksums.length, 3);
  assert.equal(api.lastCreate.part_size, PART);
});

test("pause stops the parts in flight; resume sends only the parts S3 lacks", async () => {
  const { api, uppy } = setup({ concurrency: 1 }, { putDelayMs: 20 });
  const id = add(uppy, 3 * PART, "p.bin");
  let paused = false;
  const done = uppy.upload();
  await nextEvent(uppy, "upload-progress", (_f, p) => p.bytesUploaded >= PART);
  uppy.pauseResume(id);
  paused = true;
  // The part in flight was aborted; nothing more is sent while paused.
  await new Promise((r) => setTimeout(r, 80));
  const whilePaused = api.puts.length;
  assert.deepEqual(api.putsOf(200), [1]);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(api.puts.length, whilePaused, "no PUT while paused");
  assert.equal(uppy.getFile(id).isPaused, true);
  assert.ok(fileSession(uppy.getFile(id)), "the session stays on the file");
  uppy.pauseResume(id);
  const result = await done;
  assert.ok(paused);
  assert.equal(result.successful.length, 1);
  assert.deepEqual(api.putsOf(200).sort(), [1, 2, 3], "part 1 once, then 2 and 3");
  assert.equal(api.uploads.size, 1, "one session throughout");
  assert.ok(api.calls.some((c) => c.path.endsWith("/resume")), "resumed through the resume route");
});

test("a failed upload is retried from where it stopped: the parts S3 holds are not sent again", async () => {
  const { api, uppy, events } = setup({ concurrency: 1 });
  const id = add(uppy, 3 * PART, "r.bin");
  api.onPut = ({ part, attempt }) => (part === 3 && attempt === 1 ? new Response("<Error><Code>InvalidRequest</Code></Error>", { status: 400 }) : undefined);
  const first = await uppy.upload();
  assert.equal(first.failed.length, 1);
  const f = uppy.getFile(id);
  assert.match(f.error, /part 3: S3 refused it: InvalidRequest/);
  assert.ok(events.some((e) => e.name === "upload-error" && e.file === id));
  assert.ok(fileSession(f), "the session is kept for the retry");
  const again = await uppy.retryUpload(id);
  assert.equal(again.successful.length, 1);
  assert.deepEqual(api.puts.map((p) => [p.part, p.status]), [[1, 200], [2, 200], [3, 400], [3, 200]]);
  assert.equal(api.uploads.size, 1);
});

test("a session restored on a file (Golden Retriever after a reload) is resumed, not created again", async () => {
  const first = setup({ concurrency: 1 });
  const id = add(first.uppy, 3 * PART, "g.bin");
  first.api.onPut = ({ part }) => (part === 3 ? new Response("<Error><Code>InvalidRequest</Code></Error>", { status: 400 }) : undefined);
  await first.uppy.upload();
  const saved = fileSession(first.uppy.getFile(id));
  assert.ok(saved);
  assert.equal(saved.token, TOKEN, "the token is kept with the session");
  // A new page: another Uppy, the same file and its persisted state.
  const uppy = new Uppy({ id: "restored" });
  uppy.use(UploadSessions, { endpoint: API, token: TOKEN, clientOptions: { fetch: first.api.fetch } });
  const again = add(uppy, 3 * PART, "g.bin");
  uppy.setFileState(again, { uploadSessions: saved });
  first.api.onPut = null;
  const creates = first.api.calls.filter((c) => c.method === "POST" && c.path === "/uploads").length;
  const result = await uppy.upload();
  assert.equal(result.successful.length, 1);
  assert.equal(first.api.calls.filter((c) => c.method === "POST" && c.path === "/uploads").length, creates, "no new session");
  assert.deepEqual(first.api.putsOf(200), [1, 2, 3]);
  assert.equal(uppy.getFile(again).response.body.upload_id, saved.upload_id);
});

test("removing a file mid-upload deletes its session; a completed file's upload is kept", async () => {
  const { api, uppy } = setup({ concurrency: 1 }, { putDelayMs: 20 });
  const keep = add(uppy, 1000, "keep.txt", 7);
  const id = add(uppy, 3 * PART, "gone.bin", 8);
  const done = uppy.upload();
  await nextEvent(uppy, "upload-progress", (f, p) => f.id === id && p.bytesUploaded >= PART);
  const uploadId = fileSession(uppy.getFile(id)).upload_id;
  const deleted = nextEvent(uppy, "upload-sessions:deleted");
  uppy.removeFile(id);
  const [file, deletedId, error] = await deleted;
  assert.equal(file.id, id);
  assert.equal(deletedId, uploadId);
  assert.equal(error, undefined);
  assert.equal(api.uploads.has(uploadId), false, "the session is gone");
  assert.ok(api.calls.some((c) => c.method === "DELETE" && c.path === `/uploads/${uploadId}` && c.status === 200));
  await done;
  const putsAfter = api.puts.length;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(api.puts.length, putsAfter, "nothing sent after the removal");
  // The completed one: removing it from the list leaves its upload alone.
  const keptId = uppy.getFile(keep).response.body.upload_id;
  uppy.removeFile(keep);
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(api.uploads.has(keptId));
  assert.equal(api.calls.filter((c) => c.method === "DELETE").length, 1);
});

test("cancel all deletes every unfinished session, including paused ones", async () => {
  const { api, uppy } = setup({ concurrency: 1 }, { putDelayMs: 20 });
  const a = add(uppy, 2 * PART, "a.bin", 1);
  add(uppy, 2 * PART, "b.bin", 2);
  const done = uppy.upload();
  while (api.uploads.size < 2) await nextEvent(uppy, "upload-sessions:created");
  uppy.pauseResume(a);
  const deletions = [];
  uppy.on("upload-sessions:deleted", (_f, uploadId, e) => deletions.push([uploadId, e]));
  uppy.cancelAll();
  await done;
  while (deletions.length < 2) await nextEvent(uppy, "upload-sessions:deleted");
  assert.ok(deletions.every(([, e]) => e === undefined));
  assert.equal(api.uploads.size, 0, "no session left");
  assert.equal(uppy.getFiles().length, 0);
});

test("getToken: asked once for new uploads; asked for the upload when its token expired; the new one kept", async () => {
  const asked = [];
  let api;
  const setupped = setup({
    concurrency: 1,
    // As an app's backend: a token for new uploads ("own"), or one for an existing upload.
    getToken: (req) => {
      asked.push(req);
      const token = api.mint({ scope: req.uploadId ? "owner" : "own" });
      return { token, expires_at: new Date(Date.now() + 600_000).toISOString() };
    },
  });
  api = setupped.api;
  const { uppy } = setupped;
  const a = add(uppy, 1000, "a.txt", 1);
  const b = add(uppy, 2 * PART, "b.bin", 2);
  api.onPut = ({ part }) => (part === 2 ? new Response("<Error><Code>InvalidRequest</Code></Error>", { status: 400 }) : undefined);
  await uppy.upload();
  assert.deepEqual(asked, [{}], "one token for both files");
  assert.equal(uppy.getFile(a).progress.uploadComplete, true);
  const saved = fileSession(uppy.getFile(b));
  assert.equal(saved.token, "ubt_minted1");
  assert.ok(saved.token_expires_at);
  // The token that made b's session expires: the retry asks for one for that upload.
  api.tokens.get("ubt_minted1").expired = true;
  api.onPut = null;
  let kept;
  uppy.on("upload-progress", (f) => (kept ??= fileSession(uppy.getFile(f.id))?.token));
  const again = await uppy.retryUpload(b);
  assert.equal(again.successful.length, 1, String(uppy.getFile(b).error));
  assert.deepEqual(asked, [{}, { uploadId: saved.upload_id }]);
  const resumes = api.calls.filter((c) => c.path.endsWith("/resume"));
  assert.deepEqual(resumes.map((c) => [c.status, c.headers.get("authorization")]), [[401, "Bearer ubt_minted1"], [200, "Bearer ubt_minted2"]]);
  assert.equal(kept, "ubt_minted2", "the new token is kept with the session");
  assert.deepEqual(api.putsOf(200).sort(), [1, 1, 2], "a's one part, b's part 1 once, then part 2");
});

test("an expired token: the API's 401 on the file, its message and status; no retry without getToken", async () => {
  const { api, uppy, events } = setup();
  api.tokens.get(TOKEN).expired = true;
  const id = add(uppy, 1000, "x.txt");
  const result = await uppy.upload();
  assert.equal(result.failed.length, 1);
  const f = uppy.getFile(id);
  assert.match(f.error, /Token expired \(HTTP 401/);
  assert.equal(f.response.status, 401);
  assert.equal(f.response.body.error, "Token expired");
  const err = events.find((e) => e.name === "upload-error").rest[0];
  assert.ok(err instanceof ApiError && err.status === 401 && err.requestId);
  assert.equal(api.calls.length, 1, "one create, refused");
  assert.equal(api.uploads.size, 0);
});

test("a token's limits (403) are not worked around: getToken is not asked again", async () => {
  const asked = [];
  let api;
  const s = setup({ getToken: () => (asked.push(1), api.mint({ scope: "own", max_size: 1000 })) });
  api = s.api;
  const id = add(s.uppy, 5000, "big.txt");
  await s.uppy.upload();
  assert.equal(s.uppy.getFile(id).response.status, 403);
  assert.match(s.uppy.getFile(id).error, /Upload larger than the token allows/);
  assert.equal(asked.length, 1);
});

test("options are checked when the plugin is installed", () => {
  const uppy = new Uppy();
  assert.throws(() => uppy.use(UploadSessions, { endpoint: API }), UsageError);
  assert.throws(() => new Uppy().use(UploadSessions, { endpoint: API, token: TOKEN, getToken: () => TOKEN }), UsageError);
  assert.throws(() => new Uppy().use(UploadSessions, { endpoint: "api.test", token: TOKEN }), UsageError);
  const ok = new Uppy().use(UploadSessions, { endpoint: API, token: TOKEN, limit: undefined, checksum: undefined });
  assert.equal(ok.getPlugin("UploadSessions").opts.limit, 3, "undefined takes the default");
  assert.equal(ok.getPlugin("UploadSessions").opts.checksum, "SHA256");
  assert.equal(ok.getState().capabilities.resumableUploads, true, "Dashboard shows pause and resume");
  assert.ok(ok.getPlugin("UploadSessions"));
});
