/**
 * The headless-terminal mirror the agent and the CLI share, under each overflow policy: ordinary
 * output is parsed whole whatever the policy; a flood is skipped down to its tail (`skip`) or let
 * go of until a reset (`let-go`).
 */
import { describe, expect, test } from "bun:test";
import { TerminalMirror, type Overflow } from "../../src/lib/terminal-mirror.ts";

const enc = new TextEncoder();

/** The visible rows, once everything written is parsed; null when the mirror cannot say. */
function rows(mirror: TerminalMirror): Promise<string[] | null> {
  return new Promise((resolve) =>
    mirror.afterParse((ok) => {
      if (!ok) return resolve(null);
      const b = mirror.term.buffer.active;
      resolve(Array.from({ length: mirror.term.rows }, (_, y) => b.getLine(b.baseY + y)?.translateToString(true) ?? ""));
    }),
  );
}

const POLICIES: [string, Overflow][] = [
  ["skip", { policy: "skip", keepBytes: 64 * 1024 }],
  ["let-go", { policy: "let-go", maxBytes: 64 * 1024 }],
];

describe.each(POLICIES)("terminal mirror, overflow policy %s", (name, overflow) => {
  test("ordinary output, in many writes, is parsed whole and counted", async () => {
    const mirror = new TerminalMirror({ cols: 30, rows: 4, scrollback: 0, overflow });
    for (let i = 0; i < 200; i++) mirror.write(enc.encode(`line ${i}\r\n`));
    expect(await rows(mirror)).toEqual(["line 197", "line 198", "line 199", ""]);
    expect(mirror.parsed).toBe(mirror.written);
    mirror.dispose();
  });

  test("a paused mirror keeps output until started, and starts after the prefix", async () => {
    const mirror = new TerminalMirror({ cols: 30, rows: 4, scrollback: 0, overflow, paused: true });
    mirror.write("abc");
    expect(await rows(mirror)).toBeNull();
    mirror.start("\x1b[3;5H");
    expect(await rows(mirror)).toEqual(["", "", "    abc", ""]);
    mirror.dispose();
  });

  test("a flood", async () => {
    const mirror = new TerminalMirror({ cols: 30, rows: 4, scrollback: 0, overflow });
    for (let i = 0; i < 20; i++) mirror.write(enc.encode(`flood ${i}\r\n`.repeat(2_000)));
    mirror.write("\x1b[H\x1b[2Jthe end");
    if (name === "skip") {
      // Cut to its tail: the screen is the one a terminal shows after it all.
      expect((await rows(mirror))?.[0]).toBe("the end");
      expect(mirror.skippedBytes).toBeGreaterThan(0);
    } else {
      // Let go of: nothing parsed until a reset, which starts afresh.
      expect(mirror.lost).toBe(true);
      expect(await rows(mirror)).toBeNull();
      mirror.reset();
      mirror.write("after");
      expect((await rows(mirror))?.[0]).toBe("after");
    }
    mirror.dispose();
  });
});
