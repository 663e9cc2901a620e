/**
 * Checksums as S3 computes them: SHA-256 (WebCrypto) or CRC32C (the
 * Castagnoli polynomial, table-driven below), the raw digest in standard
 * base64 (CRC32C's 4 bytes big-endian), one per `PUT`; and for a multipart
 * upload the composite value S3 reports: the digest of the concatenated
 * part digests, then `-<part count>`.
 */

import type { ChecksumAlgorithm } from "./plan.js";
import { UsageError, abortReason } from "./errors.js";

// CRC32C: reflected polynomial 0x82F63B78, eight tables ("slicing by 8",
// about four times faster than one table in V8).
const T: Uint32Array[] = [];
for (let k = 0; k < 8; k++) T.push(new Uint32Array(256));
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  T[0]![n] = c >>> 0;
}
for (let n = 0; n < 256; n++) {
  for (let k = 1; k < 8; k++) T[k]![n] = (T[k - 1]![n]! >>> 8) ^ T[0]![T[k - 1]![n]! & 0xff]!;
}

/**
 * The CRC32C of `bytes`, continuing from `crc` (the value of the bytes
 * before them; 0 to start). Unsigned 32-bit.
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = T as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  const b = bytes;
  let c = ~crc >>> 0;
  let i = 0;
  const end8 = b.length - (b.length % 8);
  for (; i < end8; i += 8) {
    const a = c ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
    c = t7[a & 0xff]! ^ t6[(a >>> 8) & 0xff]! ^ t5[(a >>> 16) & 0xff]! ^ t4[a >>> 24]! ^
      t3[b[i + 4]!]! ^ t2[b[i + 5]!]! ^ t1[b[i + 6]!]! ^ t0[b[i + 7]!]!;
  }
  for (; i < b.length; i++) c = t0[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** A CRC32C value as S3 carries it: 4 bytes, big-endian. */
export function crc32cBytes(crc: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, crc >>> 0, false);
  return out;
}

/** Standard base64 with padding. */
export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new UsageError(
      "SHA-256 needs WebCrypto (crypto.subtle), which browsers offer only in secure contexts (https, localhost); use checksum: 'CRC32C' or 'none'",
    );
  }
  return s;
}

/** The raw digest of `bytes`: 32 bytes of SHA-256 or CRC32C's 4, big-endian. */
export async function digest(algorithm: ChecksumAlgorithm, bytes: Uint8Array): Promise<Uint8Array> {
  if (algorithm === "CRC32C") return crc32cBytes(crc32c(bytes));
  return new Uint8Array(await subtle().digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

/**
 * The raw digest of `blob`. CRC32C reads it as a stream (little memory);
 * SHA-256 holds it whole, as WebCrypto has no incremental digest.
 */
export async function digestBlob(algorithm: ChecksumAlgorithm, blob: Blob, signal?: AbortSignal): Promise<Uint8Array> {
  if (signal?.aborted) throw abortReason(signal);
  if (algorithm === "SHA256") {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    if (signal?.aborted) throw abortReason(signal);
    return digest(algorithm, bytes);
  }
  let crc = 0;
  const reader = blob.stream().getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (signal?.aborted) throw abortReason(signal);
      crc = crc32c(value, crc);
    }
  } finally {
    reader.releaseLock();
  }
  return crc32cBytes(crc);
}

/** The digests of each `partSize` slice of `blob` (at least one), in order. */
export async function partDigests(
  blob: Blob,
  algorithm: ChecksumAlgorithm,
  partSize: number,
  opts: { signal?: AbortSignal | undefined; onPart?: ((hashedBytes: number) => void) | undefined } = {},
): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  let hashed = 0;
  for (let start = 0; start < blob.size || out.length === 0; start += partSize) {
    const slice = blob.slice(start, Math.min(blob.size, start + partSize));
    out.push(await digestBlob(algorithm, slice, opts.signal));
    hashed += slice.size;
    opts.onPart?.(hashed);
  }
  return out;
}

/**
 * The checksum S3 reports for an object stored from parts with these raw
 * digests (the `value` of the API's `checksum`): the digest itself for a
 * single `PUT` (`FULL_OBJECT`), else `base64(H(d1 || d2 || ...))-<count>`
 * (`COMPOSITE`).
 */
export async function objectChecksum(algorithm: ChecksumAlgorithm, parts: Uint8Array[], multipart: boolean): Promise<string> {
  if (!multipart && parts.length === 1) return toBase64(parts[0]!);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return `${toBase64(await digest(algorithm, all))}-${parts.length}`;
}
