/**
 * The attached client's display against a terminal: everything it writes goes into a headless
 * xterm standing for the user's terminal, which already holds the lines catty printed before
 * attaching. After a notice comes and goes, that terminal must show exactly what it would have
 * shown without the notice — catty's own lines included — without a repaint from the session.
 */
import { describe, expect, test } from "bun:test";
import { SerializeAddon } from "@xterm/addon-serialize";
import { Terminal } from "@xterm/headless";
import { Display } from "../../src/client/display.ts";
import type { PredictMode } from "../../src/lib/predict.ts";
import { CursorReportReader } from "../../src/client/cursor-report.ts";
import { LocalScreen, serializeRow } from "../../src/client/local-screen.ts";
import { waitFor } from "../helpers/wait.ts";

const BEFORE = "$ catty new -- bash\r\n\x1b[32m✔\x1b[0m Session brave-tiger-1234 started. Reconnect with `catty connect brave-tiger-1234`.\r\n";

class Term {
  readonly t: Terminal;
  private readonly ser = new SerializeAddon();
  constructor(cols: number, rows: number) {
    this.t = new Terminal({ cols, rows, scrollback: 0, allowProposedApi: true });
    this.t.loadAddon(this.ser);
  }
  write(data: Uint8Array | string): void {
    this.t.write(typeof data === "string" ? data : data.slice());
  }
  flush(): Promise<void> {
    return new Promise((resolve) => this.t.write("", resolve));
  }
  /** The screen with attributes, the cursor and the modes: equal strings, equal screens. */
  async state(): Promise<string> {
    await this.flush();
    const b = this.t.buffer.active;
    return `${this.ser.serialize({ scrollback: 0 })}|cursor=${b.cursorX},${b.cursorY}|${b.type}`;
  }
  async text(): Promise<string[]> {
    await this.flush();
    const b = this.t.buffer.active;
    const rows: string[] = [];
    for (let y = 0; y < this.t.rows; y++) rows.push(b.getLine(b.baseY + y)?.translateToString(true) ?? "");
    return rows;
  }
  resize(cols: number, rows: number): void {
    this.t.resize(cols, rows);
  }
}

/** A display writing into `real`, which starts with catty's own lines; `reference` gets the same minus catty's notices. */
async function setup(opts: { cols?: number; rows?: number; anchored?: boolean; maxBacklogBytes?: number; noticeMs?: number; predict?: PredictMode } = {}) {
  let cols = opts.cols ?? 60;
  let rows = opts.rows ?? 12;
  const real = new Term(cols, rows);
  const reference = new Term(cols, rows);
  real.write(BEFORE);
  reference.write(BEFORE);
  await real.flush();
  let repaints = 0;
  const display = new Display({
    out: { write: (d) => real.write(d) },
    size: () => ({ cols, rows }),
    repaint: () => repaints++,
    statusDelayMs: 10,
    // Notices are cleared by the tests (status("") clears one too), except where the timer is tested.
    noticeMs: opts.noticeMs ?? 600_000,
    maxBacklogBytes: opts.maxBacklogBytes,
    predict: opts.predict,
  });
  const b = real.t.buffer.active;
  display.anchor(opts.anchored === false ? null : { row: b.cursorY, col: b.cursorX });
  return {
    real,
    reference,
    display,
    repaints: () => repaints,
    output(text: string) {
      const bytes = new TextEncoder().encode(text);
      display.output(bytes);
      reference.write(bytes);
    },
    resize(c: number, r: number) {
      cols = c;
      rows = r;
      real.resize(c, r);
      reference.resize(c, r);
      display.resize(c, r);
    },
    /** Shows a notice, then clears it and waits until its row is put back. */
    async noticeCycle(message = "sync-back on: the session's changes appear in /tmp/x") {
      display.notice(message);
      expect((await real.text()).at(-1)).toContain("catty: sync-back on");
      display.status("");
      await display.settled();
      expect((await real.text()).some((l) => l.includes("catty:"))).toBe(false);
    },
  };
}

describe("Display: a notice goes without a trace", () => {
  test("catty's own lines and the prompt stay, once, and nothing is repainted", async () => {
    const s = await setup();
    s.output("bash-5.2$ ");
    await s.noticeCycle();
    const rows = await s.real.text();
    expect(rows[0]).toBe("$ catty new -- bash");
    expect(rows[1]).toContain("Session brave-tiger-1234 started");
    expect(rows.filter((r) => r.includes("bash-5.2$"))).toHaveLength(1);
    expect(await s.real.state()).toBe(await s.reference.state());
    expect(s.repaints()).toBe(0);
  });

  test("a full, coloured bottom row comes back cell for cell", async () => {
    const s = await setup();
    for (let i = 0; i < 20; i++) s.output(`\x1b[3${i % 8};4${(i + 3) % 8}mline ${i}\x1b[1m bold\x1b[0m \x1b[38;2;10;20;30mrgb\x1b[48;5;200m256 世界\x1b[0m\r\n`);
    // Not up to the last column: there the cursor waits to wrap, which no save/restore keeps.
    s.output("\x1b[7m inverse status bar across the width ".padEnd(70, "=").slice(0, 58));
    await s.noticeCycle();
    expect(await s.real.state()).toBe(await s.reference.state());
  });

  test("output during the notice, also over its row, ends as it would have without it", async () => {
    const s = await setup();
    s.output("one\r\ntwo\r\n");
    s.display.notice("sync-back on");
    for (let i = 0; i < 15; i++) s.output(`more ${i}\x1b[K\r\n`);
    s.output("\x1b[12;5Hover the notice row\x1b[3;1H");
    s.display.status("");
    // Output while the row is being put back is held, then follows in order.
    s.output("\x1b[12;1Hlater");
    await s.display.settled();
    expect(await s.real.state()).toBe(await s.reference.state());
  });

  test("a notice goes by itself after its time", async () => {
    const s = await setup({ noticeMs: 20 });
    s.output("bash-5.2$ ");
    s.display.notice("view only: your input is not sent");
    await waitFor(async () => (await s.real.state()) === (await s.reference.state()), { what: "the notice gone" });
    expect(s.repaints()).toBe(0);
  });

  test("a full-screen program in the alternate screen", async () => {
    const s = await setup();
    s.output("\x1b[?1049h\x1b[H\x1b[2J");
    for (let y = 1; y <= 12; y++) s.output(`\x1b[${y};1H\x1b[44m~ row ${y}\x1b[K\x1b[0m`);
    s.output("\x1b[5;3H");
    await s.noticeCycle();
    expect(await s.real.state()).toBe(await s.reference.state());
    s.output("\x1b[?1049l");
    expect(await s.real.state()).toBe(await s.reference.state());
  });

  test("the mirror follows resizes", async () => {
    const s = await setup();
    s.output(`${"x".repeat(50)}\r\nprompt$ `);
    s.resize(40, 8);
    s.output("\r\nafter resize\r\n");
    await s.noticeCycle();
    expect(await s.real.state()).toBe(await s.reference.state());
  });

  test("a status shown for a problem goes the same way when the problem is over", async () => {
    const s = await setup();
    s.output("bash-5.2$ ");
    s.display.status("Connection lost; reconnecting…");
    await waitFor(async () => (await s.real.text()).some((l) => l.includes("catty: Connection lost")), { what: "status" });
    s.display.status("");
    await s.display.settled();
    expect(await s.real.state()).toBe(await s.reference.state());
  });

  test("without a cursor report, the session is asked for its screen; a painted screen anchors the mirror", async () => {
    const s = await setup({ anchored: false });
    s.output("bash-5.2$ ");
    await s.noticeCycle();
    expect(s.repaints()).toBe(1);
    s.display.paint("\x1b[1;1Hbash-5.2$ ");
    await s.noticeCycle();
    expect(s.repaints()).toBe(1);
  });

  test("a flood makes the mirror let go (nothing parsed), and the next paint brings it back", async () => {
    const s = await setup({ maxBacklogBytes: 64 * 1024 });
    const flood = new TextEncoder().encode("y\r\n".repeat(100_000));
    s.display.output(flood);
    await s.noticeCycle();
    expect(s.repaints()).toBe(1);
    s.display.paint("\x1b[Hscreen after the flood");
    await s.noticeCycle();
    expect(s.repaints()).toBe(1);
  });
});

describe("Display: predicted echo", () => {
  const enc = (t: string): Uint8Array => new TextEncoder().encode(t);
  /** Whether the cell right of "bash-5.2$ " on the prompt's row holds `chars`, and underlined. */
  const typedCell = (s: Awaited<ReturnType<typeof setup>>, chars: string): { chars: string; underlined: boolean } | null => {
    const b = s.real.t.buffer.active;
    const y = b.baseY + b.cursorY;
    const c = b.getLine(y)?.getCell("bash-5.2$ ".length);
    return c && c.getChars() === chars ? { chars, underlined: c.isUnderline() === 1 } : null;
  };

  test("a key shows at once, underlined; its echo leaves the terminal as without prediction, a notice meanwhile too", async () => {
    const s = await setup({ predict: "always" });
    s.output("bash-5.2$ ");
    s.display.rtt(150);
    s.display.typed(enc("l"));
    await s.real.flush();
    expect(await waitFor(() => typedCell(s, "l"), { what: "the prediction" })).toEqual({ chars: "l", underlined: true });
    s.display.typed(enc("s"));
    await s.noticeCycle();
    s.output("l");
    s.output("s");
    await waitFor(async () => (await s.real.state()) === (await s.reference.state()), { what: "the screen without prediction" });
  });

  test("a program that echoes uppercase: the wrong character goes as its echo arrives", async () => {
    const s = await setup({ predict: "always" });
    s.output("bash-5.2$ ");
    s.display.rtt(150);
    s.display.typed(enc("a"));
    await waitFor(() => typedCell(s, "a"), { what: "the prediction" });
    s.output("A");
    await waitFor(async () => (await s.real.state()) === (await s.reference.state()), { what: "the true screen" });
    expect(typedCell(s, "A")).toEqual({ chars: "A", underlined: false });
  });

  test("typing while the link is down: shown at once though the link is slow to come back, then the echo ends it as without prediction", async () => {
    const s = await setup({ predict: "auto" });
    s.output("bash-5.2$ ");
    s.display.rtt(2);
    s.display.offline(true);
    s.display.status("Connection lost; reconnecting…");
    for (const c of "echo hi") s.display.typed(enc(c));
    await waitFor(async () => (await s.real.text()).some((l) => l.startsWith("bash-5.2$ echo hi")), { what: "the typing shown" });
    await waitFor(async () => (await s.real.text()).at(-1)?.includes("catty: Connection lost"), { what: "the status" });
    s.display.typed(enc("\r"));
    s.display.offline(false);
    s.display.status("");
    s.output("echo hi\r\nhi\r\nbash-5.2$ ");
    await s.display.settled();
    await waitFor(async () => (await s.real.state()) === (await s.reference.state()), { what: "the screen without prediction", timeoutMs: 3_000 }).catch(async (e) => {
      console.log(JSON.stringify(await s.real.text()), JSON.stringify(await s.reference.text()), await s.real.state());
      throw e;
    });
  });

  test("auto on a fast link draws nothing", async () => {
    const s = await setup({ predict: "auto" });
    s.output("bash-5.2$ ");
    s.display.rtt(2);
    s.display.typed(enc("l"));
    expect(s.display.predicting).toBe("off below 30 ms");
    expect(await s.real.state()).toBe(await s.reference.state());
  });
});

describe("Display: a question", () => {
  test("covers the bottom rows with every path in full, holds the output meanwhile, and goes without a trace", async () => {
    const s = await setup({ cols: 40, rows: 10 });
    for (let i = 0; i < 12; i++) s.output(`\x1b[3${i % 8}mline ${i}\x1b[0m\r\n`);
    s.output("prompt> ");
    const long = `/home/me/Pictures/${"very-long-name-".repeat(3)}shot.png`;
    s.display.ask(["upload these 2 files to the session? Enter uploads · Esc pastes the text", `  ${long}`, "  /home/me/notes.md"]);
    // Output meanwhile is held: it would draw over the question.
    s.output("\x1b[10;1Hdrawn over the bottom row\x1b[1;1H");
    const shown = (await s.real.text()).join("\n");
    expect(shown.replace(/\n/g, "")).toContain(long);
    expect(shown).toContain("/home/me/notes.md");
    expect(shown).toContain("catty: upload these 2 files");
    expect(shown).not.toContain("drawn over");
    // Notices do not cover it.
    s.display.notice("sync-back on");
    expect((await s.real.text()).join("\n")).not.toContain("sync-back on");
    s.display.endQuestion();
    await s.display.settled();
    expect(await s.real.state()).toBe(await s.reference.state());
    expect(s.repaints()).toBe(0);
  });

  test("a question fits when all its lines, wrapped, leave the program a row", async () => {
    const s = await setup({ cols: 40, rows: 10 });
    const paths = (n: number): string[] => ["upload? Enter uploads · Esc pastes the text", ...Array.from({ length: n }, (_, i) => `  /home/me/Pictures/shot-${i}.png`)];
    expect(s.display.questionFits(paths(3))).toBe(true);
    expect(s.display.questionFits(paths(9))).toBe(false);
    // Long paths take two rows each here.
    expect(s.display.questionFits(["upload?", ...Array.from({ length: 4 }, () => `  /${"x".repeat(45)}.png`)])).toBe(true);
    expect(s.display.questionFits(["upload?", ...Array.from({ length: 5 }, () => `  /${"x".repeat(45)}.png`)])).toBe(false);
  });

  test("a program flooding while the question waits is not kept in memory: once answered, the session is asked for its screen", async () => {
    const s = await setup({ maxBacklogBytes: 64 * 1024 });
    s.output("prompt> ");
    s.display.ask(["upload this file to the session? Enter uploads · Esc pastes the text", "  /tmp/a.png"]);
    s.display.output(new TextEncoder().encode("FLOOD\r\n".repeat(30_000)));
    expect((await s.real.text()).join("\n")).not.toContain("FLOOD");
    s.display.endQuestion();
    await s.display.settled();
    expect(s.repaints()).toBe(1);
    expect((await s.real.text()).join("\n")).not.toContain("catty:");
  });

  test("going away with the question open leaves the terminal as the program left it", async () => {
    const s = await setup();
    s.output("prompt> ");
    s.display.ask(["upload this file to the session? Enter uploads · Esc pastes the text", "  /tmp/a.png"]);
    s.output("output while asking\r\n");
    s.display.dispose();
    const shown = (await s.real.text()).join("\n");
    expect(shown).not.toContain("catty:");
    expect(shown).toContain("output while asking");
  });
});

describe("LocalScreen", () => {
  test("waits for its anchor before parsing, then starts at the reported cursor", async () => {
    const screen = new LocalScreen(20, 5);
    screen.write("abc");
    expect(await screen.row(2)).toBeNull();
    screen.anchor(2, 4);
    expect(await screen.row(2)).toBe("\x1b[0m\x1b[4Cabc");
    screen.dispose();
  });

  test("serializeRow keeps colours and wide characters", async () => {
    const t = new Terminal({ cols: 10, rows: 2, allowProposedApi: true });
    await new Promise<void>((r) => t.write("\x1b[31mr\x1b[0m 世\x1b[44m \x1b[0m", r));
    expect(serializeRow(t, 0)).toBe("\x1b[0m\x1b[0;31mr\x1b[0m 世\x1b[0;44m \x1b[0m");
    await new Promise<void>((r) => t.write("\r\n\x1b[42mab\x1b[3X\x1b[5Cc\x1b[0m", r));
    // Cells erased in green are erased again in green; untouched ones are skipped.
    expect(serializeRow(t, 1)).toBe("\x1b[0m\x1b[0;42mab\x1b[3X\x1b[3C\x1b[2Cc\x1b[0m");
  });
});

describe("CursorReportReader", () => {
  const b = (s: string): Uint8Array => Buffer.from(s, "latin1");
  const s = (u: Uint8Array | null): string | null => (u === null ? null : Buffer.from(u).toString("latin1"));

  test("picks the answer out of the input, cut anywhere, typeahead kept in order", () => {
    const input = "ab\x1b[12;34Rcd";
    for (let i = 0; i <= input.length; i++) {
      const r = new CursorReportReader();
      const first = s(r.feed(b(input.slice(0, i))));
      const second = s(r.feed(b(input.slice(i))));
      expect(r.position).toEqual({ row: 11, col: 33 });
      expect(`${first ?? ""}${second ?? ""}`).toBe("abcd");
      expect(r.waiting).toBe(false);
    }
  });

  test("gives up on input that holds no answer, passing it all on", () => {
    const r = new CursorReportReader();
    expect(r.feed(b("typed"))).toBeNull();
    expect(s(r.giveUp())).toBe("typed");
    expect(s(r.feed(b("\x1b[1;1R")))).toBe("\x1b[1;1R");
    expect(r.position).toBeNull();
    const long = new CursorReportReader();
    expect(s(long.feed(b("x".repeat(300))))).toBe("x".repeat(300));
  });
});
