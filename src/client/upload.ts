/**
 * `catty new`'s upload: the current directory (gitignore-aware, default exclusions) is read into
 * a save's trees and chunks (`src/lib/snapshot/`), and only the chunks the server does not hold
 * yet are sent, so a second session from the same project sends next to nothing. The server
 * refuses an upload that would add more than its cap. Progress and warnings go to the caller's
 * `Reporter`.
 */
import type { UploadResult } from "../protocol/index.ts";
import type { ApiClient } from "./api.ts";
import { createExcluder, formatBytes, type Excluder } from "../lib/archive.ts";
import { SnapshotBuilder, treeSize, type BlobSink } from "../lib/snapshot/build.ts";
import { MAX_QUERY_HASHES } from "../lib/snapshot/format.ts";
import { BlobUploader, httpVault, type VaultClient } from "../lib/snapshot/upload.ts";
import { silentReporter, type Progress, type Reporter } from "./progress.ts";
import { CattyError } from "../protocol/errors.ts";

export interface UploadSummary extends UploadResult {
  files: number;
  bytes: number;
  /** Bytes of content the server did not have. */
  added: number;
}

/** Collects the hashes and sizes of a build's blobs, sending nothing. */
class Tally implements BlobSink {
  readonly sizes = new Map<string, number>();
  async add(hash: string, bytes: Uint8Array): Promise<void> {
    this.sizes.set(hash, bytes.length);
  }
}

/**
 * Refuses, before any content is sent, a project with more new content than the server takes:
 * when its files alone pass the cap, their hashes are checked with the server first.
 */
async function checkCap(vault: VaultClient, root: string, exclude: Excluder, cap: number, step: Progress): Promise<void> {
  const size = await treeSize(root, exclude);
  if (size.bytes <= cap) return;
  const tally = new Tally();
  await new SnapshotBuilder({ root, exclude, onProgress: (s) => step.update(s.bytes, "checking what the server has") }).build(tally, null);
  const hashes = [...tally.sizes.keys()];
  let fresh = 0;
  for (let i = 0; i < hashes.length; i += MAX_QUERY_HASHES) {
    for (const h of await vault.missing(hashes.slice(i, i + MAX_QUERY_HASHES))) fresh += tally.sizes.get(h) ?? 0;
  }
  if (fresh <= cap) return;
  const list = size.largest.map((f) => `  ${f.path} (${formatBytes(f.size)})`).join("\n");
  throw new CattyError(
    "too_large",
    `The project has ${formatBytes(fresh)} to upload, more than this server's cap of ${formatBytes(cap)}. Largest files:\n${list}`,
    "Add large files or folders to .gitignore, or use --no-upload to start without uploading the project.",
  );
}

export async function uploadDirectory(
  client: Pick<ApiClient, "startUpload" | "commitUpload" | "resolveUrl" | "limits">,
  root: string,
  opts: { includeGit: boolean; report?: Reporter },
): Promise<UploadSummary> {
  const report = opts.report ?? silentReporter;
  const { maxUploadBytes } = await client.limits();
  const start = await client.startUpload();
  const vault = httpVault(client.resolveUrl(start.url));
  const uploader = new BlobUploader(vault);
  const exclude = createExcluder(root, "upload", opts.includeGit);
  const step = report.step("Uploading");
  try {
    await checkCap(vault, root, exclude, maxUploadBytes, step);
    const builder = new SnapshotBuilder({
      root,
      exclude,
      onProgress: (s) => step.update(s.bytes, `${s.files.toLocaleString("en-US")} files`),
    });
    const built = await builder.build(uploader, null).catch((err: unknown) => {
      throw err instanceof Error && !(err instanceof CattyError) ? new CattyError("bad_request", err.message) : err;
    });
    await uploader.flush().catch((err: unknown) => {
      throw err instanceof Error && !(err instanceof CattyError) ? new CattyError("unavailable", `The upload failed: ${err.message}`, "Run `catty new` again.") : err;
    });
    const result = await client.commitUpload(start.id, { root: built.root, files: built.files, size: built.bytes });
    const sent = uploader.added === 0 ? "nothing new to send" : `${formatBytes(uploader.added)} sent`;
    step.done(`Uploaded ${built.files.toLocaleString("en-US")} files, ${formatBytes(built.bytes)} (${sent})`);
    for (const s of built.skipped) report.warn(`Left out ${s.path}: ${s.reason}`);
    return { ...result, files: built.files, bytes: built.bytes, added: uploader.added };
  } catch (err) {
    step.fail();
    throw err;
  }
}
