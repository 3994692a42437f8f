/**
 * `catty new`'s upload: the current directory (gitignore-aware, default exclusions) is read into
 * a save's trees and chunks (`src/lib/snapshot/`), and only the chunks the server does not hold
 * yet are sent, so a second session from the same project sends next to nothing; with a cache
 * home, files unchanged since the last upload to the same server are not even read again
 * (upload-cache.ts). The server refuses an upload that would add more than its cap. Progress and warnings go to the caller's
 * `Reporter`.
 */
import type { UploadResult } from "../protocol/index.ts";
import type { ApiClient } from "./api.ts";
import { createExcluder, formatBytes, type Excluder } from "../lib/archive.ts";
import { pathTree } from "../lib/tree.ts";
import { SnapshotBuilder, treeSize, type BlobSink, type FileMemo, type Listing } from "../lib/snapshot/build.ts";
import { dropUploadCache, loadUploadCache, saveUploadCache } from "./upload-cache.ts";
import { MAX_QUERY_HASHES } from "../lib/snapshot/format.ts";
import { BlobUploader, httpVault, type VaultClient } from "../lib/snapshot/upload.ts";
import { silentReporter, type Progress, type Reporter } from "./progress.ts";
import { CattyError } from "../protocol/errors.ts";
import { isGitName } from "../lib/safe-fs.ts";
import type { SyncState } from "./sync-back.ts";

export interface UploadSummary extends UploadResult {
  files: number;
  bytes: number;
  /** Bytes of content the server did not have. */
  added: number;
  /** Each file sent (none inside `.git`), as it was when read: sync-back tells later local edits apart. */
  sent: SyncState["files"];
}

/** Collects the hashes and sizes of a build's blobs, sending nothing. */
class Tally implements BlobSink {
  readonly sizes = new Map<string, number>();
  async add(hash: string, bytes: Uint8Array): Promise<void> {
    this.sizes.set(hash, bytes.length);
  }
}

/** The refusal of a project with more new content than the server takes, naming its largest files. */
async function tooLarge(root: string, exclude: Excluder, fresh: number, cap: number): Promise<CattyError> {
  const { largest } = await treeSize(root, exclude);
  const list = largest.map((f) => `  ${f.path} (${formatBytes(f.size)})`).join("\n");
  return new CattyError(
    "too_large",
    `The project has ${fresh > cap ? formatBytes(fresh) : `more than ${formatBytes(cap)}`} to upload, more than this server's cap of ${formatBytes(cap)}. Largest files:\n${list}`,
    "Add large files or folders to .gitignore, or use --no-upload to start without uploading the project.",
  );
}

/**
 * Refuses, before any content is sent, a project with more new content than the server takes:
 * when its files alone pass the cap, their hashes are checked with the server first.
 */
async function checkCap(vault: VaultClient, root: string, exclude: Excluder, cap: number, step: Progress): Promise<Listing | undefined> {
  // What it lists, the upload does not list again.
  const listing: Listing = new Map();
  const size = await treeSize(root, exclude, 5, listing);
  if (size.bytes <= cap) return listing;
  const tally = new Tally();
  await new SnapshotBuilder({ tree: pathTree(root), exclude, onProgress: (s) => step.update(s.bytes, "checking what the server has") }).build(tally, null);
  const hashes = [...tally.sizes.keys()];
  let fresh = 0;
  for (let i = 0; i < hashes.length; i += MAX_QUERY_HASHES) {
    for (const h of await vault.missing(hashes.slice(i, i + MAX_QUERY_HASHES))) fresh += tally.sizes.get(h) ?? 0;
  }
  if (fresh > cap) throw await tooLarge(root, exclude, fresh, cap);
  return undefined;
}

/**
 * A vault that refuses, before sending it, a pack that would take what was sent past `cap`: for
 * a project uploaded before (its cache is there), which is not walked twice to check the cap.
 */
function capped(vault: VaultClient, cap: number, refusal: () => Promise<CattyError>): VaultClient {
  let sent = 0;
  return {
    missing: (hashes) => vault.missing(hashes),
    async putPack(pack) {
      if (sent + pack.length > cap) throw await refusal();
      sent += pack.length;
      await vault.putPack(pack);
    },
  };
}

export async function uploadDirectory(
  client: Pick<ApiClient, "startUpload" | "commitUpload" | "resolveUrl" | "limits">,
  root: string,
  opts: { includeGit: boolean; report?: Reporter; cacheHome?: string },
): Promise<UploadSummary> {
  const report = opts.report ?? silentReporter;
  const { maxUploadBytes } = await client.limits();
  const start = await client.startUpload();
  const exclude = createExcluder(root, "upload", opts.includeGit);
  const cacheKey = opts.cacheHome ? { home: opts.cacheHome, server: client.resolveUrl("/"), root } : null;
  const cached = cacheKey ? loadUploadCache(cacheKey) : new Map<string, FileMemo>();
  const direct = httpVault(client.resolveUrl(start.url));
  const vault = cached.size > 0 ? capped(direct, maxUploadBytes, () => tooLarge(root, exclude, 0, maxUploadBytes)) : direct;
  const step = report.step("Uploading");
  /** Reads the project (files the seed still describes are not read again) and sends what the server lacks. */
  const send = async (seed: Map<string, FileMemo>, listing?: Listing) => {
    const uploader = new BlobUploader(vault);
    // The count is formatted every 64 files: once per file cost 20 ms of a 20,000-file upload.
    let count = "";
    const sent: SyncState["files"] = {};
    /** Whether a directory is in `.git` (by any spelling), answered once per directory. */
    const gitDirs = new Map<string, boolean>([["", false]]);
    const inGit = (dir: string): boolean => {
      let answer = gitDirs.get(dir);
      if (answer === undefined) {
        const slash = dir.lastIndexOf("/");
        answer = isGitName(dir.slice(slash + 1)) || inGit(slash < 0 ? "" : dir.slice(0, slash));
        gitDirs.set(dir, answer);
      }
      return answer;
    };
    const builder = new SnapshotBuilder({
      tree: pathTree(root),
      exclude,
      onProgress: (s) => {
        if (s.files % 64 === 1) count = `${s.files.toLocaleString("en-US")} files`;
        step.update(s.bytes, count);
      },
      // Sync-back never writes into `.git`: there is nothing there to tell apart.
      onFile: (rel, st) => {
        const slash = rel.lastIndexOf("/");
        if (!isGitName(rel.slice(slash + 1)) && !inGit(slash < 0 ? "" : rel.slice(0, slash))) sent[rel] = { size: st.size, mtimeMs: st.mtimeMs };
      },
    });
    builder.seedFiles(seed);
    if (listing) builder.seedListing(listing);
    const built = await builder.build(uploader, null).catch((err: unknown) => {
      throw err instanceof Error && !(err instanceof CattyError) ? new CattyError("bad_request", err.message) : err;
    });
    await uploader.flush().catch((err: unknown) => {
      throw err instanceof Error && !(err instanceof CattyError) ? new CattyError("unavailable", `The upload failed: ${err.message}`, "Run `catty new` again.") : err;
    });
    return { uploader, builder, built, sent };
  };
  try {
    // A project uploaded before is checked as it is sent instead.
    const listing = cached.size === 0 ? await checkCap(direct, root, exclude, maxUploadBytes, step) : undefined;
    let { uploader, builder, built, sent } = await send(cached, listing);
    const commit = () => client.commitUpload(start.id, { root: built.root, files: built.files, size: built.bytes });
    let result: UploadResult;
    try {
      result = await commit();
    } catch (err) {
      // The server no longer has chunks the cache said it had (they were collected): read it all.
      if (cached.size === 0 || !(err instanceof CattyError && err.code === "bad_request")) throw err;
      if (cacheKey) dropUploadCache(cacheKey);
      ({ uploader, builder, built, sent } = await send(new Map()));
      result = await commit();
    }
    // Nothing read and nothing gone: the cache already says all there is.
    const same = built.read === 0 && builder.fileMemos().size === cached.size && cached.size > 0;
    if (cacheKey && !same) {
      try {
        saveUploadCache(cacheKey, builder.fileMemos());
      } catch (err) {
        report.warn(`Could not remember the project for next time: ${(err as Error).message}`);
      }
    }
    const news = uploader.added === 0 ? "nothing new to send" : `${formatBytes(uploader.added)} sent`;
    step.done(`Uploaded ${built.files.toLocaleString("en-US")} files, ${formatBytes(built.bytes)} (${news})`);
    for (const s of built.skipped) report.warn(`Left out ${s.path}: ${s.reason}`);
    return { ...result, files: built.files, bytes: built.bytes, added: uploader.added, sent };
  } catch (err) {
    step.fail();
    throw err;
  }
}
