/**
 * Which paths of a project tree are left out of an archive. The packer (`archive.ts`) asks for
 * every entry it walks; the workspace watcher asks the same question for every change it sees,
 * so both agree on what belongs to the project.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import ignore, { type Ignore } from "ignore";

/**
 * `upload`: what the user sends from their machine — honours every `.gitignore` (and
 * `.git/info/exclude`) plus a fixed list of things that never belong in an upload.
 * `snapshot`: a periodic save of the remote workspace — keeps everything except caches and
 * dependency folders that can be rebuilt.
 */
export type PackMode = "upload" | "snapshot";

/** `(relPath, isDir) => true` when the path is left out. `relPath` is relative to the root, `/`-separated. */
export type Excluder = (relPath: string, isDir: boolean) => boolean;

/** Always left out of an upload, whatever `.gitignore` says (a `!pattern` cannot bring them back). */
export const UPLOAD_EXCLUDES: readonly string[] = [
  "node_modules/",
  "__pycache__/",
  "*.pyc",
  ".venv/",
  "venv/",
  ".env",
  ".DS_Store",
  "*.log",
];

/** Left out of a workspace snapshot, at any depth. */
export const SNAPSHOT_EXCLUDES: readonly string[] = [
  "node_modules/",
  "__pycache__/",
  ".venv/",
  "venv/",
  ".cache/",
  ".npm/",
  ".yarn/",
];

// Git matches case-insensitively where the file system usually does (core.ignorecase).
const GIT_IGNORE_CASE = process.platform === "darwin" || process.platform === "win32";

/**
 * Builds the exclusion test for a tree. Nested `.gitignore` files are read lazily, the first time
 * a path below their directory is asked about, and cached: build a new excluder when a
 * `.gitignore` changes. Nothing inside a `.git` directory is ever excluded (its contents are
 * git's, not the user's), and `.git` itself is excluded only when `includeGit` is false.
 */
export function createExcluder(root: string, mode: PackMode, includeGit = true): Excluder {
  const fixed = ignore({ ignorecase: false }).add(mode === "upload" ? UPLOAD_EXCLUDES : SNAPSHOT_EXCLUDES);
  const git = mode === "upload" ? gitignoreRules(root) : undefined;

  const outsideGit = (rel: string, isDir: boolean): boolean => {
    const probe = isDir ? `${rel}/` : rel;
    if (fixed.ignores(probe)) return true;
    return git ? git.ignores(probe) : false;
  };

  return (relPath, isDir) => {
    const rel = trimSlashes(relPath);
    if (rel === "" || rel === ".") return false;
    const parts = rel.split("/");
    const gitAt = parts.indexOf(".git");
    if (gitAt < 0) return outsideGit(rel, isDir);
    if (gitAt > 0 && outsideGit(parts.slice(0, gitAt).join("/"), true)) return true;
    return !includeGit;
  };
}

/** Every `.gitignore` in the tree as one rule set, each file's patterns re-rooted at its directory. */
function gitignoreRules(root: string): { ignores(path: string): boolean } {
  const ig: Ignore = ignore({ ignorecase: GIT_IGNORE_CASE });
  const loaded = new Set<string>();

  // Lower precedence than any .gitignore, so it goes in first (the last matching rule wins).
  ig.add(readLines(join(root, ".git", "info", "exclude")));

  // Directories are loaded parent before child, so a deeper file's rules come later and win,
  // as in git. Sibling directories' rules never match each other's paths, so their order is moot.
  const load = (dir: string): void => {
    if (loaded.has(dir)) return;
    loaded.add(dir);
    const lines = readLines(join(root, dir, ".gitignore"));
    if (lines.length > 0) ig.add(lines.map((line) => rebase(line, dir)));
  };

  /** Directories whose own and every parent's `.gitignore` are loaded (a walk asks about each entry of one in turn). */
  const chains = new Set<string>();
  return {
    ignores(path) {
      const end = path.endsWith("/") ? path.length - 1 : path.length;
      const parent = path.slice(0, Math.max(0, path.lastIndexOf("/", end - 1)));
      if (!chains.has(parent)) {
        load("");
        let at = path.indexOf("/");
        while (at >= 0 && at < end) {
          load(path.slice(0, at));
          at = path.indexOf("/", at + 1);
        }
        chains.add(parent);
      }
      return ig.ignores(path);
    },
  };
}

function readLines(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text.split(/\r?\n/).filter((line) => line.trim() !== "" && !line.startsWith("#"));
}

/**
 * Rewrites a pattern from `dir/.gitignore` so it means the same thing relative to the root:
 * a pattern with a slash (other than a trailing one) is anchored to `dir`, one without matches
 * at any depth below `dir`.
 */
export function rebase(pattern: string, dir: string): string {
  if (dir === "") return pattern;
  const negated = pattern.startsWith("!");
  const body = negated ? pattern.slice(1) : pattern;
  const anchored = body.replace(/\/+$/, "").includes("/");
  const rebased = anchored ? `${dir}/${body.replace(/^\/+/, "")}` : `${dir}/**/${body}`;
  return negated ? `!${rebased}` : rebased;
}

function trimSlashes(path: string): string {
  let start = 0;
  let end = path.length;
  while (start < end && path.charCodeAt(start) === 47) start++;
  while (end > start && path.charCodeAt(end - 1) === 47) end--;
  return path.slice(start, end);
}
