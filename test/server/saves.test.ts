/**
 * A session cannot fill the server's disk or memory through saves, nor plant what it did not send:
 * one save in flight per session, a cap on what a save adds, every blob checked against its hash,
 * a save counts only when everything under its root is stored, saves never reported expire and what
 * they stored is collected, and a periodic sweep deletes blobs nobody will use. The test plays the agent.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createS3BlobStore } from "../../server/blobs/s3.ts";
import { createUserToken, openStore } from "../../server/startup.ts";
import { extractArchive } from "../../src/lib/archive.ts";
import { encodePack, MAX_PACK_BYTES, sha256 } from "../../src/lib/snapshot/format.ts";
import type { ServerToAgent } from "../../src/protocol/index.ts";
import { startS3rver, type S3Fixture } from "../helpers/s3.ts";
import { startTestServer, type TestServer, type TestServerOptions } from "../helpers/server.ts";
import { RogueAgent, rogueProvider } from "../helpers/sync-back.ts";
import { sessionRow } from "../helpers/rows.ts";
import { saveOf, savesOver } from "../helpers/vault.ts";
import { downloadSaveTo } from "../../src/client/transfer.ts";
import { waitFor } from "../helpers/wait.ts";
import { removeAfterRun } from "../helpers/fs.ts";

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

async function target(agent: RogueAgent, id: string): Promise<Extract<ServerToAgent, { type: "save_target" }>> {
  agent.send({ type: "save_request", id, reason: "periodic" });
  return agent.next("save_target");
}

/** Sends a pack to a save's URL; the HTTP status. */
async function put(server: TestServer, url: string, pack: Uint8Array): Promise<number> {
  const res = await fetch(new URL(`${url}/pack`, server.url), { method: "PUT", body: pack });
  await res.arrayBuffer();
  return res.status;
}

async function done(agent: RogueAgent, id: string, root: string): Promise<Extract<ServerToAgent, { type: "save_result" }>> {
  agent.send({ type: "save_done", id, root, size: 1, files: 1 });
  return agent.next("save_result");
}

/** Pack files of the session's user in the disk store. */
function packs(server: TestServer): string[] {
  const dir = join(server.dataDir, "blobs", "vault");
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
}

describe("saves in flight", () => {
  test("one at a time per session: a second request is refused until the first is reported", async () => {
    const { server, agent, label } = await rig();
    const first = await target(agent, "save-0001");
    expect(first.url).toStartWith("/v1/vault/");
    const second = await target(agent, "save-0002");
    expect(second).toMatchObject({ url: null, error: "save save-0001 is still in progress: one save at a time" });
    // Asking again for the same save is fine.
    expect((await target(agent, "save-0001")).url).toStartWith("/v1/vault/");
    const save = saveOf({ "a.txt": "a" });
    expect(await put(server, first.url as string, save.pack)).toBe(200);
    expect(await done(agent, "save-0001", save.root)).toMatchObject({ ok: true });
    expect((await target(agent, "save-0002")).url).toStartWith("/v1/vault/");
    expect((await server.owner.get(label)).saves.map((s) => s.id)).toEqual(["save-0001"]);
  });

  test("a save adds at most the cap; a save whose root is not stored whole is refused and the previous stays latest", async () => {
    const { server, agent, label } = await rig({ env: { CATTY_MAX_SAVE_BYTES: "1000" } });
    const small = saveOf({ "a.txt": "a" });
    const t1 = await target(agent, "save-0001");
    expect(await put(server, t1.url as string, small.pack)).toBe(200);
    expect(await done(agent, "save-0001", small.root)).toMatchObject({ ok: true });

    const big = saveOf({ "big.bin": new Uint8Array(1_500_000).fill(7), "a.txt": "a" });
    const t2 = await target(agent, "save-0002");
    expect(await put(server, t2.url as string, big.pack)).toBe(413);
    expect(await done(agent, "save-0002", big.root)).toMatchObject({ ok: false, error: expect.stringMatching(/not stored/) });
    // A root sent without what is under it.
    const partial = saveOf({ "a.txt": "a", "b.txt": "b" });
    const t3 = await target(agent, "save-0003");
    const rootOnly = partial.blobs.filter((b) => b.hash === partial.root);
    expect(await put(server, t3.url as string, encodePack(rootOnly))).toBe(200);
    expect(await done(agent, "save-0003", partial.root)).toMatchObject({ ok: false, error: "The save refers to 1 blob that are not stored." });
    expect((await server.owner.get(label)).saves.map((s) => s.id)).toEqual(["save-0001"]);
  });

  test("a pack that is not one, or whose blob does not match its hash, is refused (400) and nothing is kept", async () => {
    const { server, agent } = await rig();
    const t = await target(agent, "save-0001");
    expect(await put(server, t.url as string, new TextEncoder().encode("not a pack"))).toBe(400);
    const lie = encodePack([{ hash: sha256(new TextEncoder().encode("claimed")), bytes: new TextEncoder().encode("planted") }]);
    expect(await put(server, t.url as string, lie)).toBe(400);
    expect(packs(server)).toEqual([]);
  });

  test("a pack over the size a pack may have is refused (413), by its declared length or as it streams, and nothing is kept", async () => {
    const { server, agent } = await rig();
    const t = await target(agent, "save-0001");
    const url = new URL(`${t.url}/pack`, server.url);
    const declared = await fetch(url, { method: "PUT", headers: { "Content-Length": String(MAX_PACK_BYTES + 1) }, body: new Uint8Array(MAX_PACK_BYTES + 1) });
    expect(declared.status).toBe(413);
    let pulled = 0;
    const streamed = new ReadableStream<Uint8Array>({
      pull(ctl) {
        pulled += 1024 * 1024;
        if (pulled > 2 * MAX_PACK_BYTES) ctl.close();
        else ctl.enqueue(new Uint8Array(1024 * 1024));
      },
    });
    const res = await fetch(url, { method: "PUT", body: streamed, duplex: "half" } as RequestInit);
    expect(res.status).toBe(413);
    expect(packs(server)).toEqual([]);
  });

  test("a new agent link abandons the save of the old one: its link is refused", async () => {
    const r = await rig();
    const t = await target(r.agent, "save-0001");
    const save = saveOf({ "a.txt": "a" });
    expect(await put(r.server, t.url as string, save.pack)).toBe(200);
    const agent = await r.redial();
    await waitFor(async () => (await put(r.server, t.url as string, save.pack)) === 403, { what: "the abandoned save's link to be refused" });
    expect((await target(agent, "save-0002")).url).toStartWith("/v1/vault/");
  });

  test("a save never reported expires with its link, and the sweep collects what it stored", async () => {
    const { server, agent } = await rig({ transferTtlMs: 1500, sweepMs: 200 });
    const t = await target(agent, "save-0001");
    expect(await put(server, t.url as string, saveOf({ "a.txt": "never reported" }).pack)).toBe(200);
    expect(packs(server)).toHaveLength(1);
    expect((await target(agent, "save-0002")).error).toMatch(/still in progress/);
    await waitFor(() => packs(server).length === 0, { timeoutMs: 10_000, what: "the unreported save's pack to be collected" });
    expect((await target(agent, "save-0002")).url).toStartWith("/v1/vault/");
    expect(await done(agent, "save-0001", saveOf({ "a.txt": "never reported" }).root)).toMatchObject({ ok: false, error: "unknown save" });
  });
});

describe("reading saves back", () => {
  test("the dashboard's download link: a .tar.gz named after the session, streamed, holding the save", async () => {
    const { server, agent, label } = await rig();
    const t = await target(agent, "save-0001");
    const save = saveOf({ "hello.txt": "hello", "sub/x.txt": "x" });
    expect(await put(server, t.url as string, save.pack)).toBe(200);
    expect(await done(agent, "save-0001", save.root)).toMatchObject({ ok: true });
    const res = await fetch(`${server.url}/v1/sessions/${label}/saves/latest/download`, { headers: { Authorization: `Bearer ${server.ownerToken}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/gzip");
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="${label}.tar.gz"`);
    const dest = join(removeAfterRun(mkdtempSync(join(tmpdir(), "catty-link-"))), "out");
    await extractArchive(new Uint8Array(await res.arrayBuffer()), dest);
    expect(readFileSync(join(dest, "sub/x.txt"), "utf8")).toBe("x");
  });

  /** A session whose save holds a big file, then `z.bin` (each sealed on its own), then the trees (in a group); and that pack's file. */
  async function savedThree() {
    const { server, agent, label } = await rig();
    const t = await target(agent, "save-0001");
    const random = (n: number): Uint8Array => {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
      return out;
    };
    const big = random(300_000);
    const z = random(70_000);
    // The big file comes first in the archive, so a damaged z.bin after it fails the stream midway.
    const save = saveOf({ "a-big.bin": big, "z.bin": z });
    expect(await put(server, t.url as string, save.pack)).toBe(200);
    expect(await done(agent, "save-0001", save.root)).toMatchObject({ ok: true });
    const [pack] = packs(server);
    const path = readdirSync(join(server.dataDir, "blobs", "vault"), { recursive: true })
      .map(String)
      .find((p) => p.endsWith(pack as string)) as string;
    // Sealed blobs are nonce (12) ‖ flag and content ‖ tag (16), in the pack's order: z.bin's
    // starts right after the incompressible big file's, and the group of trees after z.bin's.
    const zAt = 12 + 1 + big.length + 16;
    return { server, label, file: join(server.dataDir, "blobs", "vault", path), zAt, groupAt: zAt + 12 + 1 + z.length + 16 };
  }

  async function damagedDownloadFails(server: TestServer, label: string, error: RegExp): Promise<void> {
    const out = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-damaged-")));
    for (const format of ["dir", "tar.gz"] as const) {
      const dest = join(out, format === "dir" ? "ws" : "ws.tar.gz");
      await expect(downloadSaveTo({ client: server.owner, label, dest, format })).rejects.toThrow(error);
      expect(existsSync(dest)).toBe(false);
    }
    expect(readdirSync(out)).toEqual([]);
  }

  test("a blob damaged in storage: the stream is cut where it is, catty download fails (as a directory and as a .tar.gz) and writes nothing", async () => {
    const { server, label, file, zAt } = await savedThree();
    const bytes = readFileSync(file);
    bytes[zAt + 14]! ^= 1;
    writeFileSync(file, bytes);
    await damagedDownloadFails(server, label, /The download was cut short/);
  });

  test("a save whose trees are damaged in storage: the server answers with what is wrong before sending anything, and catty download says so", async () => {
    const { server, label, file, groupAt } = await savedThree();
    const bytes = readFileSync(file);
    expect(groupAt + 40).toBeLessThan(bytes.length);
    bytes[groupAt + 40]! ^= 1;
    writeFileSync(file, bytes);
    await damagedDownloadFails(server, label, /could not be downloaded: Blob [0-9a-f]{12}… of the save is damaged in storage/);
  });
});

describe("the periodic sweep", () => {
  test("deletes archive blobs of saves from before content-addressed saves that no save refers to, and old upload blobs", async () => {
    const { server } = await rig({ transferTtlMs: 1000, sweepMs: 200 });
    const blobPath = (key: string) => join(server.dataDir, "blobs", ...key.split("/"));
    const hourAgo = new Date(Date.now() - 3_600_000 - 60_000);
    const plant = (path: string): string => {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, "x");
      utimesSync(path, hourAgo, hourAgo);
      return path;
    };
    const orphan = plant(blobPath("saves/00000000-0000-0000-0000-000000000000/gone-0001.tar.gz"));
    const oldUpload = plant(blobPath("uploads/11111111-1111-1111-1111-111111111111.tar.gz"));
    const freshOrphan = blobPath("saves/00000000-0000-0000-0000-000000000000/fresh-0001.tar.gz");
    writeFileSync(freshOrphan, "x");
    await waitFor(() => !existsSync(orphan) && !existsSync(oldUpload), { timeoutMs: 10_000, what: "the sweep" });
    // Younger than a link lives: its upload may still be under way.
    expect(existsSync(freshOrphan)).toBe(true);
  });

  test("uploads not turned into a session within their time are deleted, rows and blobs; an archive save with a row stays readable", async () => {
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-sweep-")));
    const store = await openStore({ dataDir });
    cleanups.push(() => store.close());
    await createUserToken(store, "owner");
    const user = (await store.userByName("owner"))!;
    const { createDiskBlobStore } = await import("../../server/blobs/disk.ts");
    const blobs = createDiskBlobStore({ dir: join(dataDir, "blobs"), secret: "ef".repeat(32) });
    let now = Date.now();
    const saves = savesOver(store, blobs, { uploadTtlMs: 3_600_000, now: () => now });
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

  test("a save's blobs go through the server, encrypted, into the bucket; the save reads back as tar.gz", async () => {
    const dataDir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-s3-saves-")));
    const store = await openStore({ dataDir });
    cleanups.push(() => store.close());
    await createUserToken(store, "owner");
    const user = (await store.userByName("owner"))!;
    const blobs = createS3BlobStore({
      bucket: s3.bucket,
      endpoint: s3.endpoint,
      region: "us-east-1",
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
    });
    const saves = savesOver(store, blobs);
    const row = sessionRow({ id: "22222222-2222-2222-2222-222222222222", label: "brave-tiger-1234", userId: user.id, machine: null });
    await store.insertSession(row);
    const fail = async () => {};
    const t = (await saves.control(row, { type: "save_request", id: "save-0001", reason: "periodic" }, fail)) as Extract<ServerToAgent, { type: "save_target" }>;
    const ticket = (t.url as string).split("/").pop() as string;
    const save = saveOf({ "hello.txt": "hello from S3" });
    expect(await saves.missing(ticket, [save.root])).toEqual([save.root]);
    await saves.putPack(ticket, save.pack);
    expect(await saves.control(row, { type: "save_done", id: "save-0001", root: save.root, size: 13, files: 1 }, fail)).toMatchObject({ ok: true });
    const got = await saves.download(row);
    const { stream, gzip } = await saves.readTar((got.url.split("/").at(-2)) as string);
    expect(gzip).toBe(true);
    const dest = join(dataDir, "out");
    await extractArchive(new Uint8Array(await new Response(stream).arrayBuffer()), dest);
    expect(readFileSync(join(dest, "hello.txt"), "utf8")).toBe("hello from S3");
  });
});


