/**
 * The screen mirror under floods: xterm is never handed more than it can hold, a snapshot always
 * comes, and after a flood the screen is the one a terminal shows — in the modes the skipped
 * output switched on.
 */
import { describe, expect, test } from "bun:test";
import { Terminal } from "@xterm/headless";
import { ScreenMirror } from "../../agent/screen.ts";

const enc = new TextEncoder();

/** Writes `text` to the mirror as the agent does, numbering it from `at`. */
function feed(mirror: ScreenMirror, text: string, at: number): number {
  const bytes = enc.encode(text);
  mirror.write(bytes, at + bytes.length);
  return at + bytes.length;
}

/** What a terminal of that size shows after replaying a snapshot. */
async function shown(data: string, cols: number, rows: number): Promise<{ lines: string[]; alternate: boolean }> {
  const term = new Terminal({ cols, rows, allowProposedApi: true });
  await new Promise<void>((resolve) => term.write(data, resolve));
  const buf = term.buffer.active;
  const lines: string[] = [];
  for (let y = 0; y < rows; y++) lines.push(buf.getLine(buf.viewportY + y)?.translateToString(true) ?? "");
  const alternate = buf.type === "alternate";
  term.dispose();
  return { lines, alternate };
}

describe("screen mirror", () => {
  test("ordinary output: the snapshot is the exact screen, valid at the end of the output", async () => {
    const mirror = new ScreenMirror(40, 5);
    const end = feed(mirror, "one\r\ntwo\r\nthree", 0);
    const snap = await mirror.snapshot();
    expect(snap.offset).toBe(end);
    expect((await shown(snap.data, 40, 5)).lines.slice(0, 3)).toEqual(["one", "two", "three"]);
    expect(mirror.skippedBytes).toBe(0);
    mirror.dispose();
  });

  test("a 120 MB flood written faster than it parses: nothing throws, and the screen shows the flood's last lines", async () => {
    const mirror = new ScreenMirror(80, 24);
    let at = 0;
    const line = (n: number): string => `line ${String(n).padStart(9, "0")} ${"x".repeat(40)}\r\n`;
    // 2 MB per write, no pause between: far faster than any parser.
    let n = 0;
    while (at < 120 * 1024 * 1024) {
      let chunk = "";
      while (chunk.length < 2 * 1024 * 1024) chunk += line(n++);
      at = feed(mirror, chunk, at);
    }
    const snap = await mirror.snapshot({ scrollback: 0 });
    expect(snap.offset).toBe(at);
    expect(mirror.skippedBytes).toBeGreaterThan(100 * 1024 * 1024);
    const { lines } = await shown(snap.data, 80, 24);
    // The last line written is on the row above the cursor (the flood ends with a newline).
    expect(lines[22]).toBe(line(n - 1).trimEnd());
    expect(lines[0]).toBe(line(n - 23).trimEnd());
    mirror.dispose();
  }, 60_000);

  test("a flood inside the alternate screen: after the skip the mirror is still on the alternate screen", async () => {
    const mirror = new ScreenMirror(60, 10);
    let at = feed(mirror, "normal screen text\r\n\x1b[?1049h\x1b[H", 0);
    let n = 0;
    while (at < 8 * 1024 * 1024) {
      let chunk = "";
      while (chunk.length < 1024 * 1024) chunk += `row ${n++}\r\n`;
      at = feed(mirror, chunk, at);
    }
    at = feed(mirror, "\x1b[H\x1b[2JFULLSCREEN", at);
    const snap = await mirror.snapshot();
    expect(mirror.skippedBytes).toBeGreaterThan(0);
    const { lines, alternate } = await shown(snap.data, 60, 10);
    expect(alternate).toBe(true);
    expect(lines[0]).toBe("FULLSCREEN");
    mirror.dispose();
  }, 60_000);

  test("a snapshot asked for during a flood comes, valid at an offset the ring can replay from", async () => {
    const mirror = new ScreenMirror(80, 24);
    let at = 0;
    const asked = at;
    const snap = mirror.snapshot();
    for (let i = 0; i < 50; i++) at = feed(mirror, `${"y\r\n".repeat(100_000)}`, at);
    const got = await snap;
    expect(got.offset).toBeGreaterThanOrEqual(asked);
    expect(got.offset).toBeLessThanOrEqual(at);
    mirror.dispose();
  });
});
