import { describe, expect, test } from "bun:test";
import { DetachDetector } from "../../src/client/keys.ts";

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
