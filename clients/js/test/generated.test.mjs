// The types cannot drift from openapi.yaml: a fresh generation must equal
// the committed src/generated/api.ts (run `npm run generate` after editing
// openapi.yaml).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

test("src/generated/api.ts is openapi-typescript's output for ../../openapi.yaml", () => {
  const dir = mkdtempSync(join(tmpdir(), "openapi-ts-"));
  try {
    const out = join(dir, "api.ts");
    const cli = join(root, "node_modules", "openapi-typescript", "bin", "cli.js");
    execFileSync(process.execPath, [cli, "../../openapi.yaml", "-o", out], { cwd: root, stdio: "pipe" });
    const fresh = readFileSync(out, "utf8");
    const committed = readFileSync(join(root, "src", "generated", "api.ts"), "utf8");
    assert.ok(fresh === committed, "src/generated/api.ts is stale: run `npm run generate` in clients/js and commit it");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
