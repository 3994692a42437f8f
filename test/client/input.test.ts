/**
 * The one reader of what the user types: the same events however the reads cut the input, and,
 * through every way to detach, the same bytes to the program.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Detacher } from "../../src/client/detach.ts";
import { parseDetachKeys } from "../../src/client/escape-keys.ts";
import { InputReader, type InputEvent } from "../../src/client/input.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const latin1 = (u: Uint8Array): string => Buffer.from(u).toString("latin1");
const START = "\x1b[200~";
const END = "\x1b[201~";

/** The events of `reads`, then of the reader giving up on what it holds (the caller's timer). */
function events(reads: Uint8Array[]): InputEvent[] {
  const reader = new InputReader();
  return [...reads.flatMap((r) => reader.feed(r)), ...reader.flush()];
}

/** Events as the user meant them: keys one by one, a paste whole however it came, heads dropped (their key holds them). */
function meant(evs: InputEvent[]): string[] {
  const out: string[] = [];
  let heads = "";
  let pasting: string | null = null;
  for (const ev of evs) {
    const s = latin1(ev.raw);
    switch (ev.kind) {
      case "head":
        heads += s;
        break;
      case "text":
        for (const c of s) out.push(`key ${JSON.stringify(c)}`);
        break;
      case "pasting":
        pasting = (pasting ?? heads) + s;
        heads = "";
        if (pasting.endsWith(END)) {
          out.push(`paste ${JSON.stringify(pasting)}`);
          pasting = null;
        }
        break;
      case "paste":
        out.push(`paste ${JSON.stringify(s)}`);
        break;
      case "cursor":
        out.push(`cursor ${ev.row},${ev.col}`);
        heads = "";
        break;
      case "key":
        out.push(`key ${JSON.stringify(s)}`);
        heads = "";
        break;
    }
  }
  if (pasting !== null) out.push(`paste ${JSON.stringify(pasting)}`);
  return out;
}

/** `text` cut at `cuts` (positions, any order). */
function cut(text: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  const reads: Uint8Array[] = [];
  let from = 0;
  for (const c of [...at, text.length]) {
    reads.push(text.subarray(from, c));
    from = c;
  }
  return reads;
}

describe("bracketed pastes in the input", () => {
  test("a paste whose start marker a read cuts past ESC [ is still one paste, with its text; cut after ESC or ESC [, it goes on as typed", () => {
    // (Before the one reader, the paste catcher passed a start marker cut anywhere as typed:
    // the dropped file was never offered, while the detach keys took it for a paste.)
    const input = enc(`ab${START}/tmp/x.png${END}cd`);
    for (let n = 1; n < START.length; n++) {
      const reads = [input.subarray(0, 2 + n), input.subarray(2 + n)];
      const got = events(reads);
      if (n >= 3) {
        expect(got.map((e) => e.kind), `cut after ${n}`).toEqual(["text", "paste", "text"]);
        expect(got[1]).toMatchObject({ kind: "paste", text: "/tmp/x.png" });
      } else {
        // ESC and ESC [ may be keys of their own (Escape, Alt+[): they went at once.
        expect(got.some((e) => e.kind === "paste"), `cut after ${n}`).toBe(false);
        expect(got.filter((e) => e.kind !== "text").map((e) => latin1(e.raw)).join("")).toBe(`${START}/tmp/x.png${END}`);
      }
    }
  });

  test("found with its text and end cut anywhere across reads", () => {
    const input = enc(`ab${START}/tmp/x.png${END}cd`);
    for (let c = 2 + START.length; c <= input.length; c++) {
      for (let c2 = c; c2 <= input.length; c2 += 3) {
        expect(meant(events([input.subarray(0, c), input.subarray(c, c2), input.subarray(c2)]))).toEqual(meant(events([input])));
      }
    }
    expect(events([input]).find((e) => e.kind === "paste")).toMatchObject({ text: "/tmp/x.png" });
  });

  test("a lone Escape key (and Alt+[, Alt+O) is passed on at once, not held; a sequence cut later is held until its end", () => {
    for (const k of ["\x1b", "\x1b[", "\x1bO"]) {
      const reader = new InputReader();
      expect(reader.feed(enc(k)).map((e) => [e.kind, latin1(e.raw)])).toEqual([["head", k]]);
      expect(reader.holding).toBe(false);
    }
    const reader = new InputReader();
    expect(reader.feed(enc("\x1b[1;5"))).toEqual([]);
    expect(reader.holding).toBe(true);
    expect(reader.feed(enc("A"))).toEqual([{ kind: "key", raw: enc("\x1b[1;5A"), sent: 0 }]);
    // Given up on (the rest never came): what is held goes on, and the key says so.
    expect(reader.feed(enc("\x1b[1;"))).toEqual([]);
    expect(reader.flush().map((e) => [e.kind, latin1(e.raw)])).toEqual([["head", "\x1b[1;"]]);
    expect(reader.feed(enc("5B"))).toEqual([{ kind: "key", raw: enc("\x1b[1;5B"), sent: 4 }]);
  });

  test("a long paste is not held: it passes through as it comes, markers and all", () => {
    const long = "x".repeat(100_000);
    const got = events([enc(`${START}${long.slice(0, 70_000)}`), enc(`${long.slice(70_000)}${END}z`)]);
    expect(got.every((e) => e.kind === "pasting" || e.kind === "text")).toBe(true);
    expect(got.map((e) => latin1(e.raw)).join("")).toBe(`${START}${long}${END}z`);
  });

  test("input without an escape is passed on whole and in order", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 30 }).filter((s) => !s.includes("\x1b"))), (reads) => {
        const got = events(reads.map(enc));
        expect(got.every((e) => e.kind === "text")).toBe(true);
        expect(new TextDecoder().decode(Buffer.concat(got.map((e) => e.raw)))).toBe(reads.join(""));
      }),
    );
  });
});

/** Pieces of input: keys plain and as escape sequences, the escapes' keys, pastes and their markers, cursor reports, stray bytes. */
const PIECES = [
  "a", "b", " ", "é", "\r", "\n", "\t", "~", ".", "?", "\x03", "\x10", "\x11", "\x1b", "[", "O", "2", "0", ";",
  "\x1b[A", "\x1bOA", "\x1bx", "\x1b\r", "\x1b\x03", "\x1b[99;5u", "\x1b[99;5:1u", "\x1b[27;5;99~", "\x1b[99;5:3u",
  "\x1b[57442;5u", "\x1b[I", "\x1b[12;34R", "\x1b[1;5R", START, END, `${START}/tmp/a\\ b.png${END}`, `${START}x\r~.\x03\x03${END}`,
  `\x1b[${"1;".repeat(20)}`,
];

/** Through the reader and every way to detach, one read at a time: what the program gets, the events, the help asked for. */
function attach(reads: Uint8Array[]): { bytes: string; detached: boolean; help: number; events: string[] } {
  const reader = new InputReader();
  const detacher = new Detacher({ detachKeys: parseDetachKeys("ctrl-p,ctrl-q"), now: () => 0 });
  const seen: InputEvent[] = [];
  let bytes = "";
  let detached = false;
  let help = 0;
  const take = (evs: InputEvent[]): void => {
    seen.push(...evs);
    if (detached) return;
    const r = detacher.take(evs);
    bytes += latin1(r.forward);
    detached = r.detach;
    if (r.help) help++;
  };
  for (const r of reads) take(reader.feed(r));
  take(reader.flush());
  return { bytes, detached, help, events: meant(seen) };
}

describe("one reader for every way to detach", () => {
  test("input cut anywhere: the same events, the same detach, and the same bytes to the program", () => {
    const detaching = ["\x1b[99;5u", "\x1b[99;5:1u", "\x1b[27;5;99~"];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...PIECES), { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 12 }), (pieces, cuts) => {
        // (An open paste is held until its end: the input ends every paste it begins.)
        const input = enc(`${pieces.join("")}${END}`);
        const whole = attach([input]);
        const split = attach(cut(input, cuts));
        expect(split.events).toEqual(whole.events);
        expect(split.detached).toBe(whole.detached);
        expect(split.help).toBe(whole.help);
        if (split.bytes === whole.bytes) return;
        // The one difference: a detaching Ctrl+C whose ESC (or ESC [) a read cut off went ahead
        // — those can be keys of their own — so the rest follows and the program gets it whole.
        expect(split.detached).toBe(true);
        expect(split.bytes.startsWith(whole.bytes)).toBe(true);
        expect(detaching).toContain(split.bytes.slice(whole.bytes.length));
      }),
      { numRuns: 2_000 },
    );
  });

  test("nothing consumed: the program gets exactly the bytes typed, however the reads cut them", () => {
    const harmless = PIECES.filter((p) => !/[~\x03\x10]|\x1b\[(99;5|27;5;99)/.test(p));
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...harmless), { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 12 }), (pieces, cuts) => {
        const input = enc(`${pieces.join("")}${END}`);
        const got = attach(cut(input, cuts));
        expect(got.detached).toBe(false);
        expect(got.bytes).toBe(latin1(input));
      }),
      { numRuns: 1_000 },
    );
  });
});
