/**
 * Collection under concurrent saves: sweeps (retention, then mark and sweep of blobs) run while
 * saves of the same user are in flight, in random interleavings; afterwards every save still kept
 * reads back whole, and a save never refers to a blob a collection took away.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import fc from "fast-check";
import { createDiskBlobStore } from "../../server/blobs/disk.ts";
import { createUserToken, openStore } from "../../server/startup.ts";
import { extractArchive } from "../../src/lib/archive.ts";
import type { ServerToAgent } from "../../src/protocol/index.ts";
import { tempDirs } from "../helpers/fs.ts";
import { sessionRow } from "../helpers/rows.ts";
import { saveOf, savesOver } from "../helpers/vault.ts";
import { waitFor } from "../helpers/wait.ts";
import { Replicas } from "../../server/replicas.ts";
import { silentLog } from "../../src/lib/log.ts";

const tempDir = tempDirs("catty-collect-");

/** A store with the user "owner", and a disk blob store beside it. */
async function ownerStore() {
  const dataDir = tempDir();
  const store = await openStore({ dataDir });
  await createUserToken(store, "owner");
  const user = (await store.userByName("owner"))!;
  return { store, user, blobs: createDiskBlobStore({ dir: join(dataDir, "blobs"), secret: "ab".repeat(32) }) };
}

test("sweeps racing saves never lose a blob a kept save refers to", async () => {
  const { store, user, blobs } = await ownerStore();
  // Time runs fast: each save is a day after the one before, so retention drops most of them.
  let now = Date.parse("2026-01-01T00:00:00Z");
  const saves = savesOver(store, blobs, { limits: { maxUploadBytes: 1e9, maxSaveBytes: 1e9, retentionDays: 3 }, now: () => now });
  const row = sessionRow({ id: crypto.randomUUID(), label: "brave-tiger-1234", userId: user.id, machine: null });
  await store.insertSession(row);
  const fail = async () => {};
  const contents = (n: number): Record<string, string> => ({
    "stays.txt": "in every save",
    [`come-and-go-${n % 3}.txt`]: `version ${n % 3}`,
    "sub/changes.txt": `save ${n}`,
  });

  let id = 0;
  const oneSave = async (n: number, pause: () => Promise<void>): Promise<void> => {
    const saveId = `save-${String(++id).padStart(4, "0")}`;
    const t = (await saves.control(row, { type: "save_request", id: saveId, reason: "periodic" }, fail)) as Extract<ServerToAgent, { type: "save_target" }>;
    if (!t.url) return; // another save is in flight: the agent tries again next tick
    const ticket = t.url.split("/").pop() as string;
    const save = saveOf(contents(n));
    await pause();
    const missing = new Set(await saves.missing(ticket, save.blobs.map((b) => b.hash)));
    await pause();
    const { encodePack } = await import("../../src/lib/snapshot/format.ts");
    const lacking = save.blobs.filter((b) => missing.has(b.hash));
    if (lacking.length > 0) await saves.putPack(ticket, encodePack(lacking));
    await pause();
    const done = await saves.control(row, { type: "save_done", id: saveId, root: save.root, size: 1, files: 3 }, fail);
    expect(done).toMatchObject({ ok: true });
    now += 24 * 3_600_000;
  };

  await fc.assert(
    fc.asyncProperty(fc.scheduler(), fc.integer({ min: 0, max: 1000 }), async (s, n) => {
      const pause = () => s.schedule(Promise.resolve());
      let finished = false;
      const work = Promise.all([oneSave(n, pause), s.schedule(Promise.resolve()).then(() => saves.sweep())]).finally(() => (finished = true));
      // Release the scheduled steps one at a time, in the order fast-check picks, as they come.
      while (!finished) {
        if (s.count() > 0) await s.waitOne();
        else await new Promise((resolve) => setImmediate(resolve));
      }
      await work;
      await saves.sweep();
      // Every save kept reads back whole.
      for (const kept of await saves.savesOf(row.id)) {
        const got = await saves.download(row, { id: kept.id });
        const { stream } = await saves.readTar(got.url.split("/").at(-2) as string);
        const dest = join(tempDir(), "out");
        await extractArchive(new Uint8Array(await new Response(stream).arrayBuffer()), dest);
      }
    }),
    { numRuns: 25 },
  );
  expect((await saves.savesOf(row.id)).length).toBeGreaterThan(0);
  store.close();
}, 60_000);

test("across replicas: a save begun while another replica collects the user's blobs waits for that collection; a collection skips a user with a save in flight", async () => {
  const { store, user, blobs } = await ownerStore();
  const replica = (url: string) => new Replicas({ store, log: silentLog, key: Buffer.alloc(32, 3), url: () => url, solo: false });
  const [one, two] = [replica("http://10.0.0.1"), replica("http://10.0.0.2")];
  const saves = savesOver(store, blobs, { leases: two });
  try {
    // Replica one is collecting this user's blobs.
    expect(await one.lease(`collect:${user.id}`)).toBe(true);
    let released = false;
    const upload = saves.startUpload(user).then(() => released);
    // The upload is recorded (so a collection starting now would skip the user), then waits.
    await waitFor(() => store.userHasTransfers(user.id, Date.now()), { timeoutMs: 5_000, what: "the upload recorded" });
    released = true;
    await one.release(`collect:${user.id}`);
    expect(await upload).toBe(true);
    // Replica two's own sweep: the user has a transfer in flight, so nothing of theirs is collected, and the lease is left free.
    await blobs.put(`vault/${user.id}/stray`, new Uint8Array(10));
    expect((await saves.sweep()).collected).toBe(0);
    expect(await store.leaseHeld(`collect:${user.id}`, new Date().toISOString())).toBe(false);
  } finally {
    await one.close();
    await two.close();
    await store.close();
  }
});
