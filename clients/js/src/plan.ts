/**
 * How `upload()` cuts a file: one `PUT` when it fits in one part, else S3
 * multipart parts of one size, chosen here and sent as the create request's
 * `part_size` (the same plan as the CLI's `client/src/plan.rs`).
 */

import { UsageError } from "./errors.js";

export type ChecksumAlgorithm = "SHA256" | "CRC32C";

export const KIB = 1024;
export const MIB = 1024 * KIB;
export const GIB = 1024 * MIB;
/** S3's smallest part (except the last). */
export const MIN_PART = 5 * MIB;
/** S3's largest part, and largest single `PUT`. */
export const MAX_PART = 5 * GIB;
/** The smallest part chosen by default: fewer requests than S3's 5 MiB, cheap to retry. */
export const DEFAULT_MIN_PART = 8 * MIB;
/** The largest upload the API takes (5 TiB). */
export const MAX_SIZE = 5 * 1024 * GIB;
/** The most checksums a create may declare (one per part). */
export const MAX_CHECKSUMS = 300;
/** S3's most parts. */
export const MAX_PARTS = 10_000;

export interface Plan {
  /** Bytes per part (the last one shorter); the create request's `part_size`. */
  partSize: number;
  /** 1 means a single `PUT`. */
  partCount: number;
}

/**
 * The most parts an upload may have: 300 with checksums (the create body
 * carries one per part and must stay under the API's 16 KB body limit),
 * else S3's 10,000.
 */
export function maxParts(checksum: ChecksumAlgorithm | null): number {
  return checksum ? MAX_CHECKSUMS : MAX_PARTS;
}

/**
 * The plan for `size` bytes: `partSize` when given (checked against S3's
 * limits and the part count), else the smallest whole number of MiB, at
 * least 8 MiB, that keeps the count within {@link maxParts}.
 */
export function planParts(size: number, checksum: ChecksumAlgorithm | null, partSize?: number): Plan {
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new UsageError(`size must be a whole number of bytes, at least 1 (the API takes no empty uploads), not ${size}`);
  }
  if (size > MAX_SIZE) {
    throw new UsageError(`${size} bytes is more than the API's largest upload (5 TiB)`);
  }
  const limit = maxParts(checksum);
  const what = checksum ? `with ${checksum} checksums` : "without checksums";
  let chosen: number;
  if (partSize !== undefined) {
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART || partSize > MAX_PART) {
      throw new UsageError(`partSize must be between 5 MiB and 5 GiB (${MIN_PART}..${MAX_PART} bytes), not ${partSize}`);
    }
    const count = Math.ceil(size / partSize);
    if (count > limit) {
      throw new UsageError(`partSize ${partSize} cuts ${size} bytes into ${count} parts; at most ${limit} ${what}: choose a larger part size`);
    }
    chosen = partSize;
  } else {
    const needed = Math.ceil(Math.ceil(size / limit) / MIB) * MIB;
    chosen = Math.max(needed, DEFAULT_MIN_PART);
    if (chosen > MAX_PART) {
      const hint = checksum ? " (checksum: 'none' allows 10,000 parts)" : "";
      throw new UsageError(`${size} bytes is too large to upload ${what}: at most ${limit} parts of 5 GiB${hint}`);
    }
  }
  return { partSize: chosen, partCount: Math.max(1, Math.ceil(size / chosen)) };
}

/** The size of part `n` (1-based) of `size` bytes cut in `partSize`. */
export function partLength(size: number, partSize: number, n: number): number {
  const start = (n - 1) * partSize;
  return Math.max(0, Math.min(partSize, size - start));
}

/** Where part `n` (1-based) starts. */
export function partStart(partSize: number, n: number): number {
  return (n - 1) * partSize;
}
