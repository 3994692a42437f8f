import { describe, expect, test } from "bun:test";
import { ModeTracker } from "../../src/client/modes.ts";

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
