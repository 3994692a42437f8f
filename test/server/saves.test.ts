/**
 * A session cannot fill the server's disk or memory through saves: one save in flight per session,
 * a size cap the blob route enforces from the ticket (and that is checked on S3, which cannot cap a
 * presigned PUT), saves that are never reported expire and their blobs go, and a periodic sweep
 * deletes blobs nobody will use. The test plays the agent.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createS3BlobStore } from "../../server/blobs/s3.ts";
import { createUserToken, openStore } from "../../server/listen.ts";
import { createSaves } from "../../server/saves.ts";
import type { SessionRow } from "../../server/store/types.ts";
import { silentLog } from "../../src/lib/log.ts";
import type { ServerToAgent } from "../../src/protocol/index.ts";
import { startS3rver, type S3Fixture } from "../helpers/s3.ts";
import { startTestServer, type TestServer, type TestServerOptions } from "../helpers/server.ts";
import { RogueAgent, rogueProvider } from "../helpers/sync-back.ts";
import { waitFor } from "../helpers/wait.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Rig {
  server: TestServer;
  label: string;
  agent: RogueAgent;
  /** A fresh agent link for the same session (the old one is closed). */
  redial(): Promise<RogueAgent>;
  blobPath(key: string): string;
}

async function rig(opts: TestServerOptions = {}): Promise<Rig> {
  let rogue: ReturnType<typeof rogueProvider> | undefined;
  const server = await startTestServer({ ...opts, wrapProvider: (real) => (rogue = rogueProvider(real)) });
  cleanups.push(() => server.stop());
  const { label } = await server.owner.create({ command: ["sh"] });
  const token = rogue?.tokens.get(label) as string;
  const dial = async (): Promise<RogueAgent> => {
    const agent = new RogueAgent(server.url, token);
    cleanups.push(() => agent.close());
    await agent.hello();
    return agent;
  };
  const r: Rig = {
    server,
    label,
    agent: await dial(),
    async redial() {
      r.agent.close();
      r.agent = await dial();
      return r.agent;
    },
    blobPath: (key) => join(server.dataDir, "blobs", ...key.split("/")),
  };
  return r;
}

/** The blob key a disk upload URL's ticket names. */
function keyOf(url: string): string {
  const ticket = url.split("/").pop() as string;
  return (JSON.parse(Buffer.from(ticket.split(".")[0] as string, "base64url").toString()) as { k: string }).k;
}

async function target(agent: RogueAgent, id: string): Promise<Extract<ServerToAgent, { type: "save_target" }>> {
  agent.send({ type: "save_request", id, reason: "periodic" });
  return agent.next("save_target");
}

async function put(server: TestServer, url: string, bytes: number): Promise<number> {
  const res = await fetch(new URL(url, server.url), { method: "PUT", body: new Uint8Array(bytes).fill(7) });
  await res.arrayBuffer();
  return res.status;
}

async function done(agent: RogueAgent, id: string, size: number): Promise<Extract<ServerToAgent, { type: "save_result" }>> {
  agent.send({ type: "save_done", id, size, files: 1 });
  return agent.next("save_result");
}

describe("saves in flight", () => {
  test("one at a time per session: a second request is refused until the first is reported", async () => {
    const { server, agent, label } = await rig();
    const first = await target(agent, "save-0001");
    expect(first.url).toStartWith("/v1/blobs/");
    const second = await target(agent, "save-0002");
    expect(second).toMatchObject({ url: null, error: "save save-0001 is still in progress: one save at a time" });
    // Asking again for the same save is fine.
    expect((await target(agent, "save-0001")).url).toStartWith("/v1/blobs/");
    expect(await put(server, first.url as string, 100)).toBe(200);
    expect(await done(agent, "save-0001", 100)).toMatchObject({ ok: true });
    expect((await target(agent, "save-0002")).url).toStartWith("/v1/blobs/");
    expect((await server.owner.get(label)).saves.map((s) => s.id)).toEqual(["save-0001"]);
  });

  test("the upload ticket carries the save cap: a bigger PUT is refused and nothing is kept", async () => {
    const { server, agent, blobPath } = await rig({ env: { CATTY_MAX_SAVE_BYTES: "1000" } });
    const t = await target(agent, "save-0001");
    expect(await put(server, t.url as string, 2000)).toBe(413);
    expect(existsSync(blobPath(keyOf(t.url as string)))).toBe(false);
    expect(await done(agent, "save-0001", 2000)).toMatchObject({ ok: false, error: "nothing was stored" });
    const ok = await target(agent, "save-0002");
    expect(await put(server, ok.url as string, 1000)).toBe(200);
    expect(await done(agent, "save-0002", 1000)).toMatchObject({ ok: true });
  });

  test("a new agent link abandons the save of the old one: its blob is deleted and its ticket refused", async () => {
    const r = await rig();
    const t = await target(r.agent, "save-0001");
    expect(await put(r.server, t.url as string, 100)).toBe(200);
    const path = r.blobPath(keyOf(t.url as string));
    expect(existsSync(path)).toBe(true);
    const agent = await r.redial();
    await waitFor(() => !existsSync(path), { what: "the abandoned save's blob to go" });
    expect(await put(r.server, t.url as string, 100)).toBe(403);
    expect(existsSync(path)).toBe(false);
    expect((await target(agent, "save-0002")).url).toStartWith("/v1/blobs/");
  });

  test("a save never reported expires with its URL, and the periodic sweep deletes its blob", async () => {
    const { server, agent, blobPath } = await rig({ transferTtlMs: 1500, sweepMs: 200 });
    const t = await target(agent, "save-0001");
    expect(await put(server, t.url as string, 100)).toBe(200);
    const path = blobPath(keyOf(t.url as string));
    expect((await target(agent, "save-0002")).error).toMatch(/still in progress/);
    await waitFor(() => !existsSync(path), { timeoutMs: 10_000, what: "the unreported save's blob to be swept" });
    expect((await target(agent, "save-0002")).url).toStartWith("/v1/blobs/");
    expect(await done(agent, "save-0001", 100)).toMatchObject({ ok: false, error: "unknown save" });
  });
});

describe("the periodic sweep", () => {
  test("deletes save blobs without a save and old upload blobs nothing refers to, and keeps the rest", async () => {
    const { server, agent, blobPath } = await rig({ transferTtlMs: 1000, sweepMs: 200 });
    const t = await target(agent, "save-0001");
    expect(await put(server, t.url as string, 100)).toBe(200);
    expect(await done(agent, "save-0001", 100)).toMatchObject({ ok: true });
    const kept = blobPath(keyOf(t.url as string));
    const sessionDir = dirname(kept);
    const hourAgo = new Date(Date.now() - 3_600_000 - 60_000);
    const plant = (path: string): string => {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, "x");
      utimesSync(path, hourAgo, hourAgo);
      return path;
    };
    const orphan = plant(join(sessionDir, "orphan-0001.tar.gz"));
    const otherSession = plant(blobPath("saves/00000000-0000-0000-0000-000000000000/gone-0001.tar.gz"));
    const oldUpload = plant(blobPath("uploads/11111111-1111-1111-1111-111111111111.tar.gz"));
    const freshOrphan = join(sessionDir, "fresh-0001.tar.gz");
    writeFileSync(freshOrphan, "x");
    utimesSync(kept, hourAgo, hourAgo);
    await waitFor(() => !existsSync(orphan) && !existsSync(otherSession) && !existsSync(oldUpload), {
      timeoutMs: 10_000,
      what: "the sweep",
    });
    expect(existsSync(kept)).toBe(true);
    // Younger than a URL lives: its upload may still be under way.
    expect(existsSync(freshOrphan)).toBe(true);
  });

  test("uploads not turned into a session within their time are deleted, rows and blobs", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "catty-sweep-"));
    const store = openStore({ dataDir });
    cleanups.push(() => store.close());
    await createUserToken(store, "owner");
    const user = (await store.userByName("owner"))!;
    const { createDiskBlobStore } = await import("../../server/blobs/disk.ts");
    const blobs = createDiskBlobStore({ dir: join(dataDir, "blobs"), secret: "ef".repeat(32) });
    let now = Date.now();
    const saves = createSaves({
      store,
      blobs,
      log: silentLog,
      limits: { maxUploadBytes: 1000, maxSaveBytes: 1000, keepSaves: 2 },
      transferTtlMs: 60_000,
      uploadTtlMs: 3_600_000,
      now: () => now,
    });
    const upload = (body: string) =>
      saves.receiveUpload(user, new Request("http://x/v1/uploads", { method: "POST", body, headers: { "Content-Length": String(body.length) } }));
    const old = await upload("old");
    now += 3_600_000 + 1000;
    const young = await upload("young");
    const { deleted } = await saves.sweep();
    expect(deleted).toEqual([`uploads/${old.id}.tar.gz`]);
    expect(await store.takeUpload(user.id, old.id)).toBeNull();
    expect(await store.takeUpload(user.id, young.id)).not.toBeNull();
  });
});

describe("saves on S3", () => {
  let s3: S3Fixture;
  beforeAll(async () => {
    s3 = await startS3rver();
  });
  afterAll(() => s3.stop());

  test("a presigned PUT cannot be capped, so an oversized save is refused when reported, and deleted", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "catty-s3-saves-"));
    const store = openStore({ dataDir });
    cleanups.push(() => store.close());
    const blobs = createS3BlobStore({
      bucket: s3.bucket,
      endpoint: s3.endpoint,
      region: "us-east-1",
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
    });
    const saves = createSaves({ store, blobs, log: silentLog, limits: { maxUploadBytes: 1000, maxSaveBytes: 100, keepSaves: 2 }, transferTtlMs: 60_000 });
    const row = { id: "22222222-2222-2222-2222-222222222222", label: "brave-tiger-1234" } as SessionRow;
    const fail = async () => {};
    const t = (await saves.control(row, { type: "save_request", id: "save-0001", reason: "periodic" }, fail)) as Extract<ServerToAgent, { type: "save_target" }>;
    const res = await fetch(t.url as string, { method: "PUT", body: new Uint8Array(500) });
    expect(res.ok).toBe(true);
    const key = `saves/${row.id}/save-0001.tar.gz`;
    expect((await blobs.stat(key))?.size).toBe(500);
    const result = await saves.control(row, { type: "save_done", id: "save-0001", size: 500, files: 1 }, fail);
    expect(result).toMatchObject({ type: "save_result", ok: false, error: "the save is 500 bytes, over this server's cap of 100" });
    expect(await blobs.stat(key)).toBeNull();
    expect(await store.listSaves(row.id)).toEqual([]);
  });
});
