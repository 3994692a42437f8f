/** For the vault's tests: a store with one user, disk blobs and a keyring; saves made as the agent makes them, and read back as downloads. */
import { expect } from "bun:test";
import { join } from "node:path";
import { createDiskBlobStore } from "../../../server/blobs/disk.ts";
import type { BlobStore } from "../../../server/blobs/types.ts";
import { createUserToken, openStore } from "../../../server/startup.ts";
import { createSaves } from "../../../server/saves.ts";
import type { SessionRow, Store } from "../../../server/store/types.ts";
import { ticketKey } from "../../../server/tickets.ts";
import { createKeyring } from "../../../server/vault/keys.ts";
import { createVault } from "../../../server/vault/vault.ts";
import { silentLog } from "../../../src/lib/log.ts";
import { saveOf } from "../../helpers/vault.ts";

export const MASTER = Buffer.alloc(32, 9);

export async function layerRig(dir: () => string) {
  const store = await openStore({ dataDir: dir() });
  await createUserToken(store, "alice");
  const blobs = createDiskBlobStore({ dir: join(dir(), "blobs"), secret: "ab".repeat(32) });
  const keyring = createKeyring({ store, master: MASTER });
  return { store, blobs, keyring, alice: (await store.userByName("alice"))!.id };
}

export function sessionRow(userId: string, label: string): SessionRow {
  return {
    id: crypto.randomUUID(), label, userId, status: "running", region: "local", provider: "local", command: ["claude"], cols: 80, rows: 24, agentTokenHash: crypto.randomUUID(),
    machine: null, createdAt: new Date().toISOString(), endedAt: null, exitCode: null, endReason: null, lastScreen: null, restoreKey: null, finalSave: null,
    idleTimeoutMs: 60_000, expiresAt: null, ending: null, attention: null, relayReplica: null, lastActivityAt: null,
  };
}

export const savesOver = (store: Store, blobs: BlobStore, now: () => number) =>
  createSaves({
    store,
    blobs,
    vault: createVault({ store, blobs, master: MASTER, log: silentLog }),
    ticketKey: ticketKey(MASTER),
    log: silentLog,
    limits: { maxUploadBytes: 1e8, maxSaveBytes: 1e8, retentionDays: 30 },
    transferTtlMs: 60_000,
    now,
  });

/** Makes a save of `files` in `row` the way the agent does; its root. */
export async function save(saves: ReturnType<typeof savesOver>, row: SessionRow, id: string, files: Record<string, string | Uint8Array>): Promise<string> {
  const s = saveOf(files);
  const target = (await saves.control(row, { type: "save_request", id, reason: "periodic" }, async () => {})) as { url: string };
  await saves.putPack(target.url.split("/").pop()!, s.pack);
  const result = await saves.control(row, { type: "save_done", id, root: s.root, size: 1, files: Object.keys(files).length }, async () => {});
  expect(result).toMatchObject({ ok: true });
  return s.root;
}

/** Every save of every session of `user`, downloaded (tar.gz, unpacked): label/save → the SHA-256 of its tar. */
export async function downloads(store: Store, saves: ReturnType<typeof savesOver>, userId: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const row of await store.listSessions(userId)) {
    for (const info of await saves.savesOf(row.id)) {
      const { url } = await saves.download(row, { id: info.id });
      const { stream } = await saves.readTar(url.split("/").at(-2)!);
      const tar = Bun.gunzipSync(new Uint8Array(await new Response(stream).arrayBuffer()));
      out[`${row.label}/${info.id}`] = new Bun.CryptoHasher("sha256").update(tar).digest("hex");
    }
  }
  return out;
}
