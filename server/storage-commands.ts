/**
 * `catty-server recover --from-storage` and `catty-server check [--read-data]`: the library
 * behind the two commands (`main.ts` only parses flags). Both print progress on stderr once they
 * have run a second, their result on stdout (plain JSON with `--json`), and resolve to the exit
 * code: 0 when everything was recovered or is whole, 1 when something was not or is damaged, 2
 * when they could not run at all.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Log } from "../src/lib/log.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { ServerConfig } from "./config.ts";
import { openBlobs, openStore } from "./startup.ts";
import type { Store } from "./store/types.ts";
import { checkVault } from "./vault/check.ts";
import { parseMasterKey } from "./vault/crypto.ts";
import { recoverFromStorage, type Progress } from "./vault/recover.ts";

export interface CommandOutput {
  out(line: string): void;
  err(line: string): void;
  now(): number;
}

const stdio: CommandOutput = { out: (l) => console.log(l), err: (l) => console.error(l), now: Date.now };

/** The master key the saves were made with; never a new one (a new key opens nothing). */
function masterKeyOf(config: ServerConfig): Buffer {
  const file = join(config.dataDir, "master-key");
  const text = config.masterKey ?? (existsSync(file) ? readFileSync(file, "utf8") : null);
  if (text === null) {
    throw new Error(`No master key: set CATTY_MASTER_KEY to the key the saves were made with, or put it in ${file}.`);
  }
  return parseMasterKey(text);
}

/** A progress reporter that writes at most once a second, and only once the work has run a second. */
function progressLine(io: CommandOutput, verb: string): (p: Progress) => void {
  const started = io.now();
  let last = started;
  return (p) => {
    const t = io.now();
    if (t - started < 1000 || t - last < 1000) return;
    last = t;
    io.err(`${verb} ${p.step}: ${p.done}/${p.total}`);
  };
}

/** Opens the database, the bucket and the master key and runs `work`; exit code 2 when it cannot run. */
async function withStorage(config: ServerConfig, log: Log, io: CommandOutput, work: (deps: { store: Store; blobs: BlobStore; master: Buffer }) => Promise<number>): Promise<number> {
  let master: Buffer;
  try {
    master = masterKeyOf(config);
  } catch (err) {
    io.err(`catty-server: ${(err as Error).message}`);
    return 2;
  }
  const store = await openStore(config, log);
  try {
    return await work({ store, blobs: openBlobs(config, log), master });
  } catch (err) {
    io.err(`catty-server: ${(err as Error).message}`);
    return 2;
  } finally {
    await store.close();
  }
}

export function runRecover(config: ServerConfig, log: Log, opts: { json: boolean }, io: CommandOutput = stdio): Promise<number> {
  return withStorage(config, log, io, async (deps) => {
    const report = await recoverFromStorage({ ...deps, onProgress: progressLine(io, "recovering") });
    if (opts.json) io.out(JSON.stringify(report));
    else {
      io.out(`Recovered ${report.users} users, ${report.sessions} sessions, ${report.saves} saves and ${report.blobs} blobs in ${report.packs} packs.`);
      for (const p of report.problems) io.out(`not recovered: ${p}`);
      io.out("Users have no tokens yet: create them with `catty-server token create --user NAME`.");
    }
    return report.problems.length === 0 ? 0 : 1;
  });
}

export function runCheck(config: ServerConfig, log: Log, opts: { json: boolean; readData: boolean }, io: CommandOutput = stdio): Promise<number> {
  return withStorage(config, log, io, async (deps) => {
    const report = await checkVault({ ...deps, readData: opts.readData, onProgress: progressLine(io, "checking") });
    if (opts.json) io.out(JSON.stringify(report));
    else {
      const damage = report.damaged.length + report.damagedPacks.length === 0 ? "no damage" : `${report.damaged.length} damaged saves, ${report.damagedPacks.length} damaged pack headers`;
      io.out(`Checked ${report.saves} saves and ${report.blobs} blobs${opts.readData ? " (every blob and pack header read)" : ""}: ${damage}.`);
      for (const d of report.damaged) io.out(`damaged: ${d.label} save ${d.save} (${d.createdAt}): ${d.problems.join("; ")}`);
      for (const p of report.damagedPacks) io.out(`damaged pack header: ${p.problem}`);
      if (report.undescribedPacks > 0) io.out(`${report.undescribedPacks} packs from before packs had headers: the periodic sweep describes them (until then recovery from storage skips them).`);
    }
    return report.damaged.length === 0 && report.damagedPacks.length === 0 ? 0 : 1;
  });
}
