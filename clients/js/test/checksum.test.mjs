import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { crc32c, crc32cBytes, digest, digestBlob, partDigests, objectChecksum, toBase64 } from "../dist/index.js";

const text = (s) => new TextEncoder().encode(s);

test("CRC32C check value and S3's encoding (4 bytes big-endian, base64)", async () => {
  assert.equal(crc32c(text("123456789")), 0xe3069283);
  assert.deepEqual([...crc32cBytes(0xe3069283)], [0xe3, 0x06, 0x92, 0x83]);
  assert.equal(toBase64(await digest("CRC32C", text("123456789"))), "4waSgw==");
  assert.equal(crc32c(new Uint8Array()), 0);
});

test("CRC32C vectors of RFC 3720 (iSCSI), every length through the 8-byte loop", () => {
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  // The sliced loop agrees with a bitwise reference at every length and offset.
  const ref = (b) => {
    let c = ~0;
    for (const x of b) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    }
    return ~c >>> 0;
  };
  const data = Uint8Array.from({ length: 100 }, (_, i) => (i * 37 + 11) & 0xff);
  for (let len = 0; len <= 40; len++) assert.equal(crc32c(data.subarray(3, 3 + len)), ref(data.subarray(3, 3 + len)), `length ${len}`);
});

test("CRC32C continues across chunks", () => {
  const data = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 7) & 0xff);
  const whole = crc32c(data);
  for (const cut of [1, 7, 8, 4095, 9999]) assert.equal(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut))), whole);
});

test("SHA-256 through WebCrypto, base64 as S3 wants", async () => {
  assert.equal(toBase64(await digest("SHA256", new Uint8Array())), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  assert.equal(toBase64(await digest("SHA256", text("abc"))), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
});

test("blob digests (streamed CRC32C, whole SHA-256) agree with the bytes' own", async () => {
  const data = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 13) & 0xff);
  const blob = new Blob([data]);
  for (const alg of ["CRC32C", "SHA256"]) {
    assert.deepEqual(await digestBlob(alg, blob), await digest(alg, data));
  }
});

test("part digests cut at part boundaries; no empty tail part", async () => {
  const data = Uint8Array.from({ length: 10_000 }, (_, i) => i % 251);
  const parts = await partDigests(new Blob([data]), "SHA256", 4096);
  assert.equal(parts.length, 3);
  for (let i = 0; i < 3; i++) {
    const want = createHash("sha256").update(data.subarray(i * 4096, (i + 1) * 4096)).digest();
    assert.deepEqual(Buffer.from(parts[i]), want);
  }
  assert.equal((await partDigests(new Blob([data.subarray(0, 8192)]), "CRC32C", 4096)).length, 2);
});

test("the object's checksum: FULL_OBJECT for a single PUT, COMPOSITE with -count for multipart", async () => {
  const a = await digest("SHA256", text("a"));
  const b = await digest("SHA256", text("b"));
  assert.equal(await objectChecksum("SHA256", [a], false), toBase64(a));
  const want = createHash("sha256").update(Buffer.concat([a, b])).digest("base64");
  assert.equal(await objectChecksum("SHA256", [a, b], true), `${want}-2`);
  const c = await objectChecksum("CRC32C", [crc32cBytes(1), crc32cBytes(2)], true);
  assert.match(c, /^[A-Za-z0-9+/]{6}==-2$/);
});
