/**
 * The server's data directory: the database, keys, tokens, blobs and session directories. Only
 * the user running the server may read any of it: the directory is 0700 and the server's own
 * files 0600, also when the directory already existed with looser modes (`prepareDataDir`).
 * Session workspaces keep their programs' file modes; the 0700 directories above them guard them.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Creates the data dir if needed and tightens what is there: the directory, every file directly
 * in it (database, WAL, keys, tokens, pid file), the blob tree, and each session directory's own
 * files (agent log and pid). Symlinks are left alone.
 */
export function prepareDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  tighten(dir, { recurse: false });
  tighten(join(dir, "blobs"), { recurse: true });
  const sessions = join(dir, "sessions");
  for (const label of entries(sessions)) {
    const sessionDir = join(sessions, label);
    if (isDir(sessionDir)) tighten(sessionDir, { recurse: false });
  }
  if (isDir(sessions)) chmodSync(sessions, 0o700);
}

/** Makes `dir` 0700 and its files 0600; subdirectories too when `recurse`. */
function tighten(dir: string, opts: { recurse: boolean }): void {
  if (!isDir(dir)) return;
  chmodSync(dir, 0o700);
  for (const name of entries(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isFile()) chmodSync(path, 0o600);
    else if (st.isDirectory() && opts.recurse) tighten(path, opts);
  }
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isDir(path: string): boolean {
  return lstatSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/**
 * A key kept in `<dataDir>/<name>` (mode 0600), created on first use: 32 random bytes as 64
 * lowercase hex characters, no newline. Created under a temporary name and linked into place, so
 * concurrent first starts agree on one key and a crash never leaves an empty one. Returns the key
 * as stored (trimmed, so files written with a newline read the same).
 */
export function loadOrCreateKey(dataDir: string, name: string): string {
  const path = join(dataDir, name);
  const read = (): string | null => {
    try {
      return readFileSync(path, "utf8").trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  };
  const existing = read();
  if (existing !== null) return checkKey(existing, path);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.~${randomBytes(6).toString("hex")}`;
  writeFileSync(tmp, randomBytes(32).toString("hex"), { mode: 0o600, flag: "wx" });
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  } finally {
    unlinkSync(tmp);
  }
  return checkKey(read() ?? "", path);
}

function checkKey(key: string, path: string): string {
  if (key.length < 32) throw new Error(`The key in ${path} is too short. Delete the file to create a new one.`);
  return key;
}
