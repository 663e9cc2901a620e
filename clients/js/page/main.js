// The uploads page (page/index.html): Uppy's Dashboard with Golden
// Retriever and this package's plugin, and a list of the uploads with
// download and delete. Bundled by `npm run build` (esbuild) into
// dist/page/page.js and page.css; served by `cargo xtask dev` at
// /_local/upload and by the browser tests from another origin.
//
// Query options (for trying things and for the tests): `part_size`,
// `concurrency`, `limit`, `checksum` (SHA256 | CRC32C | none), `auto=1`
// (upload as files are added); `token` (use this token, ask the backend
// for none), `scope`, `max_size`, `content_type`, `ttl_seconds` (what the
// backend's tokens for new uploads are limited to).

import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import GoldenRetriever from "@uppy/golden-retriever";
import { createClient } from "@upload-sessions/client";
import UploadSessions from "@upload-sessions/client/uppy";
import "@uppy/core/css/style.min.css";
import "@uppy/dashboard/css/style.min.css";

const config = JSON.parse(document.getElementById("uploads-config").textContent);
const params = new URLSearchParams(location.search);
const number = (name) => (params.has(name) ? Number(params.get(name)) : undefined);

// The backend's token route: scope "own" for new uploads (the page's own
// limits from the query), "owner" for an existing upload or the list.
async function askToken(query) {
  const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const resp = await fetch(`token?${q}`, { headers: { accept: "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(`the backend gave no token: ${body.error ?? resp.statusText} (HTTP ${resp.status})`);
  return body;
}
const fixed = params.get("token");
const newUploads = {
  scope: params.get("scope") ?? "own",
  max_size: params.get("max_size"),
  content_type: params.get("content_type"),
  ttl_seconds: params.get("ttl_seconds"),
};
const getToken = ({ uploadId }) => (uploadId ? askToken({ scope: "owner", upload_id: uploadId }) : askToken(newUploads));

const uppy = new Uppy({ id: "uploads-page", autoProceed: params.get("auto") === "1" })
  .use(Dashboard, {
    inline: true,
    target: "#dashboard",
    width: "100%",
    height: 400,
    showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false,
    note: "Any file, any size: parts of 8 MiB or more, SHA-256 checked by S3",
  })
  // Files up to 100 MiB are kept in IndexedDB, so a reload resumes them by
  // itself; a larger one comes back as a "ghost": pick it again and it
  // resumes (its session is kept either way).
  .use(GoldenRetriever, { indexedDB: { maxFileSize: 100 * 2 ** 20, maxTotalSize: 500 * 2 ** 20 } })
  .use(UploadSessions, {
    endpoint: config.endpoint,
    ...(fixed ? { token: fixed } : { getToken }),
    checksum: params.get("checksum") ?? "SHA256",
    partSize: number("part_size"),
    concurrency: number("concurrency"),
    limit: number("limit"),
  });

// The list: the owner's uploads, through a client holding an "owner" token.
let lister;
async function listClient() {
  if (!lister || lister.expiresAt - 30_000 < Date.now()) {
    const t = fixed ? { token: fixed } : await askToken({ scope: "owner" });
    lister = { client: createClient({ baseUrl: config.endpoint, token: t.token, store: null }), expiresAt: t.expires_at ? Date.parse(t.expires_at) : Infinity };
  }
  return lister.client;
}

const tbody = document.querySelector("#uploads tbody");
const listError = document.getElementById("list-error");
const size = (n) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

function row(u, client) {
  const tr = document.createElement("tr");
  tr.dataset.uploadId = u.upload_id;
  const cells = [u.filename, size(u.size), u.status, new Date(u.created_at).toLocaleString()];
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (i === 1) td.className = "num";
    tr.append(td);
  });
  const actions = document.createElement("td");
  if (u.status === "completed") {
    const download = document.createElement("button");
    download.type = "button";
    download.textContent = "Download";
    download.className = "download";
    download.onclick = async () => {
      const { url } = await client.downloadUrl(u.upload_id);
      location.assign(url); // S3 answers Content-Disposition: attachment, so the page stays
    };
    actions.append(download, " ");
  }
  const del = document.createElement("button");
  del.type = "button";
  del.textContent = "Delete";
  del.className = "delete";
  del.onclick = async () => {
    del.disabled = true;
    try {
      await client.delete(u.upload_id);
      tr.remove();
    } catch (e) {
      listError.textContent = String(e.message ?? e);
      del.disabled = false;
    }
  };
  actions.append(del);
  tr.append(actions);
  return tr;
}

async function refresh() {
  try {
    const client = await listClient();
    const page = await client.list({ limit: 50 });
    tbody.replaceChildren(...page.uploads.map((u) => row(u, client)));
    listError.textContent = "";
  } catch (e) {
    listError.textContent = String(e.message ?? e);
  }
}

document.getElementById("refresh").onclick = refresh;
uppy.on("upload-success", refresh);
uppy.on("upload-sessions:deleted", refresh);
refresh();

// For the browser tests and the curious: the Uppy instance and the list.
window.uppy = uppy;
window.uploadsPage = { refresh, listClient };
