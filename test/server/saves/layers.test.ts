/**
 * The saves' parts on their own, over a real SQLite store and disk blobs: transfers (one save in
 * flight per session, caps, a save counts once complete), reading (which save a download names,
 * read tickets), staging (an archive upload past its cap keeps nothing) and the collections' lease.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { createDiskBlobStore } from "../../../server/blobs/disk.ts";
import { createUserToken, openStore } from "../../../server/startup.ts";
import { createReading } from "../../../server/saves/reading.ts";
import { createStaging } from "../../../server/saves/staging.ts";
import { createCollections } from "../../../server/saves/sweep.ts";
import { createTransfers } from "../../../server/saves/transfers.ts";
import type { SessionRow } from "../../../server/store/types.ts";
import { ticketKey } from "../../../server/tickets.ts";
import { createVault } from "../../../server/vault/vault.ts";
import { silentLog } from "../../../src/lib/log.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { saveOf } from "../../helpers/vault.ts";

const tempDir = tempDirs("catty-saves-layers-");

async function rig() {
  const store = await openStore({ dataDir: tempDir() });
  await createUserToken(store, "alice");
  const user = (await store.userByName("alice"))!;
  const blobs = createDiskBlobStore({ dir: join(tempDir(), "blobs"), secret: "ab".repeat(32) });
  const master = Buffer.alloc(32, 5);
  const vault = createVault({ store, blobs, master, log: silentLog });
  const row: SessionRow = {
    id: crypto.randomUUID(), label: "brave-tiger-1234", userId: user.id, status: "running", region: "local", provider: "local", command: ["sh"], cols: 80, rows: 24,
    agentTokenHash: "x", machine: null, createdAt: new Date().toISOString(), endedAt: null, exitCode: null, endReason: null, lastScreen: null, restoreKey: null,
    finalSave: null, idleTimeoutMs: 60_000, expiresAt: null, ending: null, attention: null, relayReplica: null, lastActivityAt: null,
  };
  await store.insertSession(row);
  const clock = { t: Date.now() };
  const common = { store, vault, ticketKey: ticketKey(master), log: silentLog, ttlSec: 60, now: () => clock.t };
  const leases = new Set<string>();
  const collections = createCollections({
    store,
    leases: { lease: async (n) => (leases.has(n) ? false : (leases.add(n), true)), release: async (n) => void leases.delete(n) },
    now: () => clock.t,
    waitMs: 0,
  });
  const pruned: number[] = [];
  const transfers = createTransfers({ ...common, limits: { maxUploadBytes: 1000, maxSaveBytes: 1000 }, collections, prune: async (_, rows) => pruned.push(rows.length) });
  return { store, blobs, vault, user, row, clock, common, collections, transfers, pruned };
}

test("transfers: one save in flight per session; a save over its cap is refused; a save counts only when its root is stored whole", async () => {
  const r = await rig();
  const first = await r.transfers.saveRequest(r.row, { type: "save_request", id: "1", reason: "periodic" });
  expect(first).toMatchObject({ type: "save_target", error: null });
  const second = await r.transfers.saveRequest(r.row, { type: "save_request", id: "2", reason: "periodic" });
  expect(second).toMatchObject({ url: null, error: expect.stringMatching(/save 1 is still in progress/) });
  const ticket = (first as { url: string }).url.split("/").pop()!;
  await expect(r.transfers.putPack(ticket, saveOf({ "big.bin": crypto.getRandomValues(new Uint8Array(1_100_000)) }).pack)).rejects.toThrow(/cap of 0 MB/);
  const s = saveOf({ "a.txt": "alpha", "sub/b.txt": "beta" });
  await r.transfers.putPack(ticket, s.pack);
  const lacking = saveOf({ "a.txt": "alpha", "c.txt": "never sent" });
  expect(await r.transfers.saveDone(r.row, { type: "save_done", id: "1", root: lacking.root, size: 1, files: 1 })).toMatchObject({ ok: false, error: expect.stringMatching(/not stored/) });
  expect(await r.store.listSaves(r.row.id)).toEqual([]);
  const again = (await r.transfers.saveRequest(r.row, { type: "save_request", id: "3", reason: "periodic" })) as { url: string };
  await r.transfers.putPack(again.url.split("/").pop()!, s.pack);
  expect(await r.transfers.saveDone(r.row, { type: "save_done", id: "3", root: s.root, size: 9, files: 2 })).toMatchObject({ ok: true });
  expect((await r.store.listSaves(r.row.id)).map((x) => x.key)).toEqual([`vault:${s.root}`]);
  expect(r.pruned).toEqual([1]);
  // The ticket of a finished save is no longer wanted.
  await expect(r.transfers.missing(ticket, [])).rejects.toThrow(/no longer wanted/);
});

test("reading: a download names the latest save, the newest at or before a time, or one by id, and its ticket streams it", async () => {
  const r = await rig();
  const reading = createReading({ ...r.common, blobs: r.blobs });
  const s = saveOf({ "a.txt": "alpha" });
  await r.vault.storePack(r.user.id, s.pack);
  const at = (iso: string, id: string) => r.store.insertSave({ id, sessionId: r.row.id, key: `vault:${s.root}`, createdAt: iso, size: 5, files: 1, reason: "periodic", added: 5 });
  await at("2026-01-01T00:00:00.000Z", "old");
  await at("2026-01-02T00:00:00.000Z", "new");
  expect((await reading.download(r.row)).id).toBe("new");
  expect((await reading.download(r.row, { at: Date.parse("2026-01-01T12:00:00Z") })).id).toBe("old");
  expect((await reading.download(r.row, { id: "old" })).id).toBe("old");
  await expect(reading.download(r.row, { at: Date.parse("2025-01-01T00:00:00Z") })).rejects.toThrow(/no save from 2025-01-01/);
  const { url } = await reading.download(r.row);
  const { stream, gzip, name } = await reading.readTar(url.split("/").at(-2)!);
  expect([gzip, name]).toEqual([true, "brave-tiger-1234"]);
  const tar = Bun.gunzipSync(new Uint8Array(await new Response(stream).arrayBuffer()));
  expect(Buffer.from(tar).includes("alpha")).toBe(true);
});

test("staging: an archive upload past its cap is refused as it streams and leaves no blob; a handed file is dropped on request", async () => {
  const r = await rig();
  const staging = createStaging({ ...r.common, blobs: r.blobs, maxUploadBytes: 100 });
  const body = new ReadableStream({ pull: (c) => (c.enqueue(new Uint8Array(60)), undefined) });
  await expect(staging.receiveUpload(r.user, new Request("http://x/", { method: "POST", body, duplex: "half" } as RequestInit))).rejects.toThrow(/cap of 0 MB/);
  expect(await r.blobs.list("uploads/")).toEqual([]);
  const ok = await staging.receiveUpload(r.user, new Request("http://x/", { method: "POST", body: new Uint8Array(50) }));
  expect(ok.size).toBe(50);
  const file = await staging.stageFile(r.row, new Uint8Array(3));
  expect((await r.blobs.list(`files/${r.row.id}/`)).length).toBe(1);
  await file.drop();
  expect(await r.blobs.list(`files/${r.row.id}/`)).toEqual([]);
});

test("collections: none runs while a transfer of the user is in flight or another holds the lease; one runs otherwise and releases the lease", async () => {
  const r = await rig();
  const collect = async () => "collected";
  await r.transfers.startUpload(r.user);
  expect(await r.collections.run(r.user.id, r.clock.t, collect)).toBeNull();
  r.clock.t += 120_000; // the upload's ticket has expired
  let inside: string | null = null;
  const result = await r.collections.run(r.user.id, r.clock.t, async () => {
    inside = await r.collections.run(r.user.id, r.clock.t, collect);
    return "outer";
  });
  expect([result, inside]).toEqual(["outer", null]);
  expect(await r.collections.run(r.user.id, r.clock.t, collect)).toBe("collected");
});
