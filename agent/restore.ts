/**
 * Restoring the initial workspace: the archive the server names in `welcome` (a save streamed as
 * tar, or an archive upload) is extracted into the (empty) workspace by the safe extractor as it
 * arrives; the extractor refuses hostile entries and writes nothing unless the whole archive
 * passed, so a download cut short leaves nothing either. An archive of known size is downloaded
 * to a private temp file first and its size checked.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { extractArchive, type ExtractOptions, type ExtractStats } from "../src/lib/archive.ts";
import { errorMessageOf } from "../src/protocol/errors.ts";

export interface RestoreSource {
  /** Where to GET the archive; relative to the server's URL. */
  url: string;
  /** The archive's size, when the server knows it. */
  size: number | null;
}

export interface RestoreOptions {
  serverUrl: string;
  workspace: string;
  /** A private directory for the downloaded archive (never inside the workspace). */
  stateDir: string;
  /** "uid:gid" to give the restored tree to, as it is written. */
  owner?: string;
}

/** Downloads and extracts the archive; throws with what went wrong. */
export async function restoreWorkspace(source: RestoreSource, opts: RestoreOptions): Promise<ExtractStats> {
  const file = join(opts.stateDir, "restore.tar.gz");
  try {
    const res = await fetch(new URL(source.url, `${opts.serverUrl}/`));
    if (!res.ok || !res.body) throw new Error(`download failed: ${res.status} ${(await errorMessageOf(res)) ?? res.statusText}`);
    const [uid, gid] = opts.owner?.split(":").map(Number) ?? [];
    const options: ExtractOptions = { into: "empty", ...(uid !== undefined && gid !== undefined ? { owner: { uid, gid } } : {}) };
    // A save streamed from the vault: its files are recorded with their chunks (from the manifest
    // after the archive), so the first save need not read them back (`WorkspaceSaver.seedRestored`).
    if (source.size === null) return await extractArchive(res.body, opts.workspace, { ...options, record: "manifest" });
    const got = await Bun.write(file, res);
    if (source.size !== null && got !== source.size) {
      throw new Error(`download incomplete: got ${got} of ${source.size} bytes`);
    }
    return await extractArchive(file, opts.workspace, options);
  } finally {
    await rm(file, { force: true });
  }
}
