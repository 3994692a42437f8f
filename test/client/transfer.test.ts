import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packToBytes } from "../../src/lib/archive.ts";
import { downloadSaveTo, downloadToFile, latestSaveOf, savedAgo, type SaveSource } from "../../src/client/transfer.ts";
import { CattyError } from "../../src/protocol/errors.ts";
import { Session, type SaveDownload } from "../../src/protocol/session.ts";

const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "catty-transfer-"));
  made.push(dir);
  return dir;
}

const payload = new Uint8Array(300_000).map((_, i) => (i * 31) % 251);

/** A blob server: `/ok`, `/status/<n>`, `/stall` (one chunk, then nothing), counting requests. */
function blobServer() {
  const hits: string[] = [];
  const server = Bun.serve({
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      hits.push(path);
      if (req.headers.get("authorization")) return new Response("no auth expected", { status: 400 });
      if (path === "/ok") return new Response(payload, { headers: { "Content-Type": "application/gzip" } });
      if (path.startsWith("/status/")) return new Response("nope", { status: Number(path.slice(8)) });
      if (path === "/stall") {
        return new Response(
          new ReadableStream<Uint8Array>({
            start: (c) => c.enqueue(payload.subarray(0, 1000)),
          }),
        );
      }
      return new Response("not here", { status: 404 });
    },
  });
  return { url: (p: string) => `http://127.0.0.1:${server.port}${p}`, hits, [Symbol.dispose]: () => void server.stop(true) };
}

/** A raw HTTP server that promises `promised` bytes and sends only `sent`, then hangs up. */
function truncatingServer(promised: number, sent: number) {
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket) {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: ${promised}\r\nConnection: close\r\n\r\n`);
        socket.write(payload.subarray(0, sent));
        socket.end();
      },
    },
  });
  return { url: `http://127.0.0.1:${server.port}/save`, [Symbol.dispose]: () => server.stop(true) };
}

async function caught(promise: Promise<unknown>): Promise<CattyError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CattyError);
    return err as CattyError;
  }
  throw new Error("expected a CattyError");
}

describe("downloadToFile", () => {
  test("streams the body into the file and reports progress", async () => {
    using server = blobServer();
    const file = join(tempDir(), "save.tar.gz");
    const seen: [number, number | undefined][] = [];
    const result = await downloadToFile(server.url("/ok"), file, { onProgress: (done, total) => seen.push([done, total]) });
    expect(result.bytes).toBe(payload.byteLength);
    expect(new Uint8Array(readFileSync(file))).toEqual(payload);
    expect(seen.at(-1)).toEqual([payload.byteLength, payload.byteLength]);
    expect(seen.every(([done], i) => i === 0 || done > seen[i - 1]![0])).toBe(true);
  });

  test("403: the link expired, and no file is left", async () => {
    using server = blobServer();
    const file = join(tempDir(), "save.tar.gz");
    const err = await caught(downloadToFile(server.url("/status/403"), file));
    expect(err.message).toBe("The save could not be downloaded (HTTP 403): the link expired; run the command again.");
    expect(err.code).toBe("forbidden");
    expect(existsSync(file)).toBe(false);
  });

  test("other statuses say what happened", async () => {
    using server = blobServer();
    const dir = tempDir();
    expect((await caught(downloadToFile(server.url("/status/404"), join(dir, "a")))).message).toContain("(HTTP 404): it is no longer stored");
    expect((await caught(downloadToFile(server.url("/status/503"), join(dir, "b")))).code).toBe("unavailable");
    expect(readdirSync(dir)).toEqual([]);
  });

  test("a body shorter than its Content-Length is an error, and the partial file is removed", async () => {
    using server = truncatingServer(100_000, 40_000);
    const dir = tempDir();
    const file = join(dir, "save.tar.gz");
    const err = await caught(downloadToFile(server.url, file));
    expect(err.code).toBe("unavailable");
    expect(err.message).toMatch(/^The download was cut short after \d+ of 100000 bytes/);
    expect(err.message).toContain("run the command again");
    expect(readdirSync(dir)).toEqual([]);
  });

  test("an unreachable server is a clear error", async () => {
    const port = (() => {
      const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      const p = probe.port;
      probe.stop(true);
      return p;
    })();
    const file = join(tempDir(), "x");
    const err = await caught(downloadToFile(`http://127.0.0.1:${port}/x`, file));
    expect(err.code).toBe("unavailable");
    expect(existsSync(file)).toBe(false);
  });

  test("never overwrites an existing file", async () => {
    using server = blobServer();
    const file = join(tempDir(), "mine.txt");
    writeFileSync(file, "keep me");
    const err = await caught(downloadToFile(server.url("/ok"), file));
    expect(err.code).toBe("conflict");
    expect(readFileSync(file, "utf8")).toBe("keep me");
    expect(server.hits).toEqual([]); // checked before the request
  });

  test("aborting mid-body rejects with the reason and removes the partial file", async () => {
    using server = blobServer();
    const dir = tempDir();
    const abort = new AbortController();
    const reason = new Error("stop now");
    const promise = downloadToFile(server.url("/stall"), join(dir, "save.tar.gz"), {
      signal: abort.signal,
      onProgress: () => abort.abort(reason),
    });
    await expect(promise).rejects.toBe(reason);
    expect(readdirSync(dir)).toEqual([]);
  });
});

// The saves endpoint is not served yet: a client answering like the API does stands in for it.
function fakeClient(opts: { save?: SaveDownload; session?: Partial<Session> }): SaveSource {
  const notFound = (what: string) => new CattyError("not_found", what);
  return {
    get: async (label) => {
      if (!opts.session) throw notFound(`Session ${label} not found.`);
      const base = { label, status: "running", region: "local", command: [], createdAt: "", endedAt: null, exitCode: null, endReason: null };
      return Session.parse({ ...base, ...opts.session });
    },
    latestSave: async (label) => {
      if (!opts.save) throw notFound(`No save of ${label}.`);
      return opts.save;
    },
    resolveUrl: (url) => url,
  };
}

describe("latestSaveOf", () => {
  test("a running session without a save yet", async () => {
    const err = await caught(latestSaveOf(fakeClient({ session: { status: "running" } }), "brave-tiger-1234"));
    expect(err.code).toBe("not_found");
    expect(err.message).toBe("Session brave-tiger-1234 has no save yet: the first save happens about 10 seconds after it starts.");
  });

  test("an ended session that was never saved", async () => {
    const err = await caught(latestSaveOf(fakeClient({ session: { status: "failed" } }), "brave-tiger-1234"));
    expect(err.message).toContain("ended (failed) before its first save");
  });

  test("an unknown session keeps the API's own message", async () => {
    const err = await caught(latestSaveOf(fakeClient({}), "brave-tiger-1234"));
    expect(err.message).toBe("Session brave-tiger-1234 not found.");
  });
});

describe("downloadSaveTo", () => {
  async function archiveServer() {
    const src = tempDir();
    mkdirSync(join(src, "src"));
    writeFileSync(join(src, "src", "main.ts"), "console.log(1);\n");
    writeFileSync(join(src, "README.md"), "# hi\n");
    const packed = await packToBytes({ root: src, mode: "snapshot" });
    const hits: string[] = [];
    const server = Bun.serve({
      port: 0,
      fetch: (req) => {
        hits.push(new URL(req.url).pathname);
        return new Response(packed.data);
      },
    });
    const save: SaveDownload = {
      id: "s1",
      createdAt: new Date().toISOString(),
      size: packed.data.byteLength,
      files: packed.files,
      reason: "periodic",
      url: `http://127.0.0.1:${server.port}/v1/blobs/ticket`,
    };
    return { save, packed, hits, client: fakeClient({ save, session: {} }), [Symbol.dispose]: () => void server.stop(true) };
  }

  test("dir: extracts into a new directory and leaves no temporary file", async () => {
    await using env = await archiveServer();
    const parent = tempDir();
    const dest = join(parent, "brave-tiger-1234");
    const got = await downloadSaveTo({ client: env.client, label: "brave-tiger-1234", dest, format: "dir" });
    expect(got.files).toBe(2);
    expect(readFileSync(join(dest, "src", "main.ts"), "utf8")).toBe("console.log(1);\n");
    expect(readdirSync(parent)).toEqual(["brave-tiger-1234"]);
  });

  test("dir: an empty directory is fine", async () => {
    await using env = await archiveServer();
    const dest = join(tempDir(), "empty");
    mkdirSync(dest);
    await downloadSaveTo({ client: env.client, label: "brave-tiger-1234", dest, format: "dir" });
    expect(readdirSync(dest).sort()).toEqual(["README.md", "src"]);
  });

  test("tar.gz: keeps the archive as downloaded", async () => {
    await using env = await archiveServer();
    const parent = tempDir();
    const dest = join(parent, "brave-tiger-1234.tar.gz");
    const got = await downloadSaveTo({ client: env.client, label: "brave-tiger-1234", dest, format: "tar.gz" });
    expect(got.bytes).toBe(env.packed.data.byteLength);
    expect(new Uint8Array(readFileSync(dest))).toEqual(new Uint8Array(env.packed.data));
    expect(readdirSync(parent)).toEqual(["brave-tiger-1234.tar.gz"]);
  });

  test("an existing destination is refused before anything is downloaded", async () => {
    await using env = await archiveServer();
    const parent = tempDir();
    const file = join(parent, "taken.tar.gz");
    writeFileSync(file, "mine");
    const dir = join(parent, "taken");
    mkdirSync(dir);
    writeFileSync(join(dir, "x"), "mine");
    for (const [dest, format] of [[file, "tar.gz"], [dir, "dir"], [file, "dir"]] as const) {
      const err = await caught(downloadSaveTo({ client: env.client, label: "brave-tiger-1234", dest, format }));
      expect(err.code).toBe("conflict");
      expect(err.message).toContain("already exists");
      expect(err.hint).toContain("another PATH");
    }
    expect(env.hits).toEqual([]);
    expect(readFileSync(file, "utf8")).toBe("mine");
    expect(readdirSync(parent).sort()).toEqual(["taken", "taken.tar.gz"]);
  });
});

test("savedAgo", () => {
  const now = Date.parse("2025-01-01T12:00:00Z");
  expect(savedAgo("2025-01-01T11:59:58Z", now)).toBe("just now");
  expect(savedAgo("2025-01-01T11:59:30Z", now)).toBe("30 seconds ago");
  expect(savedAgo("2025-01-01T11:57:00Z", now)).toBe("3 minutes ago");
  expect(savedAgo("2025-01-01T10:00:00Z", now)).toBe("2 hours ago");
});
