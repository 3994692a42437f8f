/**
 * A real PostgreSQL for tests: Debian's server binaries (`/usr/lib/postgresql/<version>/bin`, or
 * on PATH), a private cluster made by `initdb` in a temp directory (as the `postgres` user when the
 * tests run as root: PostgreSQL refuses to run as root), listening on a free loopback port and on a
 * socket in that directory only, with trust authentication for the cluster's own user. One cluster
 * per test process, started on first use and stopped after the last test (the test preload calls
 * `stopPostgres`; other users, such as a bench, stop it on exit); each caller gets a database of
 * its own (`freshDatabase`).
 */
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { freePort } from "./ports.ts";
import { waitFor } from "./wait.ts";

/** The directory holding `initdb` and `postgres`, newest version first; null when not installed. */
export function postgresBin(): string | null {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, "bin", "postgres"))) return join(root, v, "bin");
  const onPath = Bun.which("postgres");
  return onPath ? join(onPath, "..") : null;
}

interface Cluster {
  /** The admin URL (database `postgres`). */
  url: string;
  /** Shuts the server down, waits for it to exit, and removes its files. */
  stop(): Promise<void>;
}

let cluster: Promise<Cluster> | null = null;

/** The owner of the cluster's files and processes: `postgres` under root, else whoever runs the tests. */
function clusterUser(): { uid: number; gid: number; name: string } | null {
  if (process.getuid?.() !== 0) return null;
  const line = Bun.spawnSync(["getent", "passwd", "postgres"]).stdout.toString().trim();
  const [, , uid, gid] = line.split(":");
  if (!uid || !gid) throw new Error("The tests run as root but there is no postgres user to run PostgreSQL as (apt-get install postgresql makes one).");
  return { uid: Number(uid), gid: Number(gid), name: "postgres" };
}

async function startCluster(): Promise<Cluster> {
  const bin = postgresBin();
  if (!bin) throw new Error("PostgreSQL is not installed (npm test installs it with apt-get: package postgresql).");
  const user = clusterUser();
  const dir = mkdtempSync(join(tmpdir(), "catty-postgres-"));
  const data = join(dir, "data");
  if (user) chownSync(dir, user.uid, user.gid);
  const as = (argv: string[]): string[] => (user ? ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", ...argv] : argv);
  const init = Bun.spawnSync(as([join(bin, "initdb"), "-D", data, "-U", "catty", "--auth=trust", "-E", "UTF8", "--no-sync"]), {
    cwd: dir,
    env: { ...process.env, LC_ALL: "C" },
  });
  if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr.toString()}`);
  const port = freePort();
  const proc = Bun.spawn(
    as([join(bin, "postgres"), "-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=600"]),
    { cwd: dir, stdout: "ignore", stderr: "pipe", env: { ...process.env, LC_ALL: "C" } },
  );
  let log = "";
  void (async () => {
    for await (const chunk of proc.stderr) log = (log + new TextDecoder().decode(chunk)).slice(-4000);
  })();
  const url = `postgres://catty@127.0.0.1:${port}/postgres`;
  // A process exiting cannot wait: it signals and goes (`bun test` runs no exit handlers, hence stopPostgres).
  const onExit = (): void => void proc.kill("SIGKILL");
  process.once("exit", onExit);
  const stop = async (): Promise<void> => {
    process.off("exit", onExit);
    proc.kill("SIGINT"); // fast shutdown
    const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
    if (!exited) proc.kill("SIGKILL");
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`postgres exited (${proc.exitCode}): ${log}`);
        const sql = new SQL(url, { max: 1, connectionTimeout: 2 });
        try {
          await sql`SELECT 1`;
          return true;
        } catch {
          return false;
        } finally {
          await sql.close();
        }
      },
      { timeoutMs: 30_000, what: "PostgreSQL to accept connections" },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, stop };
}

/** Stops this process's cluster, if it started one, and removes its files. */
export async function stopPostgres(): Promise<void> {
  const started = cluster;
  cluster = null;
  await (await started?.catch(() => null))?.stop();
}

let databases = 0;

/** A new, empty database in the test process's cluster; its URL. */
export async function freshDatabase(): Promise<string> {
  const c = await (cluster ??= startCluster());
  const name = `catty_${process.pid}_${++databases}`;
  const admin = new SQL(c.url, { max: 1 });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.close();
  }
  return c.url.replace(/\/postgres$/, `/${name}`);
}
