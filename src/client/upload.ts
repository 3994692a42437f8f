/**
 * `catty new`'s upload: pack the current directory (gitignore-aware, default exclusions, the
 * server's size cap checked while packing, so nothing is sent when it is too large), then send it.
 * Progress and warnings go to the caller's `Reporter`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UploadResult } from "../protocol/index.ts";
import type { ApiClient } from "./api.ts";
import { formatBytes, packToFile } from "../lib/archive.ts";
import { silentReporter, type Reporter } from "./progress.ts";

export interface UploadSummary extends UploadResult {
  files: number;
  bytes: number;
}

/** Counts bytes as they are read, for the progress bar. */
function counted(stream: ReadableStream<Uint8Array>, onBytes: (n: number) => void): ReadableStream<Uint8Array> {
  let total = 0;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        total += chunk.length;
        onBytes(total);
        ctl.enqueue(chunk);
      },
    }),
  );
}

export async function uploadDirectory(client: ApiClient, root: string, opts: { includeGit: boolean; report?: Reporter }): Promise<UploadSummary> {
  const report = opts.report ?? silentReporter;
  const { maxUploadBytes } = await client.limits();
  const dir = mkdtempSync(join(tmpdir(), "catty-upload-"));
  const file = join(dir, "workspace.tar.gz");
  try {
    const packing = report.step("Packing");
    let stats;
    try {
      stats = await packToFile({
        root,
        mode: "upload",
        includeGit: opts.includeGit,
        maxCompressedBytes: maxUploadBytes,
        out: file,
        onProgress: (p) => packing.update(p.bytes, `${p.files.toLocaleString("en-US")} files`),
      });
    } catch (err) {
      packing.fail();
      throw err;
    }
    packing.done(`Packed ${stats.files.toLocaleString("en-US")} files (${formatBytes(stats.bytes)}) into ${formatBytes(stats.compressedBytes)}`);
    for (const s of stats.skipped) report.warn(`Left out ${s.path}: ${s.reason}`);
    const size = Bun.file(file).size;
    const sending = report.step("Uploading", size);
    try {
      const result = await client.upload(counted(Bun.file(file).stream(), (n) => sending.update(n)), size);
      sending.done(`Uploaded ${formatBytes(result.size)}`);
      return { ...result, files: stats.files, bytes: stats.bytes };
    } catch (err) {
      sending.fail();
      throw err;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
