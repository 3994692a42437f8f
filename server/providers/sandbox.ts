/**
 * The local provider's sandbox: how a session's program is kept away from everything but its own
 * workspace on the server's host. With bubblewrap, the program runs in new pid, ipc and uts
 * namespaces (and a user namespace when the server is not root), sees read-only `/usr` and `/etc`,
 * a private `/tmp`, its workspace at `/workspace` and its own `HOME`, and nothing else of the host:
 * not the server's data dir, other workspaces, the host user's files, or the agent (which stays
 * outside, holding the PTY master and its token). A server running as root drops the program to
 * an unprivileged host user of the session's own (`SANDBOX_UIDS`), so that no session can reach
 * another's files or processes even from outside its namespaces (`/proc/<pid>/root`, signals,
 * a shared owner), as Docker sessions have a uid each. Limits: memory, CPU and processes through cgroups when
 * the server may create them (as root). A server running as an ordinary user gets no limits:
 * `prlimit` cannot give them per session (RLIMIT_NPROC counts every process of the host user, and
 * RLIMIT_AS breaks runtimes that reserve large address spaces, Bun and Node among them).
 *
 * The provider builds the wrapper here; the agent prepends it to the program's command line
 * (`CATTY_AGENT_WRAP`) and hands the tree to the sandbox user (`CATTY_AGENT_OWNER`).
 */
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { seedClaudeConfig } from "../../src/lib/claude-config.ts";
import { shellQuote } from "../../src/lib/format.ts";
import { resolvConfTarget, type PreparedNetwork } from "./network.ts";

export type SandboxMode = "auto" | "bwrap" | "none";

export interface SessionLimits {
  /** Memory of the session's processes together, in bytes. */
  memoryBytes: number;
  /** CPUs the session may use (fractions allowed). */
  cpus: number;
  /** Processes (and threads) the session may have at once. */
  pids: number;
}

export interface Sandbox {
  readonly kind: "bwrap" | "none";
  /** What applies, for logs and the README (e.g. "cgroup v1: memory, cpu, pids"). */
  readonly limits: string;
  /**
   * The wrapper for one session and its owner (uid:gid, or null). `inUse`: the uids sessions of
   * this server that still run were given (a server restarted while they run holds none itself).
   */
  prepare(opts: { label: string; workspace: string; home: string; inUse?: () => Iterable<number>; network?: PreparedNetwork | null }): PreparedSandbox;
  /** Removes what `prepare` made for a session that has ended (its cgroups) and frees its uid. */
  release(label: string): void;
}

export interface PreparedSandbox {
  wrap: string[];
  owner: string | null;
}

/**
 * The host uids a root server runs sessions' programs as: `first + n`, each running session its
 * own (its gid the same number), the lowest free one first. Apart from the range Docker sessions
 * draw theirs from (200000–999999, server/providers/docker.ts), so a host that runs both never
 * gives two sessions one user; no account on the host has these ids.
 */
export const SANDBOX_UIDS = { first: 1_000_000, count: 1_000_000 } as const;

/**
 * Gives each session a uid of its own from a range: the lowest that no session of this server
 * holds and that `inUse` does not name. A session keeps its uid until `release`.
 */
export class UidPool {
  private readonly held = new Map<string, number>();

  constructor(private readonly range: { first: number; count: number } = SANDBOX_UIDS) {}

  take(label: string, inUse: Iterable<number> = []): number {
    const mine = this.held.get(label);
    if (mine !== undefined) return mine;
    const taken = new Set(inUse);
    for (const uid of this.held.values()) taken.add(uid);
    const end = this.range.first + this.range.count;
    for (let uid = this.range.first; uid < end; uid++) {
      if (taken.has(uid)) continue;
      this.held.set(label, uid);
      return uid;
    }
    throw new Error(`every sandbox uid (${this.range.first}–${end - 1}) is held by a running session; stop some sessions and try again`);
  }

  release(label: string): void {
    this.held.delete(label);
  }
}

/**
 * The uids in `range` that processes on this host run as (real, effective, saved or file-system
 * uid): a session whose agent is gone but whose program lingers keeps its uid.
 */
export function processUids(range: { first: number; count: number } = SANDBOX_UIDS, proc = "/proc"): Set<number> {
  const out = new Set<number>();
  let pids: string[] = [];
  try {
    pids = readdirSync(proc).filter((name) => /^\d+$/.test(name));
  } catch {
    return out;
  }
  for (const pid of pids) {
    let status: string;
    try {
      status = readFileSync(join(proc, pid, "status"), "utf8");
    } catch {
      continue; // gone meanwhile
    }
    const line = /^Uid:\s+(.*)$/m.exec(status)?.[1] ?? "";
    for (const uid of line.trim().split(/\s+/).map(Number)) {
      if (uid >= range.first && uid < range.first + range.count) out.add(uid);
    }
  }
  return out;
}

/** The program's HOME inside the sandbox. */
export const SANDBOX_HOME = "/home/catty";

/** Decides the sandbox: `auto` is bubblewrap when it is installed (Linux), else none. */
export function resolveSandbox(mode: SandboxMode, limits: SessionLimits, cgroupRoot = "/sys/fs/cgroup"): Sandbox {
  const bwrap = process.platform === "linux" ? Bun.which("bwrap") : null;
  if (mode === "none" || (mode === "auto" && !bwrap)) return noSandbox;
  if (!bwrap) {
    throw new Error("--sandbox bwrap was asked for, but bubblewrap is not installed: install it (apt-get install bubblewrap) or use --sandbox auto.");
  }
  const root = process.getuid?.() === 0;
  const setpriv = root ? Bun.which("setpriv") : null;
  if (root && !setpriv) throw new Error("catty-server runs as root, and the sandbox needs setpriv (util-linux) to drop the program's privileges.");
  const cgroups = root ? cgroupLayout(cgroupRoot) : null;
  const uids = new UidPool();
  return {
    kind: "bwrap",
    limits: cgroups ? `${cgroups.name}: memory, cpu, pids` : "none (cgroups need a server running as root)",
    prepare({ label, workspace, home, inUse, network }) {
      mkdirSync(home, { recursive: true, mode: 0o700 });
      // Claude Code in the sandbox opens at its prompt: onboarding done, /workspace trusted.
      const seeded = seedClaudeConfig(home, "/workspace");
      const uid = root ? uids.take(label, [...(inUse?.() ?? []), ...processUids()]) : null;
      if (uid !== null) {
        // The workspace's owner is also the record of the session's uid (`sessionUids` reads it).
        chownSync(workspace, uid, uid);
        chownSync(home, uid, uid);
        if (seeded) chownSync(join(home, ".claude.json"), uid, uid);
      }
      const procs = cgroups ? cgroups.create(label, limits) : [];
      // The session's own network (server/providers/network.ts): bubblewrap starts inside it.
      const netns = network ? [Bun.which("nsenter", { PATH: "/usr/bin:/bin:/usr/sbin:/sbin" }) ?? "nsenter", `--net=${network.netns}`, "--"] : [];
      const inside = [
        ...netns,
        bwrap,
        ...(root ? [] : ["--unshare-user"]),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "catty",
        "--die-with-parent",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--ro-bind", "/etc", "/etc",
        ...(network?.resolvConf ? ["--ro-bind", network.resolvConf, resolvConfTarget()] : []),
        "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
        "--bind", workspace, "/workspace",
        "--perms", "0755", "--dir", "/home",
        "--bind", home, SANDBOX_HOME,
        "--chdir", "/workspace",
        "--setenv", "HOME", SANDBOX_HOME, "--setenv", "USER", "catty", "--setenv", "LOGNAME", "catty",
        "--",
        ...(uid !== null ? [setpriv as string, `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--no-new-privs", "--"] : []),
      ];
      // A shell that moves itself into the session's cgroups before it becomes the sandbox, so no
      // process of the session ever runs outside them.
      const enter = procs.length > 0 ? ["/bin/sh", "-c", `for f in ${procs.map(shellQuote).join(" ")}; do echo $$ > "$f" || exit 126; done; exec "$@"`, "catty-sandbox"] : [];
      return { wrap: [...enter, ...inside], owner: uid !== null ? `${uid}:${uid}` : null };
    },
    release(label) {
      cgroups?.remove(label);
      uids.release(label);
    },
  };
}

const noSandbox: Sandbox = {
  kind: "none",
  limits: "none",
  prepare: () => ({ wrap: [], owner: null }),
  release() {},
};

interface CgroupLayout {
  name: string;
  /** Creates the session's cgroups with its limits; returns the `cgroup.procs` files to join. */
  create(label: string, limits: SessionLimits): string[];
  remove(label: string): void;
}

/** cgroup v2 (one tree) or v1 (a tree per controller), when this process may create groups. */
function cgroupLayout(root: string): CgroupLayout | null {
  const v2 = existsSync(join(root, "cgroup.controllers")) ? root : null;
  if (v2) {
    const base = join(v2, "catty");
    if (!tryMkdir(base)) return null;
    sweep(base);
    // Controllers must be enabled for the children of `base`.
    try {
      writeFileSync(join(v2, "cgroup.subtree_control"), "+memory +cpu +pids");
      writeFileSync(join(base, "cgroup.subtree_control"), "+memory +cpu +pids");
    } catch {
      return null;
    }
    return {
      name: "cgroup v2",
      create(label, limits) {
        const dir = join(base, label);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, "memory.max"), String(limits.memoryBytes));
        writeFileSync(join(dir, "pids.max"), String(limits.pids));
        writeFileSync(join(dir, "cpu.max"), `${Math.round(limits.cpus * 100_000)} 100000`);
        return [join(dir, "cgroup.procs")];
      },
      remove: (label) => tryRmdir(join(base, label)),
    };
  }
  const controllers = ["memory", "cpu", "pids"].map((c) => join(root, c));
  if (!controllers.every((c) => existsSync(c) && tryMkdir(join(c, "catty")))) return null;
  const [memory, cpu, pids] = controllers.map((c) => join(c, "catty")) as [string, string, string];
  for (const c of [memory, cpu, pids]) sweep(c);
  return {
    name: "cgroup v1",
    create(label, limits) {
      for (const c of [memory, cpu, pids]) mkdirSync(join(c, label), { recursive: true });
      writeFileSync(join(memory, label, "memory.limit_in_bytes"), String(limits.memoryBytes));
      writeFileSync(join(pids, label, "pids.max"), String(limits.pids));
      writeFileSync(join(cpu, label, "cpu.cfs_period_us"), "100000");
      writeFileSync(join(cpu, label, "cpu.cfs_quota_us"), String(Math.round(limits.cpus * 100_000)));
      return [memory, cpu, pids].map((c) => join(c, label, "cgroup.procs"));
    },
    remove(label) {
      for (const c of [memory, cpu, pids]) tryRmdir(join(c, label));
    },
  };
}

/**
 * Removes the groups of sessions that ended without this server seeing it (a crash, a kill):
 * the kernel refuses to remove one that still holds a process, so live sessions keep theirs.
 */
function sweep(base: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(base, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return;
  }
  for (const name of names) tryRmdir(join(base, name));
}

function tryMkdir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    return true;
  } catch {
    return false;
  }
}

function tryRmdir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // still in use, or gone
  }
}
