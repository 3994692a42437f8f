/**
 * Request bodies are limited while they stream, through a real socket to a real server: a huge
 * body sent with a valid token is refused long before it is all sent, and the server does not
 * hold it. Paths that are not valid percent-encoding are refused cleanly.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../helpers/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ env: { CATTY_MAX_UPLOAD_BYTES: String(10 * 1024 * 1024) } });
});
afterAll(() => server.stop());

const MiB = 1024 * 1024;

/** A body of `totalMiB` spaces, streamed (chunked, no Content-Length), counting what was pulled. */
function hugeBody(totalMiB: number): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  const chunk = new Uint8Array(MiB).fill(0x20);
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(ctl) {
      if (pulled >= totalMiB * MiB) return ctl.close();
      pulled += chunk.length;
      ctl.enqueue(chunk);
    },
  });
  return { body, pulled: () => pulled };
}

async function post(path: string, totalMiB: number, type = "application/json"): Promise<{ status: number; pulledMiB: number; rssGrowthMiB: number }> {
  Bun.gc(true);
  const rssBefore = process.memoryUsage().rss;
  const { body, pulled } = hugeBody(totalMiB);
  const res = await fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${server.ownerToken}`, "Content-Type": type },
    body,
    duplex: "half",
  } as RequestInit).catch((err: unknown) => err as Error);
  const status = res instanceof Response ? res.status : -1;
  if (res instanceof Response) await res.arrayBuffer();
  return { status, pulledMiB: pulled() / MiB, rssGrowthMiB: (process.memoryUsage().rss - rssBefore) / MiB };
}

describe("request bodies", () => {
  test("a 400 MB JSON POST with a valid token: 413 after a few MB, and the server's memory stays put", async () => {
    const r = await post("/v1/sessions", 400);
    expect(r.status).toBe(413);
    expect(r.pulledMiB).toBeLessThan(32);
    expect(r.rssGrowthMiB).toBeLessThan(64);
    // Nothing was created, and the server carries on.
    expect(await server.owner.list()).toEqual([]);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  test("a route that takes no body answers without reading a huge one", async () => {
    const r = await post("/v1/sessions/brave-tiger-1234/stop", 400);
    expect(r.status).toBe(404);
    expect(r.pulledMiB).toBeLessThan(32);
  });

  test("an upload over the cap is refused while it streams", async () => {
    const r = await post("/v1/uploads", 400, "application/gzip");
    expect(r.status).toBe(413);
    expect(r.pulledMiB).toBeLessThan(64);
  });
});

/** Sends a raw HTTP request line, so no client library normalises the path first. */
async function rawStatus(method: string, path: string): Promise<number> {
  const { hostname, port } = new URL(server.url);
  let text = "";
  const done = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname,
    port: Number(port),
    socket: {
      data(_s, data) {
        text += new TextDecoder().decode(data);
        if (text.includes("\r\n\r\n")) done.resolve();
      },
      close: () => done.resolve(),
      error: () => done.resolve(),
    },
  });
  socket.write(
    `${method} ${path} HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${server.ownerToken}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
  );
  await done.promise;
  socket.end();
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
}

describe("paths", () => {
  test("bad percent-encoding is 400 or 404, never 500", async () => {
    for (const [method, path] of [
      ["GET", "/v1/sessions/%ZZ"],
      ["POST", "/v1/sessions/%ZZ/stop"],
      ["GET", "/v1/sessions/%E0%A4%A"],
      ["GET", "/v1/sessions/%E0%A4%A/saves/latest"],
      ["GET", "/v1/blobs/%E0%A4%A"],
      ["PUT", "/v1/blobs/%E0%A4%A"],
      ["GET", "/v1/%ff"],
      ["GET", "/%"],
    ] as const) {
      const status = await rawStatus(method, path);
      expect(`${method} ${path} ${[400, 404].includes(status)}`).toBe(`${method} ${path} true`);
    }
  });
});
