/**
 * `catty-server check` and `catty-server recover --from-storage` as an operator runs them, on a
 * data dir (SQLite and disk storage): exit codes scripts can rely on (0 clean, 1 damage or
 * something not recovered, 2 could not run), `--json` on stdout, progress on stderr past a second.
 */
import { expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createDiskBlobStore, loadOrCreateSecret } from "../../server/blobs/disk.ts";
import { readServerConfig } from "../../server/config.ts";
import { createUserToken, openStore } from "../../server/startup.ts";
import { runCheck } from "../../server/storage-commands.ts";
import { silentLog } from "../../src/lib/log.ts";
import { tempDirs } from "../helpers/fs.ts";
import { downloads, MASTER, save, savesOver, sessionRow } from "./vault/layers.ts";

const tempDir = tempDirs("catty-storage-commands-");
const serverMain = join(import.meta.dir, "../../server/main.ts");

async function serverCommand(dataDir: string, ...args: string[]): Promise<{ out: string; err: string; code: number }> {
  const p = Bun.spawn([process.execPath, serverMain, ...args, "--data-dir", dataDir], { stdout: "pipe", stderr: "pipe", env: { ...process.env, CATTY_MASTER_KEY: undefined } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
}

/** A data dir as the server leaves it: its master key file, a database with two saves of alice's, and the disk store; the first save's pack. */
async function dataDirWithSaves() {
  const dataDir = tempDir();
  writeFileSync(join(dataDir, "master-key"), MASTER.toString("hex"), { mode: 0o600 });
  const store = await openStore({ dataDir });
  await createUserToken(store, "alice");
  const alice = (await store.userByName("alice"))!;
  const blobs = createDiskBlobStore({ dir: join(dataDir, "blobs"), secret: loadOrCreateSecret(dataDir) });
  let t = Date.now();
  const saves = savesOver(store, blobs, () => t);
  const row = sessionRow(alice.id, "brave-tiger-1234");
  await store.insertSession(row);
  await save(saves, row, "save-one1", { "a.txt": "alpha", "sub/b.txt": "beta" });
  const [firstPack] = await blobs.list(`vault/${alice.id}/`);
  t += 60_000;
  await save(saves, row, "save-two2", { "a.txt": "alpha", "c.txt": "gamma" });
  const before = await downloads(store, saves, alice.id);
  await store.close();
  return { dataDir, blobs, alice, before, firstPack: firstPack!.key };
}

test("the database deleted: recover --from-storage rebuilds it, check --read-data finds it whole, and every save downloads as before", async () => {
  const d = await dataDirWithSaves();
  expect(await serverCommand(d.dataDir, "check", "--json")).toMatchObject({ code: 0 });
  for (const f of ["catty.db", "catty.db-wal", "catty.db-shm"]) rmSync(join(d.dataDir, f), { force: true });
  const recovered = await serverCommand(d.dataDir, "recover", "--from-storage", "--json");
  expect(recovered.code).toBe(0);
  expect(JSON.parse(recovered.out)).toMatchObject({ users: 1, sessions: 1, saves: 2, problems: [] });
  const text = await serverCommand(d.dataDir, "check", "--read-data");
  expect(text).toMatchObject({ code: 0, out: expect.stringMatching(/Checked 2 saves .* no damage/) });
  const store = await openStore({ dataDir: d.dataDir });
  expect(await downloads(store, savesOver(store, d.blobs, Date.now), d.alice.id)).toEqual(d.before);
  await store.close();
  // Again into the same (now full) database: refused, exit code 2, and it says what to do.
  const again = await serverCommand(d.dataDir, "recover", "--from-storage");
  expect(again.code).toBe(2);
  expect(again.err).toMatch(/not empty.*new --data-dir/);
});

test("a damaged pack: check exits 1 and names the saves that need it, in text and in JSON; without a master key it cannot run (exit 2)", async () => {
  const d = await dataDirWithSaves();
  // The first save's pack: the second save shares a.txt's blob with it.
  const bytes = Buffer.from((await d.blobs.getBytes(d.firstPack))!);
  for (let i = 0; i < bytes.length; i += 5) bytes[i]! ^= 1;
  await d.blobs.put(d.firstPack, bytes);
  const json = await serverCommand(d.dataDir, "check", "--read-data", "--json");
  expect(json.code).toBe(1);
  const report = JSON.parse(json.out) as { damaged: Array<{ label: string; save: string }> };
  expect(report.damaged.map((x) => `${x.label}/${x.save}`).sort()).toEqual(["brave-tiger-1234/save-one1", "brave-tiger-1234/save-two2"]);
  const text = await serverCommand(d.dataDir, "check", "--read-data");
  expect(text.code).toBe(1);
  expect(text.out).toMatch(/damaged: brave-tiger-1234 save save-one1/);
  rmSync(join(d.dataDir, "master-key"));
  const keyless = await serverCommand(d.dataDir, "check");
  expect(keyless.code).toBe(2);
  expect(keyless.err).toMatch(/No master key: set CATTY_MASTER_KEY/);
});

test("progress goes to stderr once a check has run a second, at most once a second; none for a quick one", async () => {
  const d = await dataDirWithSaves();
  const config = readServerConfig({ "data-dir": d.dataDir }, {});
  const run = async (stepMs: number) => {
    let t = 0;
    const err: string[] = [];
    const out: string[] = [];
    const code = await runCheck(config, silentLog, { json: true, readData: false }, { out: (l) => out.push(l), err: (l) => err.push(l), now: () => (t += stepMs) });
    return { code, err, out };
  };
  const quick = await run(1);
  expect(quick).toMatchObject({ code: 0, err: [] });
  expect(JSON.parse(quick.out[0]!)).toMatchObject({ saves: 2, damaged: [] });
  const slow = await run(1500);
  expect(slow.err.length).toBeGreaterThan(0);
  expect(slow.err[0]).toMatch(/^checking saves: \d+\/2$/);
  expect(slow.out.length).toBe(1);
});
