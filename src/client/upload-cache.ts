/**
 * What `catty new` remembers of a project between runs: each file's identity (size, mtime, ctime,
 * inode, mode) and chunk hashes from its last upload, so that starting another session from the
 * same directory reads and hashes only the files that changed. Kept per directory in
 * `$CATTY_HOME/cache/uploads/`, per server and directory (mode 0600); a file that does not parse is ignored (and replaced
 * after the next upload). It only ever saves work: the server checks that every chunk a commit
 * names is stored, and an upload it refuses is made again without the cache (see upload.ts).
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { FileMemo } from "../lib/snapshot/build.ts";
import { Hash } from "../lib/snapshot/format.ts";

const Row = z.tuple([z.number().int().min(0), z.number(), z.number(), z.number().int().min(0), z.number().int().min(0), z.array(Hash).max(100_000)]);
const CacheFile = z.object({ v: z.literal(1), server: z.string(), root: z.string(), files: z.record(z.string(), Row) });

/** Where the cache of one directory uploaded to one server is. */
export interface CacheKey {
  home: string;
  /** The server's URL. */
  server: string;
  root: string;
}

const fileOf = ({ home, server, root }: CacheKey): string =>
  join(home, "cache", "uploads", `${createHash("sha256").update(`${server}\0${root}`).digest("hex").slice(0, 32)}.json`);

/** The remembered files of the directory; empty when there is nothing usable. */
export function loadUploadCache(key: CacheKey): Map<string, FileMemo> {
  const out = new Map<string, FileMemo>();
  let parsed: z.infer<typeof CacheFile>;
  try {
    parsed = CacheFile.parse(JSON.parse(readFileSync(fileOf(key), "utf8")));
  } catch {
    return out;
  }
  if (parsed.root !== key.root || parsed.server !== key.server) return out;
  for (const [rel, [size, mtimeMs, ctimeMs, ino, mode, chunks]] of Object.entries(parsed.files)) {
    out.set(rel, { size, mtimeMs, ctimeMs, ino, mode, chunks });
  }
  return out;
}

/** Remembers `memos` (written whole, then renamed into place). */
export function saveUploadCache(key: CacheKey, memos: ReadonlyMap<string, FileMemo>): void {
  const file = fileOf(key);
  mkdirSync(join(key.home, "cache", "uploads"), { recursive: true, mode: 0o700 });
  const files: Record<string, z.infer<typeof Row>> = {};
  for (const [rel, m] of memos) files[rel] = [m.size, m.mtimeMs, m.ctimeMs, m.ino, m.mode, m.chunks];
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ v: 1, server: key.server, root: key.root, files }), { mode: 0o600 });
  renameSync(tmp, file);
}

export function dropUploadCache(key: CacheKey): void {
  rmSync(fileOf(key), { force: true });
}
