/**
 * Servers a test session runs so that forwards have something real to reach (run with bun:
 * `bun test/helpers/port-servers.ts WS SOURCE HALF`, all on 127.0.0.1):
 * - WS: a WebSocket echo server that also serves the files of its working directory (as a dev
 *   server with its hot-reload socket on the same port);
 * - SOURCE: reads a decimal byte count and a newline, then sends that many bytes of `pattern`
 *   (each 8-byte word its own offset, so a byte lost, doubled or out of order shows), then ends;
 * - HALF: reads until the client half-closes, then answers "<bytes> <sha256 hex>\n" and ends;
 * - ECHO (optional fourth port): sends back whatever it reads (request round trips).
 */
import { createHash } from "node:crypto";
import { createServer, type Socket } from "node:net";

/** `length` bytes of the stream at `offset` (a multiple of 8): each 8-byte word is its own offset. */
export function pattern(offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  for (let i = 0; i < length; i += 8) {
    const at = offset + i;
    view.setUint32(i, Math.floor(at / 0x1_0000_0000));
    view.setUint32(i + 4, at >>> 0);
  }
  return out;
}

/** Checks bytes received at `offset` of a `pattern` stream (any alignment); the first bad offset, or -1. */
export function checkPattern(offset: number, data: Uint8Array): number {
  const start = offset - (offset % 8);
  const expected = pattern(start, Math.ceil((offset + data.length - start) / 8) * 8).subarray(offset - start, offset - start + data.length);
  if (Buffer.compare(Buffer.from(expected.buffer, expected.byteOffset, expected.length), Buffer.from(data.buffer, data.byteOffset, data.length)) === 0) return -1;
  for (let i = 0; i < data.length; i++) if (data[i] !== expected[i]) return offset + i;
  return -1;
}

function source(socket: Socket): void {
  let line = "";
  socket.on("data", function first(chunk: Buffer) {
    line += chunk.toString();
    if (!line.includes("\n")) return;
    socket.off("data", first);
    const total = Number(line.split("\n")[0]);
    let sent = 0;
    const step = 256 * 1024;
    const more = (): void => {
      while (sent < total) {
        const n = Math.min(step, total - sent);
        const ok = socket.write(pattern(sent, n));
        sent += n;
        if (!ok) return void socket.once("drain", more);
      }
      socket.end();
    };
    more();
  });
  socket.on("error", () => {});
}

function half(socket: Socket): void {
  const hash = createHash("sha256");
  let bytes = 0;
  socket.on("data", (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  socket.on("end", () => socket.end(`${bytes} ${hash.digest("hex")}\n`));
  socket.on("error", () => {});
}

if (import.meta.main) {
  const [ws, src, hf, echo] = process.argv.slice(2).map(Number);
  Bun.serve({
    hostname: "127.0.0.1",
    port: ws,
    fetch: (req, server) => {
      if (server.upgrade(req)) return undefined;
      const path = new URL(req.url).pathname;
      const name = path === "/" ? "index.html" : path.slice(1);
      if (!/^[\w.-]+$/.test(name) || name.startsWith(".")) return new Response("not found", { status: 404 });
      return new Response(Bun.file(name));
    },
    websocket: { maxPayloadLength: 64 * 1024 * 1024, message: (sock, m) => void sock.send(m) },
  });
  createServer({ allowHalfOpen: true }, source).listen(src, "127.0.0.1");
  createServer({ allowHalfOpen: true }, half).listen(hf, "127.0.0.1");
  if (echo) {
    createServer((socket) => {
      socket.setNoDelay(true);
      socket.on("error", () => {});
      socket.pipe(socket);
    }).listen(echo, "127.0.0.1");
  }
}
