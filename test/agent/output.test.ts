import { afterEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Output } from "../../agent/output.ts";
import { silentLog } from "../../src/lib/log.ts";
import { FakeLink } from "../helpers/fake-link.ts";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

const made: Output[] = [];
afterEach(() => {
  for (const o of made.splice(0)) o.dispose();
});

function output(ringBytes = 1024, cols = 40, rows = 5): { out: Output; link: FakeLink } {
  const link = new FakeLink();
  link.connected = true;
  const out = new Output({ ringBytes, cols, rows, send: (d) => link.send(d), sendMessage: (m) => link.sendMessage(m), log: silentLog });
  made.push(out);
  return { out, link };
}

/** The frames sent to one client, joined, with the offset of the first. */
function replayed(link: FakeLink, clientId: number): { from: number | null; data: string } {
  const frames = link.frames().filter((f) => f.clientId === clientId);
  let expect = frames[0]?.offset ?? null;
  for (const f of frames) {
    if (f.offset !== expect) throw new Error(`frame at ${f.offset}, expected ${expect}`);
    expect = f.offset + f.data.length;
  }
  return { from: frames[0]?.offset ?? null, data: text(Buffer.concat(frames.map((f) => f.data))) };
}

describe("catch-up", () => {
  test("live output goes to every client (id 0), numbered by stream offset", () => {
    const { out, link } = output();
    out.write(bytes("hello "));
    out.write(bytes("world"));
    expect(link.frames().map((f) => [f.clientId, f.offset, text(f.data)])).toEqual([
      [0, 0, "hello "],
      [0, 6, "world"],
    ]);
    expect(out.end).toBe(11);
  });

  test("a client whose offset is still in the ring gets exactly the missing bytes, then synced", async () => {
    const { out, link } = output();
    out.write(bytes("one\r\n"));
    out.write(bytes("two\r\n"));
    out.write(bytes("three\r\n"));
    link.clear();
    expect(await out.catchUp(7, 5)).toBe(true);
    expect(replayed(link, 7)).toEqual({ from: 5, data: "two\r\nthree\r\n" });
    expect(link.messages("screen")).toEqual([]);
    expect(link.messages().at(-1)).toEqual({ type: "synced", clientId: 7, offset: 17 });
  });

  test("a client that has everything gets no bytes, just synced", async () => {
    const { out, link } = output();
    out.write(bytes("all of it"));
    link.clear();
    await out.catchUp(3, 9);
    expect(link.frames()).toEqual([]);
    expect(link.messages()).toEqual([{ type: "synced", clientId: 3, offset: 9 }]);
  });

  test("a client too far behind gets the screen, the bytes after it, then synced", async () => {
    const { out, link } = output(16);
    for (let i = 0; i < 10; i++) out.write(bytes(`line ${i}\r\n`));
    expect(out.ring.start).toBeGreaterThan(0);
    link.clear();
    await out.catchUp(9, 0);
    const [screen, ...rest] = link.messages();
    if (screen?.type !== "screen") throw new Error(`expected a screen first, got ${JSON.stringify(screen)}`);
    expect(screen.clientId).toBe(9);
    expect(screen.data).toContain("line 9");
    expect([screen.cols, screen.rows]).toEqual([40, 5]);
    // The screen is valid at its offset; whatever came after it follows as bytes.
    const tail = replayed(link, 9);
    if (tail.from !== null) expect(tail.from).toBe(screen.offset);
    expect(screen.offset + tail.data.length).toBe(out.end);
    expect(rest.at(-1)).toEqual({ type: "synced", clientId: 9, offset: out.end });
  });

  test("a new client (no offset) and a repaint get the screen; the repaint without scrollback", async () => {
    const { out, link } = output(1024, 20, 3);
    for (let i = 0; i < 8; i++) out.write(bytes(`row ${i}\r\n`));
    link.clear();
    await out.catchUp(1, null);
    await out.catchUp(2, null, true);
    const [full, repaint] = link.messages("screen");
    expect(full?.data).toContain("row 0");
    expect(repaint?.data).not.toContain("row 0");
    expect(repaint?.data).toContain("row 7");
  });

  test("a long replay goes out in chunks with the right offsets", async () => {
    const { out, link } = output(2 * 1024 * 1024);
    const big = "x".repeat(700 * 1024);
    out.write(bytes("head"));
    out.write(bytes(big));
    link.clear();
    await out.catchUp(5, 4);
    const frames = link.frames().filter((f) => f.clientId === 5);
    expect(frames.length).toBe(3);
    expect(replayed(link, 5)).toEqual({ from: 4, data: big });
  });

  test("property: any client gets a stream that continues exactly where live output continues", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 16, max: 400 }),
        fc.nat(),
        async (chunks, ringBytes, pick) => {
          const { out, link } = output(ringBytes);
          for (const c of chunks) out.write(bytes(c));
          const all = Buffer.concat(link.frames().map((f) => f.data));
          const offset = pick % (out.end + 1);
          link.clear();
          await out.catchUp(1, offset);
          const synced = link.messages("synced")[0];
          expect(synced?.offset).toBe(out.end);
          const screen = link.messages("screen")[0];
          const got = replayed(link, 1);
          if (screen) {
            // Only when the ring no longer holds the offset.
            expect(offset).toBeLessThan(out.ring.start);
            expect(got.data).toBe(text(all.subarray(screen.offset)));
          } else {
            expect(got.data).toBe(text(all.subarray(offset)));
          }
          out.dispose();
        },
      ),
      { numRuns: 60 },
    );
  });
});
