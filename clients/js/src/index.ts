export {
  UploadsClient,
  createClient,
  type ClientOptions,
  type CallOptions,
  type ConfirmResult,
  type FetchLike,
  type TokenRequest,
  type Token,
  type CreateRequest,
  type SessionFields,
  type Session,
  type CompletingSession,
  type CreatedSession,
  type ResumedSession,
  type SessionWithProgress,
  type Instructions,
  type PresignedPut,
  type Checksum,
  type Download,
  type Page,
  type Deleted,
  type ErrorBody,
} from "./client.js";
export { upload, type UploadOptions, type UploadProgress } from "./upload.js";
export { planParts, partLength, maxParts, type Plan, type ChecksumAlgorithm, MIB, GIB, MIN_PART, MAX_PART, DEFAULT_MIN_PART, MAX_CHECKSUMS } from "./plan.js";
export { crc32c, crc32cBytes, digest, digestBlob, partDigests, objectChecksum, toBase64 } from "./checksum.js";
export { ApiError, S3Error, UsageError } from "./errors.js";
export { memoryStore, webStorageStore, defaultStore, type UploadStore, type SavedUpload } from "./store.js";
export { backoffDelay, type Backoff } from "./retry.js";
export type { components, paths, operations } from "./generated/api.js";
