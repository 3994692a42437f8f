/**
 * What replicas ask of each other is signed with a key derived from the shared master key:
 * signatures bind the method, the path with its query and an expiry, and `/v1/internal` refuses
 * anything else. Leases and liveness come from the store (the store contract tests the queries).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../../server/app.ts";
import { createDiskBlobStore } from "../../server/blobs/disk.ts";
import { openStore } from "../../server/listen.ts";
import { INTERNAL_HEADER, Replicas } from "../../server/replicas.ts";
import type { Provider } from "../../server/providers/types.ts";
import { silentLog } from "../../src/lib/log.ts";
import { removeAfterRun } from "../helpers/fs.ts";

const master = Buffer.alloc(32, 9);

async function replicas(opts: { solo: boolean; key?: Buffer }) {
  const store = await openStore({ dataDir: removeAfterRun(mkdtempSync(join(tmpdir(), "catty-replicas-"))) });
  return { store, replicas: new Replicas({ store, log: silentLog, master: opts.key ?? master, url: () => "http://10.0.0.1:8080", solo: opts.solo }) };
}

describe("replicas", () => {
  test("a signature holds for its method, path and query only, until it expires, and only under the same master key", async () => {
    const { replicas: a } = await replicas({ solo: true });
    const { replicas: b } = await replicas({ solo: true });
    const { replicas: stranger } = await replicas({ solo: true, key: Buffer.alloc(32, 1) });
    const now = Date.now();
    const sig = a.sign("POST", "/v1/internal/sessions/s1/stop", now);
    expect(b.verify("POST", "/v1/internal/sessions/s1/stop", sig, now)).toBe(true);
    expect(b.verify("post", "/v1/internal/sessions/s1/stop", sig, now)).toBe(true);
    expect(b.verify("GET", "/v1/internal/sessions/s1/stop", sig, now)).toBe(false);
    expect(b.verify("POST", "/v1/internal/sessions/s2/stop", sig, now)).toBe(false);
    expect(b.verify("POST", "/v1/internal/sessions/s1/stop?x=1", sig, now)).toBe(false);
    expect(b.verify("POST", "/v1/internal/sessions/s1/stop", sig, now + 61_000)).toBe(false);
    expect(stranger.verify("POST", "/v1/internal/sessions/s1/stop", sig, now)).toBe(false);
    for (const bad of [undefined, "", "x", `${sig}x`, sig.replace(/^\d+/, "99999999999"), sig.split(".")[0] as string]) {
      expect(b.verify("POST", "/v1/internal/sessions/s1/stop", bad, now)).toBe(false);
    }
  });

  test("a solo replica (SQLite) holds every lease and sees no other replica; a shared one asks the store", async () => {
    const { replicas: solo } = await replicas({ solo: true });
    expect(await solo.lease("duties")).toBe(true);
    expect(await solo.others()).toEqual([]);
    expect(await solo.alive("someone-else")).toBeNull();
    expect((await solo.alive(solo.id))?.id).toBe(solo.id);
    const { store, replicas: one } = await replicas({ solo: false });
    const two = new Replicas({ store, log: silentLog, master, url: () => "http://10.0.0.2:8080", solo: false });
    await one.start();
    await two.start();
    try {
      expect(await one.lease("duties")).toBe(true);
      expect(await two.lease("duties")).toBe(false);
      expect((await two.others()).map((r) => [r.id, r.url])).toEqual([[one.id, "http://10.0.0.1:8080"]]);
      expect((await two.alive(one.id))?.url).toBe("http://10.0.0.1:8080");
      // One that starts after the list was read is known at once (a miss reads the list again).
      const three = new Replicas({ store, log: silentLog, master, url: () => "http://10.0.0.3:8080", solo: false });
      await three.start();
      expect((await two.alive(three.id))?.url).toBe("http://10.0.0.3:8080");
      await three.close();
      // Leaving releases the lease and the row at once.
      await one.close();
      expect(await two.lease("duties")).toBe(true);
      expect(await store.replicas("1970-01-01T00:00:00.000Z")).toHaveLength(1);
    } finally {
      await two.close();
      await store.close();
    }
  });

  test("/v1/internal answers only signed requests", async () => {
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-replicas-")));
    const store = await openStore({ dataDir });
    const provider: Provider = {
      name: "local",
      isolated: true,
      regions: [{ id: "local", name: "Local", place: "local" }],
      start: async () => ({ provider: "local", pid: 1, dir: "/" }),
      isAlive: async () => true,
      destroy: async () => {},
    };
    const app = createApp({
      store,
      provider,
      blobs: createDiskBlobStore({ dir: join(dataDir, "blobs"), secret: "cd".repeat(32) }),
      log: silentLog,
      limits: { maxUploadBytes: 1_000_000, maxSaveBytes: 2_000_000, retentionDays: 30 },
      masterKey: master,
      timeouts: { idleTimeoutMs: 3_600_000, minDurationMs: 60_000, maxDurationMs: 7_200_000, tickMs: 1_000 },
      agentUrl: () => "http://agents.test",
      agentLostMs: 60_000,
      stopTimeoutMs: 60_000,
      serverKey: "ab".repeat(32),
    });
    const signer = new Replicas({ store, log: silentLog, master, url: () => "http://x", solo: true });
    const path = "/v1/internal/sessions/nope/handover";
    expect((await app.request(path, { method: "POST" })).status).toBe(403);
    expect((await app.request(path, { method: "POST", headers: { [INTERNAL_HEADER]: signer.sign("POST", "/v1/internal/sessions/other/handover") } })).status).toBe(403);
    const wrongKey = new Replicas({ store, log: silentLog, master: Buffer.alloc(32, 2), url: () => "http://x", solo: true });
    expect((await app.request(path, { method: "POST", headers: { [INTERNAL_HEADER]: wrongKey.sign("POST", path) } })).status).toBe(403);
    const ok = await app.request(path, { method: "POST", headers: { [INTERNAL_HEADER]: signer.sign("POST", path) } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ env: null });
    const stop = "/v1/internal/sessions/nope/stop";
    expect((await app.request(stop, { method: "POST", headers: { [INTERNAL_HEADER]: signer.sign("POST", stop) } })).status).toBe(404);
    app.close();
    await store.close();
  });
});
