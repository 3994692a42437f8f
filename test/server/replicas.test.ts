/**
 * What replicas ask of each other is signed with the internal key (CATTY_INTERNAL_KEY), not with
 * anything derived from the master key: a signature binds the method, the path with its query, a
 * hash of the body, the target replica's id and a nonce, and works once, for a minute.
 * `/v1/internal` is served only where there are replicas, and refuses anything else. Leases and
 * liveness come from the store (the store contract tests the queries).
 */
import { describe, expect, test } from "bun:test";
import { createHmac, hkdfSync } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type CattyApp } from "../../server/app.ts";
import { createDiskBlobStore } from "../../server/blobs/disk.ts";
import { openStore } from "../../server/startup.ts";
import { INTERNAL_HEADER, Replicas } from "../../server/replicas.ts";
import { readServerConfig } from "../../server/config.ts";
import { aboutThisReplica, topologyProblem } from "../../server/topology.ts";
import type { Provider } from "../../server/providers/types.ts";
import type { Store } from "../../server/store/types.ts";
import { silentLog } from "../../src/lib/log.ts";
import { removeAfterRun } from "../helpers/fs.ts";

const master = Buffer.alloc(32, 9);
const key = Buffer.alloc(32, 5);

async function replicas(opts: { solo: boolean; key?: Buffer }) {
  const store = await openStore({ dataDir: removeAfterRun(mkdtempSync(join(tmpdir(), "catty-replicas-"))) });
  return { store, replicas: new Replicas({ store, log: silentLog, key: opts.key ?? key, url: () => "http://10.0.0.1:8080", solo: opts.solo }) };
}

/** An app over a fresh store; `replicas` makes one of several replicas (else a server of its own). */
async function appWith(make: (store: Store) => Replicas | undefined, opts: { internalListener?: boolean } = {}): Promise<{ app: CattyApp; store: Store; replica: Replicas | undefined }> {
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
  const replica = make(store);
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
    ...(replica ? { replicas: replica } : {}),
    ...opts,
  });
  return { app, store, replica };
}

/** The header the replicas signed with before: a key derived from the master key, over the method, path and expiry. */
function masterKeySignature(method: string, path: string): string {
  const derived = Buffer.from(hkdfSync("sha256", master, Buffer.alloc(0), "catty replicas v1", 32));
  const expiry = Math.ceil(Date.now() / 1000) + 60;
  return `${expiry}.${createHmac("sha256", derived).update(`${method} ${path} ${expiry}`).digest("base64url")}`;
}

describe("replicas", () => {
  test("a signature holds for one method, path, query, body and target replica, once, until it expires, and only under the internal key", async () => {
    const { replicas: a } = await replicas({ solo: true });
    const { replicas: b } = await replicas({ solo: false });
    const { replicas: stranger } = await replicas({ solo: true, key: master });
    const path = "/v1/internal/sessions/s1/files";
    const body = JSON.stringify({ name: "a.txt", url: "/x", size: 1 });
    const now = Date.now();
    const fresh = (over: Partial<{ to: string; method: string; path: string; body: string; at: number }> = {}): string =>
      a.sign(over.to ?? b.id, over.method ?? "POST", over.path ?? path, over.body ?? body, over.at ?? now);
    expect(b.verify("post", path, body, fresh(), now)).toBe(true);
    expect(b.verify("POST", path, new TextEncoder().encode(body), fresh(), now)).toBe(true);
    // Used once: the same header again is refused.
    const once = fresh();
    expect(b.verify("POST", path, body, once, now)).toBe(true);
    expect(b.verify("POST", path, body, once, now)).toBe(false);
    expect(b.verify("GET", path, body, fresh(), now)).toBe(false);
    expect(b.verify("POST", "/v1/internal/sessions/s2/files", body, fresh(), now)).toBe(false);
    expect(b.verify("POST", `${path}?x=1`, body, fresh(), now)).toBe(false);
    expect(b.verify("POST", path, body.replace("a.txt", "b.txt"), fresh(), now)).toBe(false);
    expect(b.verify("POST", path, "", fresh(), now)).toBe(false);
    // Signed for another replica.
    expect(b.verify("POST", path, body, fresh({ to: a.id }), now)).toBe(false);
    expect(b.verify("POST", path, body, fresh(), now + 61_000)).toBe(false);
    // Signed under another key: the master key signs nothing, as it is or derived.
    expect(b.verify("POST", path, body, stranger.sign(b.id, "POST", path, body, now), now)).toBe(false);
    expect(b.verify("POST", path, body, masterKeySignature("POST", path), now)).toBe(false);
    const sig = fresh();
    for (const bad of [undefined, "", "x", `${sig}x`, sig.replace(/^\d+/, "99999999999"), sig.split(".").slice(0, 2).join(".")]) {
      expect(b.verify("POST", path, body, bad, now)).toBe(false);
    }
    expect(b.verify("POST", path, body, sig, now)).toBe(true);
    // A replica on a shared database cannot run without the key.
    const { store } = await replicas({ solo: true });
    expect(() => new Replicas({ store, log: silentLog, key: null, url: () => "http://x", solo: false })).toThrow("CATTY_INTERNAL_KEY");
  });

  test("a solo replica (SQLite) holds every lease and sees no other replica; a shared one asks the store", async () => {
    const { replicas: solo } = await replicas({ solo: true });
    expect(await solo.lease("duties")).toBe(true);
    expect(await solo.others()).toEqual([]);
    expect(await solo.alive("someone-else")).toBeNull();
    expect((await solo.alive(solo.id))?.id).toBe(solo.id);
    const { store, replicas: one } = await replicas({ solo: false });
    const two = new Replicas({ store, log: silentLog, key, url: () => "http://10.0.0.2:8080", solo: false });
    await one.start();
    await two.start();
    try {
      expect(await one.lease("duties")).toBe(true);
      expect(await two.lease("duties")).toBe(false);
      expect((await two.others()).map((r) => [r.id, r.url])).toEqual([[one.id, "http://10.0.0.1:8080"]]);
      expect((await two.alive(one.id))?.url).toBe("http://10.0.0.1:8080");
      // One that starts after the list was read is known at once (a miss reads the list again).
      const three = new Replicas({ store, log: silentLog, key, url: () => "http://10.0.0.3:8080", solo: false });
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

  test("a replica started at the address of one that died stands for it at once: the dead one's row, still fresh, no longer counts", async () => {
    const { store, replicas: restarted } = await replicas({ solo: false });
    const other = new Replicas({ store, log: silentLog, key, url: () => "http://10.0.0.2:8080", solo: false });
    // The process that ran at 10.0.0.1 before was killed a moment ago: its row is within deadMs.
    await store.beatReplica({ id: "killed", url: "http://10.0.0.1:8080" }, new Date(Date.now() - 1_000).toISOString());
    expect((await other.alive("killed"))?.url).toBe("http://10.0.0.1:8080");
    await restarted.start();
    await other.start();
    try {
      // (The list is read at most once a second: read again now.)
      await other.live(0);
      expect(await other.alive("killed")).toBeNull();
      expect((await other.others()).map((r) => r.id)).toEqual([restarted.id]);
      expect((await restarted.live(0)).map((r) => r.id).sort()).toEqual([restarted.id, other.id].sort());
    } finally {
      await restarted.close();
      await other.close();
      await store.close();
    }
  });

  test("what replicas must share: one bucket, one place for machines, one master key", () => {
    const s3 = "s3 https://s3.example aws-bucket/catty";
    const base = { id: "b", storage: s3, machines: "local processes on host-a (boot 12345678)", masterKey: "f1" };
    const url = "http://10.0.0.2:8080";
    expect(topologyProblem({ ...base, id: "a" }, base, url)).toBeNull();
    expect(topologyProblem({ ...base, id: "a", storage: "disk" }, base, url)).toContain("this replica keeps saves on its own disk");
    expect(topologyProblem({ ...base, id: "a" }, { ...base, storage: "disk" }, url)).toContain(`the replica at ${url} keeps saves on its own disk`);
    expect(topologyProblem({ ...base, id: "a", storage: `${s3}/other` }, base, url)).toContain("give every replica the same S3 endpoint, bucket and prefix");
    // Local sessions on two hosts: neither replica could watch the other's machines.
    expect(topologyProblem({ ...base, id: "a", machines: "local processes on host-b (boot 9abcdef0)" }, base, url)).toContain("on one host for local sessions");
    expect(topologyProblem({ ...base, id: "a", masterKey: "f2" }, base, url)).toContain("another master key");
  });

  test("what a replica says of itself: its bucket, where its machines run (a local socket: this kernel), a fingerprint of its master key", () => {
    const config = (env: Record<string, string>) => readServerConfig({}, { CATTY_DATABASE_URL: "postgres://db/catty", CATTY_INTERNAL_KEY: "ab".repeat(32), ...env });
    const local = aboutThisReplica(config({}), master);
    expect(local.storage).toBe("disk");
    expect(local.machines).toStartWith(`local processes on ${hostname()}`);
    expect(local.masterKey).toMatch(/^[0-9a-f]{16}$/);
    expect(master.toString("hex")).not.toContain(local.masterKey);
    expect(aboutThisReplica(config({}), key).masterKey).not.toBe(local.masterKey);
    const docker = aboutThisReplica(config({ CATTY_PROVIDER: "docker", CATTY_S3_BUCKET: "b", CATTY_S3_ENDPOINT: "http://s3.test", CATTY_S3_PREFIX: "p" }), master);
    expect(docker.storage).toBe("s3 http://s3.test b/p");
    expect(docker.machines).toMatch(/^docker unix:\/\/\/var\/run\/docker\.sock on /);
    expect(docker.machines).not.toContain(hostname());
  });

  test("/v1/internal is not served by a server of its own, even to a request signed with its master key", async () => {
    const { app, store } = await appWith(() => undefined);
    const path = "/v1/internal/sessions/nope/handover";
    const res = await app.request(path, { method: "POST", headers: { [INTERNAL_HEADER]: masterKeySignature("POST", path) } });
    expect(res.status).toBe(404);
    expect(app.internalFetch).toBeNull();
    app.close();
    await store.close();
  });

  test("a replica's /v1/internal answers only a request signed for it with the internal key, once", async () => {
    const { app, store, replica } = await appWith((store) => new Replicas({ store, log: silentLog, key, url: () => "http://x", solo: false }));
    const target = replica as Replicas;
    const signer = new Replicas({ store, log: silentLog, key, url: () => "http://y", solo: true });
    const path = "/v1/internal/sessions/nope/handover";
    const post = (header: string | undefined, body?: string) =>
      app.request(path, { method: "POST", headers: header ? { [INTERNAL_HEADER]: header, "content-type": "application/json" } : {}, ...(body ? { body } : {}) });
    expect((await post(undefined)).status).toBe(403);
    // Holding the master key (the old scheme's root) is not enough.
    expect((await post(masterKeySignature("POST", path))).status).toBe(403);
    expect((await post(signer.sign(target.id, "POST", "/v1/internal/sessions/other/handover"))).status).toBe(403);
    expect((await post(signer.sign(crypto.randomUUID(), "POST", path))).status).toBe(403);
    const wrongKey = new Replicas({ store, log: silentLog, key: Buffer.alloc(32, 2), url: () => "http://x", solo: true });
    expect((await post(wrongKey.sign(target.id, "POST", path))).status).toBe(403);
    // A body the signature does not cover.
    expect((await post(signer.sign(target.id, "POST", path), "{}")).status).toBe(403);
    const header = signer.sign(target.id, "POST", path);
    const ok = await post(header);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ env: null });
    // Replayed.
    expect((await post(header)).status).toBe(403);
    // A signed body reaches the route as it was signed (and is checked there).
    const files = "/v1/internal/sessions/nope/files";
    const body = JSON.stringify({ name: "a.txt", url: "/v1/blobs/x", size: 3 });
    const handed = await app.request(files, { method: "POST", headers: { [INTERNAL_HEADER]: signer.sign(target.id, "POST", files, body), "content-type": "application/json" }, body });
    expect(handed.status).toBe(404);
    expect(((await handed.json()) as { message: string }).message).toContain("No session nope");
    const stop = "/v1/internal/sessions/nope/stop";
    expect((await app.request(stop, { method: "POST", headers: { [INTERNAL_HEADER]: signer.sign(target.id, "POST", stop) } })).status).toBe(404);
    app.close();
    await store.close();
  });

  test("with an internal listener, /v1/internal is served there and not on the main one", async () => {
    const { app, store, replica } = await appWith((store) => new Replicas({ store, log: silentLog, key, url: () => "http://x", solo: false }), { internalListener: true });
    const signer = new Replicas({ store, log: silentLog, key, url: () => "http://y", solo: true });
    const path = "/v1/internal/sessions/nope/handover";
    const signed = () => new Request(`http://server.test${path}`, { method: "POST", headers: { [INTERNAL_HEADER]: signer.sign((replica as Replicas).id, "POST", path) } });
    expect((await app.fetch(signed())).status).toBe(404);
    const internalFetch = app.internalFetch;
    expect(internalFetch).not.toBeNull();
    const res = await (internalFetch as NonNullable<typeof internalFetch>)(signed());
    expect(res.status).toBe(200);
    expect((await (internalFetch as NonNullable<typeof internalFetch>)(new Request("http://server.test/v1/sessions"))).status).toBe(404);
    app.close();
    await store.close();
  });
});
