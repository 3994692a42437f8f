/**
 * Both blob stores pass one suite: the disk store behind a real `Bun.serve` route and the S3 store
 * against s3rver. Then what only the disk route does: tickets, limits, interrupted uploads.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDiskBlobStore, handleBlobRequest, loadOrCreateSecret, type DiskBlobStore } from "../../server/blobs/disk.ts";
import { createS3BlobStore } from "../../server/blobs/s3.ts";
import type { BlobStore } from "../../server/blobs/types.ts";
import { CattyError } from "../../src/protocol/errors.ts";
import { startS3rver, type S3Fixture } from "../helpers/s3.ts";
import { waitFor } from "../helpers/wait.ts";
import { removeAfterRun } from "../helpers/fs.ts";

const MAX_PUT_BYTES = 8 * 1024 * 1024;

interface Harness {
  store: BlobStore;
  /** Makes a presigned URL fetchable (disk URLs are relative to the server). */
  resolve(url: string): string;
  /** A second store on the same backend whose listings come in pages of two. */
  pagedStore?: BlobStore;
  stop(): Promise<void>;
}

interface DiskHarness extends Harness {
  store: DiskBlobStore;
  dir: string;
  secret: string;
  base: string;
  /** How many blob requests the route has finished handling. */
  handled(): number;
}

function tempDir(name: string): string {
  return removeAfterRun(mkdtempSync(join(tmpdir(), `catty-${name}-`)));
}

async function startDisk(): Promise<DiskHarness> {
  const dataDir = tempDir("blobs");
  const secret = loadOrCreateSecret(dataDir);
  const store = createDiskBlobStore({ dir: join(dataDir, "blobs"), secret });
  let handled = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    routes: {
      "/v1/blobs/:ticket": (req) =>
        handleBlobRequest(req, store, { maxPutBytes: MAX_PUT_BYTES }).finally(() => {
          handled++;
        }),
    },
    fetch: () => new Response("not found", { status: 404 }),
  });
  const base = server.url.href;
  return {
    store,
    dir: store.dir,
    secret,
    base,
    handled: () => handled,
    resolve: (url) => new URL(url, base).href,
    async stop() {
      await server.stop(true);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function startS3(): Promise<Harness> {
  const s3: S3Fixture = await startS3rver();
  const options = {
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    region: "us-east-1",
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    prefix: "catty",
  };
  return {
    store: createS3BlobStore(options),
    pagedStore: createS3BlobStore({ ...options, listPageSize: 2 }),
    resolve: (url) => url,
    stop: () => s3.stop(),
  };
}

function streamOf(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

async function bytesOf(stream: ReadableStream<Uint8Array> | null): Promise<Uint8Array | null> {
  return stream ? new Uint8Array(await new Response(stream).arrayBuffer()) : null;
}

function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

async function expectBadRequest(promise: Promise<unknown>): Promise<void> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CattyError);
  expect((err as CattyError).code).toBe("bad_request");
}

const BAD_KEYS = ["", "/abs", "a//b", "a/", "../x", "a/../b", "a/./b", ".", "a b", "a\\b", "sn\u00e4p", "a?b", "a%2Fb", "x".repeat(1025)];

function blobStoreSuite(name: string, start: () => Promise<Harness>): void {
  describe(`${name} blob store`, () => {
    let h: Harness;
    let files: string;
    beforeAll(async () => {
      h = await start();
      files = tempDir("blob-files");
    });
    afterAll(async () => {
      await h.stop();
      rmSync(files, { recursive: true, force: true });
    });

    test("put, get and stat with every kind of body", async () => {
      await h.store.put("t/bytes.bin", text("from bytes"));
      await h.store.put("t/blob.bin", new Blob([text("from a blob")]));
      await h.store.put("t/stream.bin", streamOf(text("from "), text("a "), text("stream")));
      await h.store.put("t/empty.bin", new Uint8Array(0));
      expect(await bytesOf(await h.store.get("t/bytes.bin"))).toEqual(text("from bytes"));
      expect(await bytesOf(await h.store.get("t/blob.bin"))).toEqual(text("from a blob"));
      expect(await bytesOf(await h.store.get("t/stream.bin"))).toEqual(text("from a stream"));
      expect(await bytesOf(await h.store.get("t/empty.bin"))).toEqual(new Uint8Array(0));
      expect(await h.store.stat("t/stream.bin")).toEqual({ key: "t/stream.bin", size: 13 });
      expect(await h.store.stat("t/empty.bin")).toEqual({ key: "t/empty.bin", size: 0 });
    });

    test("a missing blob is null, and deleting it is not an error", async () => {
      expect(await h.store.get("t/missing.bin")).toBeNull();
      expect(await h.store.getBytes("t/missing.bin")).toBeNull();
      expect(await h.store.stat("t/missing.bin")).toBeNull();
      expect(await h.store.get("t")).toBeNull(); // a "folder" of other keys is not a blob
      expect(await h.store.getBytes("t")).toBeNull();
      await h.store.delete("t/missing.bin");
    });

    test("put replaces a blob", async () => {
      await h.store.put("t/replace.bin", text("first version, longer"));
      await h.store.put("t/replace.bin", text("second"));
      expect(await bytesOf(await h.store.get("t/replace.bin"))).toEqual(text("second"));
      expect(await h.store.stat("t/replace.bin")).toEqual({ key: "t/replace.bin", size: 6 });
    });

    test("list returns every blob under a prefix, with sizes and when it was written", async () => {
      const before = Date.now() - 2_000;
      await h.store.put("snapshots/s1/a.tar.gz", text("a"));
      await h.store.put("snapshots/s1/b.tar.gz", text("bb"));
      await h.store.put("snapshots/s2/c.tar.gz", text("ccc"));
      await h.store.put("snapshots-old/d.tar.gz", text("dddd"));
      await h.store.put("uploads/e.bin", text("eeeee"));
      const keys = async (prefix: string): Promise<string[]> => (await h.store.list(prefix)).map((b) => b.key).sort();
      const listed = (await h.store.list("snapshots/s1/")).sort((a, b) => a.key.localeCompare(b.key));
      expect(listed.map(({ key, size }) => ({ key, size }))).toEqual([
        { key: "snapshots/s1/a.tar.gz", size: 1 },
        { key: "snapshots/s1/b.tar.gz", size: 2 },
      ]);
      for (const b of listed) expect(b.modifiedAt).toBeWithin(before, Date.now() + 2_000);
      expect(await keys("snapshots/")).toEqual(["snapshots/s1/a.tar.gz", "snapshots/s1/b.tar.gz", "snapshots/s2/c.tar.gz"]);
      expect(await keys("snapshots")).toEqual([
        "snapshots-old/d.tar.gz",
        "snapshots/s1/a.tar.gz",
        "snapshots/s1/b.tar.gz",
        "snapshots/s2/c.tar.gz",
      ]);
      expect(await keys("snapshots/s1/a")).toEqual(["snapshots/s1/a.tar.gz"]);
      expect(await keys("nothing/")).toEqual([]);
      expect(await keys("")).toContain("uploads/e.bin");
    });

    test("list pages through long listings", async () => {
      const paged = h.pagedStore;
      if (!paged) return; // the disk store reads directories whole
      const want = ["pages/0", "pages/1", "pages/2", "pages/3", "pages/4"];
      for (const key of want) await h.store.put(key, text(key));
      expect((await paged.list("pages/")).map((b) => b.key).sort()).toEqual(want);
    });

    test("delete removes a blob from get, stat and list", async () => {
      await h.store.put("del/one/x.bin", text("x"));
      await h.store.put("del/two.bin", text("y"));
      await h.store.delete("del/one/x.bin");
      expect(await h.store.get("del/one/x.bin")).toBeNull();
      expect(await h.store.stat("del/one/x.bin")).toBeNull();
      expect((await h.store.list("del/")).map((b) => b.key)).toEqual(["del/two.bin"]);
      await h.store.put("del/one/x.bin", text("again")); // its folder comes back as needed
      expect(await h.store.stat("del/one/x.bin")).toEqual({ key: "del/one/x.bin", size: 5 });
    });

    test("bad keys are refused", async () => {
      for (const key of BAD_KEYS) {
        await expectBadRequest(h.store.put(key, text("nope")));
        await expectBadRequest(h.store.get(key));
        await expectBadRequest(h.store.stat(key));
        await expectBadRequest(h.store.delete(key));
        await expectBadRequest(h.store.presignPut(key, 60));
        await expectBadRequest(h.store.presignGet(key, 60));
      }
      await expectBadRequest(h.store.list("../"));
      await expectBadRequest(h.store.list("/snapshots"));
    });

    test("a stream that fails part-way leaves no blob", async () => {
      for (const [chunkBytes, chunks] of [
        [1000, 1],
        [3 * 1024 * 1024, 3], // past S3's 5 MiB part size: a multipart upload, abandoned
      ] as const) {
        let sent = 0;
        const failing = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent++ < chunks) controller.enqueue(new Uint8Array(randomBytes(chunkBytes)));
            else controller.error(new Error("source broke"));
          },
        });
        const err = await h.store.put("t/broken.bin", failing).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(Error);
        expect(sent).toBe(chunks + 1);
        expect(await h.store.stat("t/broken.bin")).toBeNull();
        expect((await h.store.list("t/")).map((b) => b.key)).not.toContain("t/broken.bin");
      }
    });

    test("a blob being replaced reads as the old version until the new one is complete", async () => {
      await h.store.put("t/atomic.bin", text("old"));
      const feed: Array<Uint8Array | null> = [text("new-1,")];
      let pulls = 0;
      let wake = (): void => {};
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          pulls++;
          while (feed.length === 0) await new Promise<void>((resolve) => (wake = resolve));
          const next = feed.shift()!;
          if (next) controller.enqueue(next);
          else controller.close();
        },
      });
      const putting = h.store.put("t/atomic.bin", body);
      await waitFor(() => pulls >= 2, { what: "the store to take the first chunk" });
      expect(await bytesOf(await h.store.get("t/atomic.bin"))).toEqual(text("old"));
      expect(await h.store.stat("t/atomic.bin")).toEqual({ key: "t/atomic.bin", size: 3 });
      feed.push(text("new-2"), null);
      wake();
      await putting;
      expect(await bytesOf(await h.store.get("t/atomic.bin"))).toEqual(text("new-1,new-2"));
    });

    test("a 6 MiB binary blob round-trips through put and get", async () => {
      const data = new Uint8Array(randomBytes(6 * 1024 * 1024 + 123));
      const chunks = [data.subarray(0, 1_000_000), data.subarray(1_000_000, 5_500_000), data.subarray(5_500_000)];
      await h.store.put("big/streamed.bin", streamOf(...chunks));
      expect(await h.store.stat("big/streamed.bin")).toEqual({ key: "big/streamed.bin", size: data.byteLength });
      const back = await bytesOf(await h.store.get("big/streamed.bin"));
      expect(back?.byteLength).toBe(data.byteLength);
      expect(Buffer.compare(back!, data)).toBe(0);
      const whole = await h.store.getBytes("big/streamed.bin");
      expect(Buffer.compare(whole!, data)).toBe(0);
      expect(Buffer.compare((await h.store.getRange("big/streamed.bin", 999_990, 20))!, data.subarray(999_990, 1_000_010))).toBe(0);
    });

    test("presigned PUT of a file, then presigned GET, gives the same bytes", async () => {
      const data = new Uint8Array(randomBytes(5 * 1024 * 1024 + 7));
      const path = join(files, "upload.tar.gz");
      await Bun.write(path, data);
      const putUrl = h.resolve(await h.store.presignPut("snapshots/s9/upload.tar.gz", 300));
      const put = await fetch(putUrl, { method: "PUT", body: Bun.file(path) });
      expect(put.status).toBe(200);
      expect(await h.store.stat("snapshots/s9/upload.tar.gz")).toEqual({ key: "snapshots/s9/upload.tar.gz", size: data.byteLength });
      const get = await fetch(h.resolve(await h.store.presignGet("snapshots/s9/upload.tar.gz", 300)));
      expect(get.status).toBe(200);
      expect(get.headers.get("content-length")).toBe(String(data.byteLength));
      expect(Buffer.compare(new Uint8Array(await get.arrayBuffer()), data)).toBe(0);
    });

    test("a presigned GET of a missing blob is 404", async () => {
      const res = await fetch(h.resolve(await h.store.presignGet("t/never-written.bin", 60)));
      expect(res.status).toBe(404);
      await res.arrayBuffer();
    });
  });
}

blobStoreSuite("disk", startDisk);
blobStoreSuite("s3", startS3);

// ── the disk store's own route ────────────────────────────────────────────────────────────────

function ticketFor(secret: string, payload: unknown): string {
  const encoded = Buffer.from(JSON.stringify(payload)).toString("base64url");
  return `${encoded}.${createHmac("sha256", secret).update(encoded).digest("base64url")}`;
}

function allFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import("node:fs").Dirent[])
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe("disk blob route", () => {
  let h: DiskHarness;
  beforeAll(async () => {
    h = await startDisk();
  });
  afterAll(() => h.stop());

  const url = (path: string): string => new URL(path, h.base).href;

  async function expectForbidden(res: Response): Promise<void> {
    expect(res.status).toBe(403);
    const body = (await res.json()) as { type: string; code: string; message: string };
    expect(body).toMatchObject({ type: "error", code: "forbidden" });
    expect(body.message.length).toBeGreaterThan(0);
  }

  test("presigned URLs are server paths with a signed ticket", async () => {
    const path = await h.store.presignGet("snapshots/s1/a.tar.gz", 60);
    expect(path).toMatch(/^\/v1\/blobs\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const ticket = h.store.verifyTicket(path.split("/").pop()!);
    expect(ticket.key).toBe("snapshots/s1/a.tar.gz");
    expect(ticket.method).toBe("GET");
    expect(ticket.expiresAtSec - Date.now() / 1000).toBeGreaterThan(55);
  });

  test("GET and HEAD send the length and a gzip type for archives", async () => {
    await h.store.put("snapshots/s1/a.tar.gz", text("not really gzip"));
    const get = await fetch(url(await h.store.presignGet("snapshots/s1/a.tar.gz", 60)));
    expect(get.headers.get("content-type")).toBe("application/gzip");
    expect(get.headers.get("content-length")).toBe("15");
    expect(await get.text()).toBe("not really gzip");
    const head = await fetch(url(await h.store.presignGet("snapshots/s1/a.tar.gz", 60)), { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("15");
    await h.store.put("other.bin", text("x"));
    const other = await fetch(url(await h.store.presignGet("other.bin", 60)));
    expect(other.headers.get("content-type")).toBe("application/octet-stream");
    await other.arrayBuffer();
  });

  test("a tampered ticket is refused", async () => {
    await h.store.put("mine.bin", text("secret stuff"));
    await h.store.put("theirs.bin", text("their stuff"));
    const path = await h.store.presignGet("mine.bin", 60);
    const [payload, signature] = path.slice("/v1/blobs/".length).split(".") as [string, string];
    // Another key in the payload, the old signature.
    const swapped = Buffer.from(JSON.stringify({ k: "theirs.bin", m: "GET", e: Math.floor(Date.now() / 1000) + 60 })).toString("base64url");
    await expectForbidden(await fetch(url(`/v1/blobs/${swapped}.${signature}`)));
    // Every character of the signature matters, the last one's spare bits included.
    for (const i of [0, signature.length - 1]) {
      const flipped = signature.slice(0, i) + (signature[i] === "A" ? "B" : "A") + signature.slice(i + 1);
      await expectForbidden(await fetch(url(`/v1/blobs/${payload}.${flipped}`)));
    }
    await expectForbidden(await fetch(url(`/v1/blobs/${payload}`)));
    await expectForbidden(await fetch(url(`/v1/blobs/${payload}.${signature}.x`)));
    await expectForbidden(await fetch(url("/v1/blobs/garbage")));
    // A well-formed ticket signed with another secret.
    await expectForbidden(await fetch(url(`/v1/blobs/${ticketFor("x".repeat(64), { k: "theirs.bin", m: "GET", e: 4e9 })}`)));
  });

  test("a correctly signed ticket with a bad key or shape is refused", async () => {
    for (const payload of [{ k: "../blob-secret", m: "GET", e: 4e9 }, { k: "mine.bin", m: "DELETE", e: 4e9 }, { k: "mine.bin", m: "GET" }, "mine.bin"]) {
      await expectForbidden(await fetch(url(`/v1/blobs/${ticketFor(h.secret, payload)}`)));
    }
  });

  test("an expired ticket is refused", async () => {
    await h.store.put("old.bin", text("old"));
    const ticket = ticketFor(h.secret, { k: "old.bin", m: "GET", e: Math.floor(Date.now() / 1000) - 1 });
    await expectForbidden(await fetch(url(`/v1/blobs/${ticket}`)));
    const fresh = ticketFor(h.secret, { k: "old.bin", m: "GET", e: Math.floor(Date.now() / 1000) + 60 });
    expect(await (await fetch(url(`/v1/blobs/${fresh}`))).text()).toBe("old");
  });

  test("a GET ticket cannot upload and a PUT ticket cannot download", async () => {
    await h.store.put("guarded.bin", text("original"));
    await expectForbidden(await fetch(url(await h.store.presignGet("guarded.bin", 60)), { method: "PUT", body: text("overwrite") }));
    await expectForbidden(await fetch(url(await h.store.presignPut("guarded.bin", 60))));
    expect(await bytesOf(await h.store.get("guarded.bin"))).toEqual(text("original"));
  });

  test("an upload over the limit is refused with 413 and leaves nothing", async () => {
    const res = await fetch(url(await h.store.presignPut("huge/too-big.bin", 60)), {
      method: "PUT",
      body: new Uint8Array(MAX_PUT_BYTES + 1),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ type: "error", code: "too_large" });
    expect(await h.store.stat("huge/too-big.bin")).toBeNull();
    expect(allFiles(h.dir).filter((f) => f.startsWith("huge"))).toEqual([]);
  });

  test("an upload without a Content-Length is refused", async () => {
    const res = await fetch(url(await h.store.presignPut("chunked.bin", 60)), { method: "PUT", body: streamOf(text("chunked")) });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: "error", code: "bad_request" });
    expect(await h.store.stat("chunked.bin")).toBeNull();
  });

  test("an upload whose client goes away mid-body leaves no blob", async () => {
    const path = await h.store.presignPut("cut/short.bin", 60);
    const before = h.handled();
    const target = new URL(h.base);
    const socket = await Bun.connect({
      hostname: target.hostname,
      port: Number(target.port),
      socket: { data() {} },
    });
    socket.write(`PUT ${path} HTTP/1.1\r\nHost: ${target.host}\r\nContent-Length: 1000000\r\n\r\n`);
    socket.write(new Uint8Array(100_000));
    // The route has the temporary file open: the upload really is under way.
    await waitFor(() => allFiles(h.dir).some((f) => f.startsWith("cut/") && f.includes(".~")), { what: "the temporary file" });
    socket.end();
    await waitFor(() => h.handled() > before, { what: "the route to give up on the upload" });
    expect(await h.store.stat("cut/short.bin")).toBeNull();
    expect(allFiles(h.dir).filter((f) => f.startsWith("cut/"))).toEqual([]);
  });

  test("a blob that does not exist is 404", async () => {
    const res = await fetch(url(await h.store.presignGet("nobody/here.bin", 60)));
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ type: "error", code: "not_found" });
  });

  test("temporary files never show up in listings", async () => {
    await h.store.put("tmpcheck/real.bin", text("real"));
    await Bun.write(join(h.dir, "tmpcheck", "real.bin.~abc123"), "partial");
    expect((await h.store.list("tmpcheck/")).map((b) => b.key)).toEqual(["tmpcheck/real.bin"]);
  });
});

describe("blob secret", () => {
  test("is created once, 32 random bytes, readable only by the owner", () => {
    const dataDir = join(tempDir("secret"), "nested");
    const secret = loadOrCreateSecret(dataDir);
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(loadOrCreateSecret(dataDir)).toBe(secret);
    expect(statSync(join(dataDir, "blob-secret")).mode & 0o777).toBe(0o600);
    expect(readdirSync(dataDir)).toEqual(["blob-secret"]);
    expect(loadOrCreateSecret(tempDir("secret"))).not.toBe(secret);
  });
});
