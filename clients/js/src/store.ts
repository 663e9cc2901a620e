/**
 * Where `upload()` remembers an unfinished upload, so that uploading the
 * same file again (after a reload, a crash, an abort) resumes it and sends
 * only the parts S3 does not hold yet.
 */

/** What is remembered of one unfinished upload. */
export interface SavedUpload {
  upload_id: string;
  /** The session's part size, to cut the file the same way again. */
  part_size: number;
  size: number;
  filename: string;
  /** `Date.now()` when it was saved. */
  saved_at: number;
}

/** A key-value store of saved uploads; sync or async. */
export interface UploadStore {
  get(key: string): SavedUpload | null | undefined | Promise<SavedUpload | null | undefined>;
  set(key: string, value: SavedUpload): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** A store in memory, lost with the page or process. */
export function memoryStore(): UploadStore {
  const map = new Map<string, SavedUpload>();
  return {
    get: (key) => map.get(key),
    set: (key, value) => void map.set(key, value),
    remove: (key) => void map.delete(key),
  };
}

/** A store in `localStorage` (or any `Storage`), under `prefix` + key. */
export function webStorageStore(storage: Storage, prefix = "upload-sessions:"): UploadStore {
  return {
    get(key) {
      const raw = storage.getItem(prefix + key);
      if (!raw) return undefined;
      try {
        const v = JSON.parse(raw) as SavedUpload;
        return typeof v?.upload_id === "string" && typeof v.part_size === "number" ? v : undefined;
      } catch {
        return undefined;
      }
    },
    set(key, value) {
      try {
        storage.setItem(prefix + key, JSON.stringify(value));
      } catch {
        // Full or disabled storage: the upload goes on, only without resume.
      }
    },
    remove: (key) => storage.removeItem(prefix + key),
  };
}

/** `localStorage` when this environment has a working one, else memory. */
export function defaultStore(): UploadStore {
  try {
    const ls = (globalThis as { localStorage?: Storage }).localStorage;
    if (ls) {
      const probe = "upload-sessions:probe";
      ls.setItem(probe, "1");
      ls.removeItem(probe);
      return webStorageStore(ls);
    }
  } catch {
    // Absent, blocked (privacy settings), or Node's without a file.
  }
  return memoryStore();
}

/**
 * The key of a file's saved upload: the API it goes to, its name, size
 * and modification time; or the caller's own fingerprint. `undefined`
 * when the file cannot be told from another (a `Blob` without either).
 */
export function fingerprintKey(baseUrl: string, file: Blob, filename: string, fingerprint?: string): string | undefined {
  if (fingerprint) return `${baseUrl}|${fingerprint}`;
  const lastModified = (file as Partial<File>).lastModified;
  if (typeof lastModified !== "number") return undefined;
  return `${baseUrl}|${filename}|${file.size}|${lastModified}`;
}
