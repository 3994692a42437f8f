import { describe, expect, test } from "bun:test";
import { DetachDetector } from "../../src/client/ctrl-c-twice.ts";

const b = (s: string): Uint8Array => Buffer.from(s, "latin1");
const s = (u: Uint8Array): string => Buffer.from(u).toString("latin1");

function detector(): { d: DetachDetector; advance(ms: number): void } {
  let now = 1_000;
  return { d: new DetachDetector(1000, () => now), advance: (ms) => (now += ms) };
}

describe("DetachDetector", () => {
  test("one Ctrl+C goes to the program", () => {
    const { d } = detector();
    expect(d.feed(b("\x03"))).toEqual({ forward: b("\x03"), detach: false });
  });

  test("Ctrl+C twice within a second detaches; the second is not sent", () => {
    const { d, advance } = detector();
    d.feed(b("\x03"));
    advance(400);
    const r = d.feed(b("\x03"));
    expect(r.detach).toBe(true);
    expect(s(r.forward)).toBe("");
  });

  test("two Ctrl+C in one read detach", () => {
    const { d } = detector();
    const r = d.feed(b("ab\x03\x03"));
    expect(r.detach).toBe(true);
    expect(s(r.forward)).toBe("ab\x03");
  });

  test("slower than a second, or with a key between, does not detach", () => {
    const { d, advance } = detector();
    d.feed(b("\x03"));
    advance(1500);
    expect(d.feed(b("\x03")).detach).toBe(false);
    advance(100);
    d.feed(b("x"));
    expect(d.feed(b("\x03")).detach).toBe(false);
  });

  test("Ctrl+C inside a bracketed paste never counts", () => {
    const { d } = detector();
    const r = d.feed(b("\x1b[200~a\x03\x03b\x1b[201~"));
    expect(r.detach).toBe(false);
    expect(s(r.forward)).toBe("\x1b[200~a\x03\x03b\x1b[201~");
  });

  test("kitty keyboard protocol Ctrl+C counts too", () => {
    const { d } = detector();
    d.feed(b("\x1b[99;5u"));
    expect(d.feed(b("\x1b[99;5u")).detach).toBe(true);
  });
});

/** Every way to cut `text` into two reads, and into one read per byte. */
function splits(text: string): string[][] {
  const out: string[][] = [[text], [...text]];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

/** Every way to cut `text` into three reads. */
function splits3(text: string): string[][] {
  const out: string[][] = [];
  for (let i = 1; i < text.length; i++) {
    for (let j = i + 1; j < text.length; j++) out.push([text.slice(0, i), text.slice(i, j), text.slice(j)]);
  }
  return out;
}

/** Feeds the reads in order (no time passing); what was forwarded and whether it detached. */
function run(reads: string[]): { forwarded: string; detached: boolean; detachedAt: number } {
  const { d } = detector();
  let forwarded = "";
  for (let n = 0; n < reads.length; n++) {
    const r = d.feed(b(reads[n] as string));
    forwarded += s(r.forward);
    if (r.detach) return { forwarded, detached: true, detachedAt: n };
  }
  return { forwarded, detached: false, detachedAt: -1 };
}

describe("DetachDetector across reads", () => {
  const CTRL_CS = ["\x03", "\x1b[99;5u", "\x1b[99;5:1u", "\x1b[99:67;5u", "\x1b[99;69u", "\x1b[27;5;99~"];

  test("two Ctrl+C of every kind detach however the reads are cut, and the program never gets half a key", () => {
    for (const first of CTRL_CS) {
      for (const second of CTRL_CS) {
        const text = `ab${first}${second}`;
        for (const reads of [...splits(text), ...splits3(text)]) {
          const r = run(reads);
          const where = JSON.stringify(reads);
          expect(r.detached, where).toBe(true);
          expect(r.detachedAt, where).toBe(reads.length - 1);
          // The second Ctrl+C is kept back unless part of it already went out in an earlier read.
          const lastRead = reads.at(-1) as string;
          const secondSplit = lastRead.length < second.length;
          expect(r.forwarded, where).toBe(secondSplit ? text : `ab${first}`);
        }
      }
    }
  });

  test("bracketed paste start and end are recognised however the reads are cut", () => {
    const paste = "\x1b[200~a\x03\x03b\x1b[99;5u\x1b[99;5u\x1b[201~";
    for (const reads of [...splits(paste), ...splits3(paste)]) {
      const r = run(reads);
      expect(r.detached, JSON.stringify(reads)).toBe(false);
      expect(r.forwarded).toBe(paste);
    }
    // After the paste, Ctrl+C counts again: the end was seen.
    for (const reads of splits(`${paste}\x03\x03`)) {
      expect(run(reads).detached, JSON.stringify(reads)).toBe(true);
    }
  });

  test("a paste between two Ctrl+C, cut anywhere, stops them counting", () => {
    const text = "\x03\x1b[200~x\x1b[201~\x03";
    for (const reads of [...splits(text), ...splits3(text)]) {
      expect(run(reads).detached, JSON.stringify(reads)).toBe(false);
    }
  });

  test("other keys between, whole or cut, stop Ctrl+C counting", () => {
    for (const other of ["x", "\x1b[A", "\x1bOA", "\x1bx", "\x1b[97;5u", "\x1b[1;5R", "\x1b[27;5;100~"]) {
      for (const reads of splits(`\x03${other}\x03`)) {
        expect(run(reads).detached, JSON.stringify(reads)).toBe(false);
      }
    }
  });

  test("key releases, lone modifiers and focus events are not another key", () => {
    for (const between of ["\x1b[99;5:3u", "\x1b[57442;5u", "\x1b[57442;5:3u", "\x1b[I", "\x1b[O"]) {
      for (const reads of splits(`\x1b[99;5u${between}\x1b[99;5u`)) {
        expect(run(reads).detached, JSON.stringify(reads)).toBe(true);
      }
    }
  });

  test("an Escape key alone in one read, then Ctrl+C twice, detaches", () => {
    expect(run(["\x1b", "\x03", "\x03"]).detached).toBe(true);
    expect(run(["\x1b", "\x03\x03"]).detached).toBe(true);
  });

  test("an endless escape sequence is given up after a bound and Ctrl+C counts again", () => {
    const { d } = detector();
    d.feed(b(`\x1b[${"1;".repeat(10_000)}`));
    d.feed(b("\x03"));
    expect(d.feed(b("\x03")).detach).toBe(true);
  });
});
