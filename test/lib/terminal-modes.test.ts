import { describe, expect, test } from "bun:test";
import { ModeTracker } from "../../src/lib/terminal-modes.ts";

describe("ModeTracker", () => {
  test("undoes what the program switched on and is still on", () => {
    const m = new ModeTracker();
    m.feed("\x1b[?1049h\x1b[?1000;1006h\x1b[?2004h\x1b[?1006l");
    const seq = m.restoreSequence();
    expect(seq).toContain("\x1b[?1049l");
    expect(seq).toContain("\x1b[?1000l");
    expect(seq).toContain("\x1b[?2004l");
    expect(seq).not.toContain("\x1b[?1006l");
    expect(seq).toEndWith("\x1b[0m\x1b[?25h");
  });

  test("pops kitty keyboard flags it pushed", () => {
    const m = new ModeTracker();
    m.feed("\x1b[>1u");
    expect(m.restoreSequence()).toContain("\x1b[<u");
  });

  test("a plain program leaves only the basic reset", () => {
    const m = new ModeTracker();
    m.feed("hello\r\n");
    expect(m.restoreSequence()).toBe("\x1b[0m\x1b[?25h");
  });
});

describe("ModeTracker across chunks", () => {
  const STREAMS = [
    "\x1b[?1049h",
    "ab\x1b[?1049hcd\x1b[?1000;1006h\x1b[?2004h\x1b[?1006lxyz",
    "\x1b[>1u\x1b[>5u\x1b[<u\x1b[?1h\x1b=",
    "\x1b[?1049h\x1b]0;a title\x07\x1b[?25l\x1b[?1049l\x1b[?2004h",
    "\x1b[1;31mred\x1b[0m\x1bP+q544e\x1b\\\x1b[?1002h\x1b[<2u",
  ];

  function fed(chunks: string[]): string {
    const m = new ModeTracker();
    for (const c of chunks) m.feed(Buffer.from(c, "latin1"));
    return m.restoreSequence();
  }

  test("a sequence split at every byte boundary is tracked as if whole", () => {
    for (const text of STREAMS) {
      const whole = fed([text]);
      expect(fed([...text])).toBe(whole);
      for (let i = 1; i < text.length; i++) {
        expect(fed([text.slice(0, i), text.slice(i)]), JSON.stringify([text.slice(0, i), text.slice(i)])).toBe(whole);
        for (let j = i + 1; j < text.length; j++) {
          expect(fed([text.slice(0, i), text.slice(i, j), text.slice(j)])).toBe(whole);
        }
      }
    }
  });

  test("the alternate screen switched on across two frames is switched off again", () => {
    expect(fed(["\x1b[?10", "49h"])).toContain("\x1b[?1049l");
    expect(fed(["\x1b[?10", "49h", "\x1b[", "?1049l"])).not.toContain("\x1b[?1049l");
  });

  test("kitty keyboard pushes and pops are counted across frames, pops with a count too", () => {
    expect(fed(["\x1b[>", "1u\x1b[>1", "u"])).toContain("\x1b[<u\x1b[<u");
    expect(fed(["\x1b[>1u\x1b[>1u\x1b[>1u\x1b[<", "2u"]).match(/\x1b\[<u/g)).toHaveLength(1);
  });

  test("sequences that only look like mode changes are not taken for them", () => {
    // A request for the mode's state (DECRQM), text in a window title, an intermediate byte.
    expect(fed(["\x1b[?1049$p", "\x1b]0;[?1049h is not a mode here\x07"])).toBe("\x1b[0m\x1b[?25h");
    expect(fed(["\x1b[?1049 h"])).toBe("\x1b[0m\x1b[?25h");
  });

  test("a huge or endless sequence keeps the state small and tracking goes on after it", () => {
    const m = new ModeTracker();
    m.feed(`\x1b[?${"1;".repeat(100_000)}`);
    m.feed("2004h\x1b[?1049h");
    expect(m.restoreSequence()).toContain("\x1b[?1049l");
    m.feed(`\x1b]0;${"x".repeat(100_000)}`);
    m.feed("\x07\x1b[?1000h");
    expect(m.restoreSequence()).toContain("\x1b[?1000l");
  });

  test("reset forgets a half-read sequence too", () => {
    const m = new ModeTracker();
    m.feed("\x1b[?10");
    m.reset();
    m.feed("49h");
    expect(m.restoreSequence()).toBe("\x1b[0m\x1b[?25h");
  });
});
