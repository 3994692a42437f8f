/**
 * The prediction engine against real terminals (xterm, headless): one fed only the program's
 * output (the screen without prediction), one fed the same output with the engine's drawing
 * around it (what the user sees). Programs are simulated line editors — readline-like insert,
 * overwrite, one that echoes uppercase, one that does not echo, one that rewrites its line
 * (history) — typed at with wide characters, at the right margin, with output cut anywhere.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Terminal } from "@xterm/headless";
import { PredictedEcho, Predictor, OutputBoundary, keys, type PredictMode } from "../../src/lib/predict.ts";
import { xtermScreen } from "../../src/lib/terminal-cells.ts";

const enc = new TextEncoder();
const PROMPT = "$ ";

function terminal(cols: number, rows: number): Terminal {
  return new Terminal({ cols, rows, scrollback: 0, allowProposedApi: true, logLevel: "off" });
}

/** Writes and parses at once (the CLI's mirror parses before the engine reads it, too). */
function put(term: Terminal, data: string | Uint8Array): void {
  (term as unknown as { _core: { writeSync(d: string | Uint8Array): void } })._core.writeSync(data);
}

/** Every cell (characters, width, attributes) and the cursor: the screen byte for byte; or only what shows (a space as blank). */
function dump(term: Terminal, opts: { attributes?: boolean } = {}): string[] {
  const s = xtermScreen(term);
  const out: string[] = [];
  for (let y = 0; y < s.rows; y++) {
    let row = "";
    for (let x = 0; x < s.cols; x++) {
      const c = s.cell(x, y);
      row += opts.attributes === false ? `${c.chars.trim() || "·"}` : `[${c.chars}|${c.width}|${c.sgr}]`;
    }
    out.push(row);
  }
  out.push(`cursor ${s.cursorX},${s.cursorY}`);
  return out;
}

type Editor = "insert" | "overwrite" | "upper" | "silent";

/** A line editor: what it writes back for each key, readline-style, on one row. */
class LineEditor {
  private line: string[] = [];
  private pos = 0;
  constructor(
    private readonly kind: Editor,
    private readonly width: (c: string) => number,
    private readonly room: number,
  ) {}

  start(): string {
    return PROMPT;
  }

  key(k: string): string {
    const w = (cs: string[]): number => cs.reduce((n, c) => n + this.width(c), 0);
    const back = (n: number): string => "\b".repeat(n);
    if (k === "\r") {
      this.line = [];
      this.pos = 0;
      return `\r\n${PROMPT}`;
    }
    if (k === "\x1b[A") {
      // History: the line is replaced by another one, redrawn from the row's start.
      this.line = [..."echo hi"];
      this.pos = this.line.length;
      return `\r${PROMPT}${this.line.join("")}\x1b[K`;
    }
    if (this.kind === "silent") {
      if (k.length === 1 && k >= " ") this.line.push(k);
      return "";
    }
    if (k === "\x7f") {
      if (this.pos === 0) return "\x07";
      const gone = this.line.splice(this.pos - 1, 1);
      this.pos--;
      const tail = this.line.slice(this.pos);
      const gw = w(gone);
      return `${back(gw)}${tail.join("")}${" ".repeat(gw)}${back(w(tail) + gw)}`;
    }
    if (k === "\x1b[D") {
      if (this.pos === 0) return "\x07";
      this.pos--;
      return back(w([this.line[this.pos] as string]));
    }
    if (k === "\x1b[C") {
      if (this.pos === this.line.length) return "";
      this.pos++;
      return this.line[this.pos - 1] as string;
    }
    const shown = this.kind === "upper" ? k.toUpperCase() : k;
    if (w(this.line) + this.width(k) > this.room) return "\x07"; // full: refused
    if (this.kind === "overwrite" && this.pos < this.line.length) {
      const old = this.line[this.pos] as string;
      if (this.width(old) !== this.width(k)) return "\x07";
      this.line[this.pos] = k;
      this.pos++;
      return shown;
    }
    this.line.splice(this.pos, 0, k);
    this.pos++;
    const tail = this.line.slice(this.pos);
    return `${shown}${tail.join("")}${back(w(tail))}`;
  }
}

/** A program that writes each character as it comes, letting the terminal wrap (cat, a REPL's echo). */
class Echo {
  start(): string {
    return "";
  }
  key(k: string): string {
    return k.length === 1 || k.codePointAt(0)! > 0xff ? k : "";
  }
}

const KEYS = ["a", "b", "x", " ", "é", "中", "界", "\x7f", "\x1b[D", "\x1b[C"];
const key = fc.constantFrom(...KEYS, ...KEYS, ...KEYS, "\r", "\x1b[A");

interface Run {
  plain: Terminal;
  seen: Terminal;
  echo: PredictedEcho;
  predictor: Predictor;
  now: number;
  /** Output not delivered yet, in order. */
  queue: Uint8Array[];
}

function setUp(cols: number, rows: number, mode: PredictMode, rtt = 150): Run {
  const predictor = new Predictor({ mode });
  predictor.rtt(rtt);
  return { plain: terminal(cols, rows), seen: terminal(cols, rows), echo: new PredictedEcho(predictor), predictor, now: 0, queue: [] };
}

/** The user types `k`: drawn at once, sent to the program (whose answer is queued). */
function type(run: Run, k: string, program: { key(k: string): string }, cuts: number[]): Uint8Array {
  run.now += 10;
  put(run.seen, run.echo.key(k, xtermScreen(run.plain), run.now));
  const out = enc.encode(program.key(k));
  // Cut anywhere, mid-sequence and mid-character included.
  let at = 0;
  for (const cut of cuts) {
    const to = Math.min(out.length, at + cut);
    if (to > at) run.queue.push(out.subarray(at, to));
    at = to;
  }
  if (at < out.length) run.queue.push(out.subarray(at));
  return out;
}

/** The next piece of output reaches the client. */
function deliver(run: Run): void {
  const data = run.queue.shift();
  if (!data) return;
  run.now += 10;
  put(run.seen, run.echo.output(data));
  put(run.seen, data);
  put(run.plain, data);
  put(run.seen, run.echo.settled(xtermScreen(run.plain), run.now));
}

function finish(run: Run): void {
  while (run.queue.length > 0) deliver(run);
  run.now += 10_000;
  put(run.seen, run.echo.tick(xtermScreen(run.plain), run.now));
}

describe("prediction engine", () => {
  test("once the output has arrived, the screen shown equals the screen without prediction, byte for byte", () => {
    fc.assert(
      fc.property(
        fc.record({
          cols: fc.integer({ min: 6, max: 16 }),
          rows: fc.integer({ min: 3, max: 5 }),
          editor: fc.constantFrom<Editor | "echo">("insert", "overwrite", "upper", "silent", "echo"),
          mode: fc.constantFrom<PredictMode>("always", "auto"),
          steps: fc.array(fc.tuple(key, fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 3 }), fc.integer({ min: 0, max: 3 })), { maxLength: 30 }),
        }),
        ({ cols, rows, editor, mode, steps }) => {
          const run = setUp(cols, rows, mode);
          const width = xtermScreen(run.plain).width;
          const program = editor === "echo" ? new Echo() : new LineEditor(editor, width, cols - PROMPT.length - 1);
          const start = enc.encode(program.start());
          put(run.plain, start);
          put(run.seen, start);
          for (const [k, cuts, deliveries] of steps) {
            type(run, k, program, cuts);
            for (let i = 0; i < deliveries; i++) deliver(run);
          }
          finish(run);
          expect(dump(run.seen)).toEqual(dump(run.plain));
          expect(run.predictor.pending).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("a readline-like line editor is predicted right: each key shows at once what its echo will show", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 20 }),
        (typed) => {
          const cols = 40;
          const run = setUp(cols, 3, "always");
          const width = xtermScreen(run.plain).width;
          const program = new LineEditor("insert", width, 30);
          const reference = terminal(cols, 3);
          put(run.plain, PROMPT);
          put(run.seen, PROMPT);
          put(reference, PROMPT);
          for (const k of typed) {
            put(reference, type(run, k, program, []));
            // Before any echo arrives, the user sees what the program will show.
            expect(dump(run.seen, { attributes: false })).toEqual(dump(reference, { attributes: false }));
          }
          while (run.queue.length > 0) deliver(run);
          // Every prediction confirmed by the echo alone, none left drawn.
          expect(run.predictor.pending).toBe(false);
          expect(run.predictor.contradictedCount).toBe(0);
          expect(dump(run.seen)).toEqual(dump(run.plain));
        },
      ),
      { numRuns: 200 },
    );
  });

  test("typing at the right margin wraps onto the next row, as the terminal does", () => {
    const run = setUp(8, 3, "always");
    const program = new Echo();
    const reference = terminal(8, 3);
    for (const k of [..."abcdefgh", "i", "中", "j"]) {
      put(reference, type(run, k, program, []));
      expect(dump(run.seen, { attributes: false }).slice(0, 3)).toEqual(dump(reference, { attributes: false }).slice(0, 3));
    }
    finish(run);
    expect(dump(run.seen)).toEqual(dump(run.plain));
    expect(run.predictor.contradictedCount).toBe(0);
  });

  test("a program that echoes uppercase: the wrong character goes as soon as its echo arrives", () => {
    const run = setUp(20, 3, "always");
    const program = new LineEditor("upper", xtermScreen(run.plain).width, 15);
    put(run.plain, PROMPT);
    put(run.seen, PROMPT);
    type(run, "a", program, []);
    expect(dump(run.seen, { attributes: false })[0]).toStartWith("$·a");
    deliver(run); // one round trip: its echo
    expect(run.predictor.contradictedCount).toBe(1);
    expect(dump(run.seen)).toEqual(dump(run.plain));
    expect(dump(run.seen, { attributes: false })[0]).toStartWith("$·A");
  });

  test("auto: nothing is drawn on a fast link, nor in a context not yet confirmed (a password prompt)", () => {
    const fast = setUp(20, 3, "auto", 5);
    const program = new LineEditor("insert", xtermScreen(fast.plain).width, 15);
    type(fast, "a", program, []);
    expect(dump(fast.seen)).toEqual(dump(terminal(20, 3)));

    const slow = setUp(20, 3, "auto", 150);
    const password = new LineEditor("silent", xtermScreen(slow.plain).width, 15);
    put(slow.plain, "Password: ");
    put(slow.seen, "Password: ");
    for (const k of "secret") {
      type(slow, k, password, []);
      expect(dump(slow.seen)).toEqual(dump(slow.plain));
    }
    finish(slow);
    expect(slow.predictor.confirmedCount).toBe(0);
  });

  test("auto: a prompt whose echo was confirmed is predicted from the first key of the next line", () => {
    const run = setUp(30, 4, "auto", 150);
    const program = new LineEditor("insert", xtermScreen(run.plain).width, 20);
    put(run.plain, PROMPT);
    put(run.seen, PROMPT);
    type(run, "l", program, []);
    expect(dump(run.seen)).toEqual(dump(run.plain)); // new context: tentative
    deliver(run);
    type(run, "s", program, []);
    expect(dump(run.seen, { attributes: false })[0]).toStartWith("$·ls"); // confirmed: drawn
    type(run, "\r", program, []);
    finish(run);
    type(run, "p", program, []);
    expect(dump(run.seen, { attributes: false })[1]).toStartWith("$·p");
    finish(run);
    expect(dump(run.seen)).toEqual(dump(run.plain));
  });

  test("while the link is down, keys show in any context and wait for no deadline; once back, the echo judges them", () => {
    const run = setUp(20, 3, "auto", 5);
    const program = new LineEditor("insert", xtermScreen(run.plain).width, 15);
    put(run.plain, PROMPT);
    put(run.seen, PROMPT);
    run.predictor.setOffline(true, run.now);
    type(run, "a", program, []);
    type(run, "b", program, []);
    expect(dump(run.seen, { attributes: false })[0]).toStartWith("$·ab");
    run.now += 60_000;
    put(run.seen, run.echo.tick(xtermScreen(run.plain), run.now));
    expect(dump(run.seen, { attributes: false })[0]).toStartWith("$·ab");
    run.predictor.setOffline(false, run.now);
    while (run.queue.length > 0) deliver(run);
    expect(run.predictor.pending).toBe(false);
    expect(run.predictor.contradictedCount).toBe(0);
    expect(dump(run.seen)).toEqual(dump(run.plain));
  });

  test("never: nothing predicted", () => {
    const run = setUp(20, 3, "never");
    type(run, "a", new Echo(), []);
    expect(run.predictor.pending).toBe(false);
    expect(dump(run.seen)).toEqual(dump(terminal(20, 3)));
  });

  test("a bracketed paste is not predicted and ends the predictions before it", () => {
    expect(keys("ab\x1b[200~x\x1b[201~").map((k) => k.kind)).toContain("other");
    const run = setUp(20, 3, "always");
    type(run, "a", new Echo(), []);
    expect(run.predictor.pending).toBe(true);
    type(run, "\x1b[200~hello\x1b[201~", new Echo(), []);
    expect(run.predictor.pending).toBe(false);
  });

  test("the output boundary follows sequences and characters cut anywhere", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("a", "中", "\x1b[31m", "\x1b]0;title\x07", "\x1b]8;;x\x1b\\", "\x1b(B", "\x1b7"), { maxLength: 12 }), fc.integer({ min: 1, max: 5 }), (parts, cut) => {
          const b = new OutputBoundary();
          const bytes = enc.encode(parts.join(""));
          for (let i = 0; i < bytes.length; i += cut) b.feed(bytes.subarray(i, i + cut));
          expect(b.atBoundary).toBe(true);
          const mid = new OutputBoundary();
          mid.feed(enc.encode("\x1b[3"));
          expect(mid.atBoundary).toBe(false);
        }),
    );
  });
});
