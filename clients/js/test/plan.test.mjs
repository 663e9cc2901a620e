import { test } from "node:test";
import assert from "node:assert/strict";
import { planParts, partLength, MIB, GIB, MIN_PART, MAX_PART, DEFAULT_MIN_PART, UsageError, backoffDelay } from "../dist/index.js";

test("small files are one PUT of at least 8 MiB parts", () => {
  assert.deepEqual(planParts(1000, "SHA256"), { partSize: 8 * MIB, partCount: 1 });
  assert.equal(planParts(8 * MIB, "SHA256").partCount, 1);
  assert.equal(planParts(8 * MIB + 1, null).partCount, 2);
});

test("part counts stay within 300 checksums, or 10,000 parts without", () => {
  const size = 100 * GIB;
  for (const alg of ["SHA256", "CRC32C"]) {
    const p = planParts(size, alg);
    assert.ok(p.partCount <= 300 && p.partSize % MIB === 0 && p.partSize >= DEFAULT_MIN_PART, JSON.stringify(p));
  }
  const none = planParts(size, null);
  assert.equal(none.partSize, 11 * MIB);
  assert.ok(none.partCount <= 10_000);
  assert.doesNotThrow(() => planParts(1500 * GIB, "SHA256"));
  assert.throws(() => planParts(1500 * GIB + 1, "CRC32C"), UsageError);
  assert.doesNotThrow(() => planParts(5120 * GIB, null));
  assert.throws(() => planParts(5120 * GIB + 1, null), UsageError);
});

test("an explicit part size is checked", () => {
  assert.deepEqual(planParts(3 * MIN_PART + 10, "SHA256", MIN_PART), { partSize: MIN_PART, partCount: 4 });
  assert.throws(() => planParts(100, null, MIN_PART - 1), UsageError);
  assert.throws(() => planParts(100, null, MAX_PART + 1), UsageError);
  assert.throws(() => planParts(301 * MIN_PART, "SHA256", MIN_PART), /at most 300/);
  assert.doesNotThrow(() => planParts(300 * MIN_PART, "CRC32C", MIN_PART));
  assert.doesNotThrow(() => planParts(301 * MIN_PART, null, MIN_PART));
});

test("empty or fractional sizes are refused before any request", () => {
  assert.throws(() => planParts(0, "SHA256"), UsageError);
  assert.throws(() => planParts(1.5, null), UsageError);
});

test("part lengths", () => {
  assert.equal(partLength(11, 5, 3), 1);
  assert.equal(partLength(10, 5, 2), 5);
  assert.equal(partLength(10, 5, 3), 0);
});

test("backoff delays grow, stay capped, and honour Retry-After up to a minute", () => {
  const b = { retries: 10, baseMs: 100, capMs: 1000 };
  for (let r = 1; r <= 10; r++) {
    assert.ok(backoffDelay(b, r, undefined, () => 0.999) <= Math.min(100 * 2 ** (r - 1), 1000));
  }
  assert.equal(backoffDelay(b, 1, undefined, () => 0.5), 50);
  assert.equal(backoffDelay(b, 3, undefined, () => 1), 400);
  assert.equal(backoffDelay(b, 1, 3000, () => 0.5), 3000);
  assert.equal(backoffDelay(b, 1, 600_000, () => 0.5), 60_000);
});
