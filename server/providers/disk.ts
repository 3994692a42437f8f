/**
 * A disk of its own for each local session (`CATTY_SESSION_DISK_BYTES`): an ext4 file system in
 * a sparse image file of that size (`<data dir>/disks/<label>.img`), mounted over the session's
 * directory before anything is made in it. The workspace, the program's home and the agent's files
 * of that session live there; a session that fills it gets ENOSPC, and the data dir's file system
 * (the database, the saves, other sessions) does not fill with it. The agent's restore extracts
 * beside the workspace and renames the tree into place (src/lib/archive.ts): both are inside the
 * session's directory, so on the same file system. 1% of the blocks are kept for root, so the
 * agent (root) still writes its state and log when the program has filled the rest.
 *
 * Needs root (mount) and mkfs.ext4; the loop device goes with the unmount (`autoclear`). Project
 * quotas would avoid the image, but few data dirs' file systems are mounted with them.
 */
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { agentAlive, safeReaddir } from "./network.ts";

export interface SessionDisks {
  readonly summary: string;
  /** Makes the session's disk and mounts it over `dir` (made if missing). */
  create(label: string, dir: string): void;
  /** Unmounts it and removes its image: its files are gone (saves keep them). */
  remove(label: string, dir: string): void;
}

const SBIN = `${process.env.PATH ?? ""}:/usr/sbin:/sbin`;

/** Throws, saying what to do, when this server cannot limit sessions' disks. */
export function createSessionDisks(opts: { dataDir: string; bytes: number }): SessionDisks {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "CATTY_SESSION_DISK_BYTES needs a server running as root for local sessions (each gets a file system of that size, mounted); run catty-server as root or unset it",
    );
  }
  const mkfs = Bun.which("mkfs.ext4", { PATH: SBIN });
  const mount = Bun.which("mount", { PATH: SBIN });
  const umount = Bun.which("umount", { PATH: SBIN });
  if (!mkfs || !mount || !umount) {
    throw new Error("CATTY_SESSION_DISK_BYTES needs mkfs.ext4 and mount: install them (apt-get install e2fsprogs mount) and restart catty-server");
  }
  if (opts.bytes < 16 * 1024 * 1024) throw new Error("CATTY_SESSION_DISK_BYTES must be at least 16 MiB (16777216) for a file system");
  const disks = join(opts.dataDir, "disks");
  const image = (label: string): string => join(disks, `${label}.img`);
  const mounted = (dir: string): boolean => readFileSync("/proc/self/mounts", "utf8").split("\n").some((l) => l.split(" ")[1] === dir.replace(/ /g, "\\040"));
  const run = (args: string[]): void => {
    const r = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`${args[0]} failed: ${r.stderr.toString().trim() || `exit ${r.exitCode}`}`);
  };
  const remove = (label: string, dir: string): void => {
    if (mounted(dir)) Bun.spawnSync([umount, "-l", dir], { stdout: "ignore", stderr: "ignore" });
    rmSync(image(label), { force: true });
  };
  // Images of sessions this server no longer runs (a crash, a kill): their agents are gone.
  for (const name of safeReaddir(disks)) {
    const label = name.replace(/\.img$/, "");
    const dir = join(opts.dataDir, "sessions", label);
    if (!agentAlive(join(dir, "agent.pid"))) remove(label, dir);
  }
  return {
    summary: `${opts.bytes} bytes each (an ext4 image)`,
    create(label, dir) {
      mkdirSync(disks, { recursive: true, mode: 0o700 });
      if (mounted(dir)) remove(label, dir);
      const img = image(label);
      const fd = openSync(img, "w", 0o600);
      try {
        ftruncateSync(fd, opts.bytes);
      } finally {
        closeSync(fd);
      }
      try {
        run([mkfs, "-q", "-F", "-m", "1", "-L", "catty-session", img]);
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`${dir} is not empty`);
        run([mount, "-o", "loop,nodev,nosuid", img, dir]);
        chmodSync(dir, 0o700);
      } catch (err) {
        remove(label, dir);
        throw new Error(`could not make the session's disk: ${(err as Error).message}`);
      }
    },
    remove,
  };
}
