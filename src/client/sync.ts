/**
 * `catty sync`: bring a local directory up to date with a session's save. `planSync` compares an
 * extracted save with the local tree and changes nothing; `applySync` carries a plan out. Local
 * files that an upload leaves out (node_modules, .env, .gitignored files…) are never reported
 * as local-only and never deleted. Writes are atomic (temporary file beside the target, then
 * rename), and nothing is written through a symlink, outside the local directory or into `.git`
 * (in any letter case), whatever the save or the plan contains: the rules of `lib/safe-fs.ts`.
 * A symlink of the save is made as it is only when it leads somewhere inside the directory (your
 * editor and tools will write through it); one that leads outside is left alone and reported.
 */
import type { Stats } from "node:fs";
import { lstat, open, readlink, rmdir, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { printable } from "./terminal-text.ts";
import { CattyError } from "../protocol/errors.ts";
import { createExcluder, type Excluder } from "../lib/exclude.ts";
import {
  checkParents,
  checkRelPath,
  isGitName,
  linkLeavesTree,
  linksOnDisk,
  type LinkLookup,
  outsideLinkReason,
  type Parents,
  readFull,
  sameContent,
  symlinkAtomic,
  TempFile,
  walkTree,
} from "../lib/safe-fs.ts";

export interface SyncConflict {
  path: string;
  reason: string;
}

/** Relative, `/`-separated paths of files and symlinks, sorted. */
export interface SyncPlan {
  /** In the save, not here. */
  create: string[];
  /** Here and in the save, with different contents (or a file here, a symlink there). */
  change: string[];
  /** Here, not in the save (excluded paths are never listed). Deleted only with `delete`. */
  localOnly: string[];
  /** Files and symlinks that are the same here and in the save. */
  unchanged: number;
  /**
   * Paths of the save that are left alone: writing them would go through a local symlink or
   * replace a directory, or they are symlinks that lead outside this directory.
   */
  conflicts: SyncConflict[];
}

export interface PlanOptions {
  /** Which local paths are never local-only. Default: what an upload leaves out, `.git` included. */
  excluder?: Excluder;
  /** Absolute paths under `toDir` that are not looked at (e.g. the caller's own temporary files). */
  ignore?: string[];
}

export interface ApplyOptions {
  /** Delete the plan's `localOnly` files (and directories they leave empty that the save does not have). */
  delete: boolean;
}

export interface ApplyResult {
  created: number;
  changed: number;
  deleted: number;
  /** Paths not written or deleted because the local tree no longer allowed it safely. */
  skipped: SyncConflict[];
}

const COPY_CHUNK = 1 << 20;

/** Compares the save extracted at `fromDir` with the local tree at `toDir`. Changes nothing. */
export async function planSync(fromDir: string, toDir: string, opts: PlanOptions = {}): Promise<SyncPlan> {
  const plan: SyncPlan = { create: [], change: [], localOnly: [], unchanged: 0, conflicts: [] };
  const saved = new Map<string, Stats>();
  const savedDirs = new Set<string>([""]);
  // A repository's `.git` is never synced either way, in any spelling a file system folds to
  // `.git` (`isGitName`): overwriting local refs and index with the session's would lose local
  // work, and writing its config or hooks would run the session's code here. The session's
  // commits come with `catty download`.
  await walkTree(fromDir, (rel, st) => {
    const name = rel.slice(rel.lastIndexOf("/") + 1);
    if (isGitName(name)) {
      // The session's own repository (`.git`) is expected; another spelling of it is worth a word.
      if (name !== ".git") plan.conflicts.push({ path: rel, reason: "is .git on some file systems, which Catty never writes" });
      return false;
    }
    if (st.isDirectory()) savedDirs.add(rel);
    else if (st.isFile() || st.isSymbolicLink()) saved.set(rel, st);
    return true;
  });

  const parents = new Map<string, Stats | null>();
  for (const [rel, src] of [...saved].sort(([a], [b]) => compare(a, b))) {
    const blocked = await blockedParent(toDir, rel, parents);
    if (blocked) {
      plan.conflicts.push({ path: rel, reason: blocked });
      continue;
    }
    const here = await lstat(join(toDir, rel)).catch(() => null);
    if (!here) plan.create.push(rel);
    else if (here.isDirectory()) plan.conflicts.push({ path: rel, reason: "is a directory here" });
    else if (!here.isFile() && !here.isSymbolicLink()) plan.conflicts.push({ path: rel, reason: "is a special file here" });
    else if (await same(join(fromDir, rel), src, join(toDir, rel), here)) plan.unchanged++;
    else plan.change.push(rel);
  }

  const exclude = opts.excluder ?? createExcluder(toDir, "upload", true);
  const ignored = new Set((opts.ignore ?? []).map((p) => resolve(p)));
  const present = new Map<string, string>();
  const here = linksOnDisk(toDir);
  await walkTree(toDir, (rel, st) => {
    if (ignored.has(resolve(toDir, rel))) return false;
    if (isGitName(rel.slice(rel.lastIndexOf("/") + 1)) || exclude(rel, st.isDirectory())) return false;
    if ((st.isFile() || st.isSymbolicLink()) && !saved.has(rel)) plan.localOnly.push(rel);
    const target = st.isSymbolicLink() ? here(rel) : null;
    if (typeof target === "string") present.set(rel, target);
    return true;
  });
  plan.localOnly.sort(compare);

  // With or without --delete (which removes local-only links), no link may lead outside.
  const left = linksLeft(plan, fromDir, toDir, [false, true], present);
  for (const list of [plan.create, plan.change]) {
    for (const rel of list) {
      const reason = left.get(rel);
      if (reason) plan.conflicts.push({ path: rel, reason: `is ${reason}` });
    }
    list.splice(0, list.length, ...list.filter((rel) => !left.has(rel)));
  }
  return plan;
}

/**
 * Carries out `plan`: writes `create` and `change` from `fromDir` into `toDir`, and with
 * `delete` removes `localOnly`. Every path is checked again here (it must be relative, stay
 * inside `toDir`, and have only real directories above it), so a plan from anywhere is safe.
 * An existing file keeps its mode; a new one gets the saved mode without setuid, setgid,
 * sticky, group-write or other-write bits.
 */
export async function applySync(plan: SyncPlan, fromDir: string, toDir: string, opts: ApplyOptions): Promise<ApplyResult> {
  for (const rel of [...plan.create, ...plan.change, ...(opts.delete ? plan.localOnly : [])]) checkRel(rel);
  const result: ApplyResult = { created: 0, changed: 0, deleted: 0, skipped: [] };
  const left = linksLeft(plan, fromDir, toDir, [opts.delete], await presentLinks(plan, fromDir, toDir));
  const write = async (rel: string): Promise<boolean> => {
    const problem = await prepareParents(toDir, rel);
    if (problem) {
      result.skipped.push({ path: rel, reason: problem });
      return false;
    }
    const src = join(fromDir, rel);
    const srcStat = await lstat(src);
    const dest = join(toDir, rel);
    const here = await lstat(dest).catch(() => null);
    if (here && !here.isFile() && !here.isSymbolicLink()) {
      result.skipped.push({ path: rel, reason: here.isDirectory() ? "is a directory here" : "is a special file here" });
      return false;
    }
    if (srcStat.isSymbolicLink()) {
      const reason = left.get(rel);
      if (reason) {
        result.skipped.push({ path: rel, reason: `is ${reason}` });
        return false;
      }
      await symlinkAtomic(dest, await readlink(src));
    } else if (srcStat.isFile()) {
      await replaceWithFile(dest, src, here?.isFile() ? here.mode & 0o7777 : srcStat.mode & 0o755);
    } else {
      throw new CattyError("internal", `${src} is neither a file nor a symlink.`);
    }
    return true;
  };

  for (const rel of plan.create) if (await write(rel)) result.created++;
  for (const rel of plan.change) if (await write(rel)) result.changed++;
  if (!opts.delete) return result;

  const emptied = new Set<string>();
  for (const rel of plan.localOnly) {
    const problem = await blockedParent(toDir, rel, new Map());
    if (problem) {
      result.skipped.push({ path: rel, reason: problem });
      continue;
    }
    const here = await lstat(join(toDir, rel)).catch(() => null);
    if (!here) continue;
    if (!here.isFile() && !here.isSymbolicLink()) {
      result.skipped.push({ path: rel, reason: "is no longer a file here" });
      continue;
    }
    await unlink(join(toDir, rel));
    result.deleted++;
    if (rel.includes("/")) emptied.add(rel.slice(0, rel.lastIndexOf("/")));
  }
  await pruneEmptyDirs(emptied, fromDir, toDir);
  return result;
}

/**
 * Why `rel` cannot be written under `root` (a parent is a symlink or not a directory), or
 * undefined when every parent is a real directory or missing. `cache` keeps lstat results by
 * parent path across calls of one plan.
 */
async function blockedParent(root: string, rel: string, cache: Map<string, Stats | null>): Promise<string | undefined> {
  return parentProblem(await checkParents(root, rel, { cache }));
}

/** Checks each parent of `rel` with lstat and creates the missing ones. Returns why it cannot, if so. */
async function prepareParents(root: string, rel: string): Promise<string | undefined> {
  return parentProblem(await checkParents(root, rel, { create: true }));
}

function parentProblem(parents: Parents): string | undefined {
  switch (parents.kind) {
    case "ok":
    case "missing": // it and everything below it will be created
      return undefined;
    case "symlink":
      return `is inside ${parents.parent}, which is a symlink here`;
    case "not-dir":
      return `is inside ${parents.parent}, which is a file here`;
  }
}

/** A plan path must be a plain relative path outside `.git`, so `join(toDir, rel)` stays inside and away from git. */
function checkRel(rel: string): void {
  const problem = checkRelPath(rel);
  if (problem) throw new CattyError("bad_request", `Refusing to sync the path ${JSON.stringify(rel)}: it is ${problem}.`);
}

async function same(a: string, aStat: Stats, b: string, bStat: Stats): Promise<boolean> {
  if (aStat.isSymbolicLink() || bStat.isSymbolicLink()) {
    return aStat.isSymbolicLink() && bStat.isSymbolicLink() && (await readlink(a)) === (await readlink(b));
  }
  return aStat.size === bStat.size && sameContent(a, b);
}

/** Copies `src` to a new temporary file beside `dest`, sets `mode`, and renames it over `dest`. */
async function replaceWithFile(dest: string, src: string, mode: number): Promise<void> {
  const out = TempFile.beside(dest);
  try {
    const input = await open(src, "r");
    try {
      const buf = Buffer.allocUnsafe(COPY_CHUNK);
      for (;;) {
        const n = await readFull(input, buf);
        out.write(buf.subarray(0, n));
        if (n < COPY_CHUNK) break;
      }
    } finally {
      await input.close();
    }
    await out.commit(dest, mode);
  } finally {
    await out.discard();
  }
}

/**
 * The symlinks `plan` would write that must not be made, each with why: one that leads outside
 * `toDir` in the tree as the plan leaves it (with and without the local-only files: `deletes`),
 * or one that would make a link already there (`present`, path to target) lead outside. Links
 * are resolved through each other, as the kernel would (`linkLeavesTree`).
 */
function linksLeft(plan: SyncPlan, fromDir: string, toDir: string, deletes: readonly boolean[], present: ReadonlyMap<string, string>): Map<string, string> {
  const saved = linksOnDisk(fromDir);
  const here = linksOnDisk(toDir);
  const writes = new Map<string, string>();
  for (const rel of [...plan.create, ...plan.change]) {
    const target = saved(rel);
    if (typeof target === "string") writes.set(rel, target);
  }
  const left = new Map<string, string>();
  if (writes.size === 0) return left;
  /** A link here, not rewritten nor deleted, that leads inside now and outside by `lookup`. */
  const comesOut = (lookup: LinkLookup, gone: ReadonlySet<string>): string | undefined => {
    for (const [path, target] of present) {
      if (writes.has(path) || gone.has(path)) continue;
      if (!linkLeavesTree(path, target, here) && linkLeavesTree(path, target, lookup)) return path;
    }
    return undefined;
  };
  const after = deletes.map((d) => linksAfter(plan, fromDir, toDir, d));
  for (const [rel, target] of writes) {
    if (after.some((links) => linkLeavesTree(rel, target, links))) {
      left.set(rel, outsideLinkReason(target));
      continue;
    }
    const via = comesOut((path) => (path === rel ? target : here(path)), new Set());
    if (via !== undefined) left.set(rel, outsideLinkReason(target, via));
  }
  // The links that are left could together do what none does alone: then none is made.
  const rest: SyncPlan = { ...plan, create: plan.create.filter((r) => !left.has(r)), change: plan.change.filter((r) => !left.has(r)) };
  for (const d of deletes) {
    const via = comesOut(linksAfter(rest, fromDir, toDir, d), new Set(d ? plan.localOnly : []));
    if (via === undefined) continue;
    for (const [rel, target] of writes) if (!left.has(rel)) left.set(rel, outsideLinkReason(target, via));
  }
  return left;
}

/**
 * The symlinks in `toDir` (where an upload looks: not in what it leaves out, nor in `.git`), when
 * `plan` writes any: what `linksLeft` must keep inside.
 */
async function presentLinks(plan: SyncPlan, fromDir: string, toDir: string): Promise<Map<string, string>> {
  const present = new Map<string, string>();
  const saved = linksOnDisk(fromDir);
  if (![...plan.create, ...plan.change].some((rel) => typeof saved(rel) === "string")) return present;
  const exclude = createExcluder(toDir, "upload", true);
  const here = linksOnDisk(toDir);
  await walkTree(toDir, (rel, st) => {
    if (isGitName(rel.slice(rel.lastIndexOf("/") + 1)) || exclude(rel, st.isDirectory())) return false;
    const target = st.isSymbolicLink() ? here(rel) : null;
    if (typeof target === "string") present.set(rel, target);
    return true;
  });
  return present;
}

/**
 * The symlinks of the local tree as `plan` leaves it: the save's where the plan writes, the local
 * ones elsewhere, but for the local-only ones when they are `deleted`.
 */
function linksAfter(plan: SyncPlan, fromDir: string, toDir: string, deleted: boolean): LinkLookup {
  const written = new Set([...plan.create, ...plan.change]);
  const gone = new Set(deleted ? plan.localOnly : []);
  const saved = linksOnDisk(fromDir);
  const here = linksOnDisk(toDir);
  return (path) => (written.has(path) ? saved(path) : gone.has(path) ? undefined : here(path));
}

/** Removes directories that deletes left empty and that the save does not have, deepest first. */
async function pruneEmptyDirs(dirs: Set<string>, fromDir: string, toDir: string): Promise<void> {
  const candidates = new Set<string>();
  for (let dir of dirs) {
    for (;;) {
      candidates.add(dir);
      const at = dir.lastIndexOf("/");
      if (at < 0) break;
      dir = dir.slice(0, at);
    }
  }
  const deepestFirst = [...candidates].sort((a, b) => b.split("/").length - a.split("/").length || compare(a, b));
  for (const dir of deepestFirst) {
    if (await lstat(join(fromDir, dir)).catch(() => null)) continue;
    if (await blockedParent(toDir, `${dir}/x`, new Map())) continue;
    const st = await lstat(join(toDir, dir)).catch(() => null);
    if (!st?.isDirectory()) continue;
    await rmdir(join(toDir, dir)).catch(() => {}); // not empty (excluded files, new files): keep it
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}


export interface PlanReport {
  /** What would happen (dry run) or what happened. */
  dryRun: boolean;
  delete: boolean;
  /** Paths listed per section at most (default all). */
  limit?: number;
}

/** The plan as lines for the terminal: one section per kind of change, each path on its own line. */
export function formatPlan(plan: SyncPlan, report: PlanReport): string[] {
  const lines: string[] = [];
  const limit = report.limit ?? Number.POSITIVE_INFINITY;
  const section = (title: string, mark: string, paths: string[]) => {
    if (paths.length === 0) return;
    lines.push(title);
    // The save's paths are the session's: printed without the control characters they may hold.
    for (const path of paths.slice(0, limit)) lines.push(`  ${mark} ${printable(path)}`);
    if (paths.length > limit) lines.push(`  … and ${paths.length - limit} more`);
  };
  const n = (count: number) => `${count} ${count === 1 ? "file" : "files"}`;
  const dry = report.dryRun;
  section(`${dry ? "Would create" : "Created"} (${n(plan.create.length)}):`, "+", plan.create);
  section(`${dry ? "Would change" : "Changed"} (${n(plan.change.length)}):`, "~", plan.change);
  const localTitle = report.delete
    ? `${dry ? "Would delete" : "Deleted"}, only here (${n(plan.localOnly.length)}):`
    : `Only here, kept (${n(plan.localOnly.length)}; --delete ${dry ? "would remove" : "removes"} them):`;
  section(localTitle, "-", plan.localOnly);
  section(
    `Left alone (${n(plan.conflicts.length)}):`,
    "!",
    plan.conflicts.map((c) => `${c.path} (${c.reason})`),
  );
  lines.push(`${n(plan.unchanged)} unchanged.`);
  return lines;
}

/** True when applying the plan would change nothing (local-only files count only with `delete`). */
export function isEmptyPlan(plan: SyncPlan, withDelete: boolean): boolean {
  return plan.create.length === 0 && plan.change.length === 0 && (!withDelete || plan.localOnly.length === 0);
}
