/**
 * Reading a tree that someone else may change while we read it: one directory at a time, through
 * descriptors, never through a symlink. This is how the agent touches a session's workspace
 * (docs/architecture.md §3): the program beside it runs with fewer rights and may swap any path for a symlink
 * at any moment (a parent directory too), so the agent never resolves a workspace path by name
 * from the host's root.
 *
 * `workspaceTree` opens the root once. Every directory below it is opened relative to its
 * parent's descriptor, one component at a time, with `O_DIRECTORY|O_NOFOLLOW`; every name the
 * kernel sees is `/proc/self/fd/<directory>/<one component>`, which the kernel resolves from the
 * opened directory itself (whatever was renamed meanwhile) and whose last component is never
 * followed (`lstat`, `O_NOFOLLOW`). A regular file is opened `O_NONBLOCK` (a FIFO put in its
 * place cannot hang the reader) and checked with `fstat`: the file listed (same device and
 * inode), a regular file, and one the program's own user could read (mode bits against its uid
 * and gid): a hard link the program made to a file it could not read itself is not read for it.
 *
 * `pathTree` is the same interface over plain paths, for trees whose only writer is the reader
 * itself (the CLI reading the user's project), or where the program runs with the agent's own
 * rights anyway (an unsandboxed session, or a system without `/proc`).
 *
 * A structure test (test/structure.test.ts) holds the agent to this module: a module the agent
 * reaches that opens paths by name must say why it is not a workspace reader.
 */
import {
  closeSync,
  constants as fsc,
  existsSync,
  fstatSync,
  lchownSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  watch,
  type FSWatcher,
  type Stats,
} from "node:fs";
import { TimeSlices } from "./time-slices.ts";

/** The user a tree's writer runs as: what the reader may read for it. */
export interface TreeUser {
  uid: number;
  gid: number;
}

/** One directory of a tree, opened. */
export interface TreeDir {
  /** Its path below the tree's root ("" for the root). */
  readonly rel: string;
  /** What this directory is now (`fstat`). */
  stat(): Stats;
  /** Its entries' names (unsorted). Throws when it cannot be listed. */
  names(): string[];
  /** What the entry `name` is (a symlink is reported, never followed); null when it is gone. */
  lstat(name: string): Stats | null;
  /** The target of the symlink `name`. Throws when it is not one. */
  readlink(name: string): string;
  /**
   * The regular file `name` opened for reading (a descriptor to close), and only that: not a
   * symlink put in its place, not a FIFO, not another file than `seen` described (device and
   * inode), not one the tree's user could not read. Null otherwise, or when it is gone.
   */
  openFile(name: string, seen?: Stats): number | null;
  /** The subdirectory `name`, opened (never through a symlink); null when it is not a directory now. */
  dir(name: string): TreeDir | null;
  /** Watches this very directory (inotify, wherever it is moved), not what its name leads to later. */
  watch(listener: (event: string, name: string | null) => void): FSWatcher;
  /** Gives the entry `name` (never what a symlink points to) to `owner`. */
  chown(name: string, owner: TreeUser): void;
  close(): void;
}

/** What `walk`'s visitor returns: false skips the entry (a directory's contents too). */
export type TreeVisit = (rel: string, st: Stats, parent: TreeDir) => boolean | void | Promise<boolean | void>;

/** A tree, by paths below its root. */
export interface Tree {
  readonly root: string;
  /** The directory `rel`, opened one component at a time; null when some part of it is not a directory. */
  dir(rel: string): TreeDir | null;
  /** `lstat` of `rel` (its parents resolved without following symlinks; "" is the root); null when it is not there. */
  lstat(rel: string): Stats | null;
  /** `TreeDir.openFile` for `rel`. */
  openFile(rel: string, seen?: Stats): number | null;
  /** The target of the symlink `rel`; null when it is not one. */
  readlink(rel: string): string | null;
  /**
   * Depth-first walk of `from` (default the root), parents before children, names sorted, every
   * entry lstat'ed and passed with the directory it is in (open while the visitor runs).
   * Directories that cannot be read and entries that vanish are passed over; `onError` hears
   * about them. In time slices that let the event loop run.
   */
  walk(visit: TreeVisit, onError?: (rel: string, err: unknown) => void, from?: string): Promise<void>;
  close(): void;
}

const READ_FILE = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;
const OPEN_DIR = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;

const joinRel = (rel: string, name: string): string => (rel === "" ? name : `${rel}/${name}`);

/** One path component: never empty, `.`, `..`, or with a slash or NUL in it. */
function checkName(name: string): void {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new Error(`not a single path component: ${JSON.stringify(name)}`);
  }
}

/** Whether `user` may read (`want` 4) or search (1) what `st` describes, by its mode bits. */
export function permits(st: Stats, user: TreeUser | undefined, want: number): boolean {
  if (!user) return true;
  const bits = st.uid === user.uid ? (st.mode >> 6) & 7 : st.gid === user.gid ? (st.mode >> 3) & 7 : st.mode & 7;
  return (bits & want) === want;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

/** Opens `path` for reading as the regular file `seen` described, readable by `user`; null otherwise. */
function openRegular(path: string, seen: Stats | undefined, user: TreeUser | undefined): number | null {
  let fd: number;
  try {
    fd = openSync(path, READ_FILE);
  } catch {
    return null;
  }
  const st = fstatSync(fd);
  if (st.isFile() && (!seen || (st.dev === seen.dev && st.ino === seen.ino)) && permits(st, user, 4)) return fd;
  closeSync(fd);
  return null;
}

/** What both kinds of directory do alike, given how a name in them is put to the kernel. */
abstract class NamedDir {
  protected constructor(
    readonly rel: string,
    /** A path the kernel resolves to this directory itself. */
    protected readonly self: string,
    private readonly user: TreeUser | undefined,
  ) {}

  protected at(name: string): string {
    checkName(name);
    return `${this.self}/${name}`;
  }

  names(): string[] {
    return readdirSync(this.self);
  }

  lstat(name: string): Stats | null {
    return lstatOrNull(this.at(name));
  }

  readlink(name: string): string {
    return readlinkSync(this.at(name));
  }

  openFile(name: string, seen?: Stats): number | null {
    return openRegular(this.at(name), seen, this.user);
  }

  watch(listener: (event: string, name: string | null) => void): FSWatcher {
    return watch(this.self, { persistent: true }, listener);
  }

  chown(name: string, owner: TreeUser): void {
    lchownSync(this.at(name), owner.uid, owner.gid);
  }
}

/**
 * A directory held open by its descriptor: every name below it is resolved from it, and a watch
 * on it stays on its inode (inotify resolves the descriptor's magic link), wherever it is moved.
 */
class FdDir extends NamedDir implements TreeDir {
  constructor(
    rel: string,
    private fd: number,
    private readonly treeUser: TreeUser | undefined,
    private readonly owned = true,
  ) {
    super(rel, `/proc/self/fd/${fd}`, treeUser);
  }

  stat(): Stats {
    return fstatSync(this.fd);
  }

  dir(name: string): TreeDir | null {
    let fd: number;
    try {
      fd = openSync(this.at(name), OPEN_DIR);
    } catch {
      return null;
    }
    if (!permits(fstatSync(fd), this.treeUser, 5)) {
      closeSync(fd);
      return null;
    }
    return new FdDir(joinRel(this.rel, name), fd, this.treeUser);
  }

  close(): void {
    if (!this.owned || this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }
}

/** A directory by its path: for trees nobody else writes while we read. */
class PathDir extends NamedDir implements TreeDir {
  constructor(rel: string, path: string) {
    super(rel, path, undefined);
  }

  stat(): Stats {
    return lstatSync(this.self);
  }

  dir(name: string): TreeDir | null {
    return this.lstat(name)?.isDirectory() ? new PathDir(joinRel(this.rel, name), this.at(name)) : null;
  }

  close(): void {}
}

const parentOf = (rel: string): string => (rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
const nameOf = (rel: string): string => rel.slice(rel.lastIndexOf("/") + 1);

class OpenTree implements Tree {
  /** `top`: the root, which `close` on it leaves open; `release` closes it. */
  constructor(
    readonly root: string,
    private readonly top: TreeDir,
    private readonly release: () => void = () => {},
  ) {}

  dir(rel: string): TreeDir | null {
    if (rel === "") return this.top;
    let at: TreeDir | null = this.top;
    for (const part of rel.split("/")) {
      const next: TreeDir | null = at.dir(part);
      if (at !== this.top) at.close();
      if (!next) return null;
      at = next;
    }
    return at;
  }

  /** Runs `use` on `rel`'s parent directory and its last name. */
  private inParent<T>(rel: string, use: (dir: TreeDir, name: string) => T, none: T): T {
    const dir = this.dir(parentOf(rel));
    if (!dir) return none;
    try {
      return use(dir, nameOf(rel));
    } finally {
      dir.close();
    }
  }

  lstat(rel: string): Stats | null {
    if (rel === "") return this.top.stat();
    return this.inParent(rel, (d, name) => d.lstat(name), null);
  }

  openFile(rel: string, seen?: Stats): number | null {
    return this.inParent(rel, (d, name) => d.openFile(name, seen), null);
  }

  readlink(rel: string): string | null {
    return this.inParent(
      rel,
      (d, name) => {
        try {
          return d.readlink(name);
        } catch {
          return null;
        }
      },
      null,
    );
  }

  async walk(visit: TreeVisit, onError?: (rel: string, err: unknown) => void, from = ""): Promise<void> {
    const slices = new TimeSlices();
    const walkDir = async (dir: TreeDir): Promise<void> => {
      let names: string[];
      try {
        names = dir.names().sort();
      } catch (err) {
        onError?.(dir.rel, err);
        return;
      }
      for (const name of names) {
        const rel = joinRel(dir.rel, name);
        const st = dir.lstat(name);
        if (!st) {
          onError?.(rel, new Error("it is gone"));
          continue;
        }
        const visited = visit(rel, st, dir);
        if ((visited instanceof Promise ? await visited : visited) === false) continue;
        if (slices.due) await slices.next();
        if (!st.isDirectory()) continue;
        const sub = dir.dir(name);
        if (!sub) {
          onError?.(rel, new Error("it is no longer a directory"));
          continue;
        }
        try {
          await walkDir(sub);
        } finally {
          sub.close();
        }
      }
    };
    const start = this.dir(from);
    if (!start) {
      onError?.(from, new Error("it is not a directory"));
      return;
    }
    try {
      await walkDir(start);
    } finally {
      if (start !== this.top) start.close();
    }
  }

  close(): void {
    this.release();
  }
}

/** A tree by plain paths: for a tree whose only writer is the reader itself. */
export function pathTree(root: string): Tree {
  const base = root.length > 1 ? root.replace(/\/+$/, "") : root;
  return new OpenTree(root, new PathDir("", base));
}

/** Whether descriptors can be named through `/proc/self/fd` here (Linux with /proc mounted). */
const procFds = (): boolean => process.platform === "linux" && existsSync("/proc/self/fd");

/**
 * The workspace as the agent reads it: the root opened once (it must be a real directory, not a
 * symlink), everything below it through descriptors. `user`: the program's uid and gid when it
 * runs as another user than the agent; a file it could not read is not read for it. Without
 * `/proc` (not Linux), the program runs with the agent's own rights and paths are used.
 */
export function workspaceTree(root: string, user?: TreeUser): Tree {
  if (!procFds()) return pathTree(root);
  const fd = openSync(root, OPEN_DIR);
  let open = true;
  const release = (): void => {
    if (open) closeSync(fd);
    open = false;
  };
  return new OpenTree(root, new FdDir("", fd, user, false), release);
}

/** `workspaceTree`'s user from the provider's `uid:gid` (CATTY_AGENT_OWNER), if any. */
export function treeUser(owner: string | undefined): TreeUser | undefined {
  if (!owner) return undefined;
  const [uid, gid] = owner.split(":").map(Number);
  if (uid === undefined || gid === undefined || !Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  return { uid, gid };
}

/**
 * The workspace tree for the agent, opened when `open` is called: the restore puts a new directory
 * in the workspace's place (extracted beside it, then renamed over it), so the root is opened only
 * once the restore is done — a descriptor taken before would hold the empty directory it replaced.
 * Used before `open`, it throws.
 */
export class WorkspaceRoot implements Tree {
  private tree: Tree | null = null;

  constructor(
    readonly root: string,
    private readonly user?: TreeUser,
  ) {}

  /** Opens (again) whatever directory is at the root now. */
  open(): void {
    this.tree?.close();
    this.tree = workspaceTree(this.root, this.user);
  }

  private get opened(): Tree {
    if (!this.tree) throw new Error("the workspace is not in place yet");
    return this.tree;
  }

  dir(rel: string): TreeDir | null {
    return this.opened.dir(rel);
  }

  lstat(rel: string): Stats | null {
    return this.opened.lstat(rel);
  }

  openFile(rel: string, seen?: Stats): number | null {
    return this.opened.openFile(rel, seen);
  }

  readlink(rel: string): string | null {
    return this.opened.readlink(rel);
  }

  walk(visit: TreeVisit, onError?: (rel: string, err: unknown) => void, from?: string): Promise<void> {
    return this.opened.walk(visit, onError, from);
  }

  close(): void {
    this.tree?.close();
    this.tree = null;
  }
}
