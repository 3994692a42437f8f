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
import type { FileMemo } from "../lib/snapshot/build.ts";
import { isHash } from "../lib/snapshot/format.ts";

/** One file: size, mtime, ctime, inode, mode, chunk hashes. */
type Row = [number, number, number, number, number, string[]];

const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Checked by hand, not with a schema: the file holds a row for each of tens of thousands of files. */
function memoOf(row: unknown): FileMemo | null {
  if (!Array.isArray(row) || row.length !== 6) return null;
  const [size, mtimeMs, ctimeMs, ino, mode, chunks] = row as unknown[];
  if (!count(size) || typeof mtimeMs !== "number" || typeof ctimeMs !== "number" || !count(ino) || !count(mode)) return null;
  if (!Array.isArray(chunks) || chunks.length > 100_000 || !chunks.every(isHash)) return null;
  return { size, mtimeMs, ctimeMs, ino, mode, chunks: chunks as string[] };
}

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
  let parsed: { v?: unknown; server?: unknown; root?: unknown; files?: unknown };
  try {
    parsed = JSON.parse(readFileSync(fileOf(key), "utf8"));
  } catch {
    return out;
  }
  if (parsed?.v !== 1 || parsed.root !== key.root || parsed.server !== key.server) return out;
  if (typeof parsed.files !== "object" || parsed.files === null || Array.isArray(parsed.files)) return out;
  for (const [rel, row] of Object.entries(parsed.files)) {
    const memo = memoOf(row);
    // One bad row and the whole file is suspect: nothing is used.
    if (!memo) return new Map();
    out.set(rel, memo);
  }
  return out;
}

/** Remembers `memos` (written whole, then renamed into place). */
export function saveUploadCache(key: CacheKey, memos: ReadonlyMap<string, FileMemo>): void {
  const file = fileOf(key);
  mkdirSync(join(key.home, "cache", "uploads"), { recursive: true, mode: 0o700 });
  const files: Record<string, Row> = {};
  for (const [rel, m] of memos) files[rel] = [m.size, m.mtimeMs, m.ctimeMs, m.ino, m.mode, m.chunks];
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ v: 1, server: key.server, root: key.root, files }), { mode: 0o600 });
  renameSync(tmp, file);
}

export function dropUploadCache(key: CacheKey): void {
  rmSync(fileOf(key), { force: true });
}
