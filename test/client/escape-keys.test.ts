import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { describeDetachKeys, EscapeKeys, parseDetachKeys } from "../../src/client/escape-keys.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Feeds each string as one read; returns what went on, and whether (and after which read) it detached. */
function feed(k: EscapeKeys, ...reads: string[]): { sent: string; detachedAt: number; help: boolean } {
  let sent = "";
  let help = false;
  for (const [i, r] of reads.entries()) {
    const res = k.feed(enc(r));
    sent += dec(res.forward);
    help ||= res.help;
    if (res.detach) return { sent, detachedAt: i, help };
  }
  return { sent, detachedAt: -1, help };
}

describe("ssh-style escapes", () => {
  test("Enter ~ . detaches and nothing of it reaches the program; also before anything was typed", () => {
    expect(feed(new EscapeKeys(), "ls\r", "~", ".")).toEqual({ sent: "ls\r", detachedAt: 2, help: false });
    expect(feed(new EscapeKeys(), "~.")).toEqual({ sent: "", detachedAt: 0, help: false });
  });

  test("~~ sends one ~; ~? asks for help; ~ and another key go on; ~ mid-line is just a ~", () => {
    expect(feed(new EscapeKeys(), "\r~~/x")).toMatchObject({ sent: "\r~/x", detachedAt: -1 });
    expect(feed(new EscapeKeys(), "\r~?")).toMatchObject({ sent: "\r", help: true, detachedAt: -1 });
    expect(feed(new EscapeKeys(), "\r~a")).toMatchObject({ sent: "\r~a", detachedAt: -1 });
    expect(feed(new EscapeKeys(), "cd ~.", "\r")).toMatchObject({ sent: "cd ~.\r", detachedAt: -1 });
  });

  test("pasted text and escape sequences are never read as escapes", () => {
    expect(feed(new EscapeKeys(), "\x1b[200~a\r~.b\x1b[201~")).toMatchObject({ sent: "\x1b[200~a\r~.b\x1b[201~", detachedAt: -1 });
    // An arrow key after Enter: the line start is gone.
    expect(feed(new EscapeKeys(), "\r\x1b[A~.")).toMatchObject({ sent: "\r\x1b[A~.", detachedAt: -1 });
  });

  test("any input without ~ passes through unchanged (the same bytes)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }).filter((a) => !a.includes(0x7e)), (bytes) => {
        const k = new EscapeKeys();
        const r = k.feed(bytes);
        expect(r.detach).toBe(false);
        expect(r.forward).toEqual(bytes);
      }),
    );
  });
});

describe("detach keys", () => {
  test("ctrl-p,ctrl-q detaches across reads; a broken match sends the held key on", () => {
    const keys = parseDetachKeys("ctrl-p,ctrl-q");
    expect([...keys]).toEqual([0x10, 0x11]);
    expect(feed(new EscapeKeys(keys), "ab\x10", "\x11")).toMatchObject({ sent: "ab", detachedAt: 1 });
    expect(feed(new EscapeKeys(keys), "\x10x")).toMatchObject({ sent: "\x10x", detachedAt: -1 });
    expect(feed(new EscapeKeys(keys), "\x10\x10\x11")).toMatchObject({ sent: "\x10", detachedAt: 0 });
  });

  test("a held detach key goes on before the key that broke the match, also when the read is as long as what goes on", () => {
    // (It used to send the read as it came, "a" before the held Ctrl+P, when the lengths matched.)
    const keys = parseDetachKeys("ctrl-p,ctrl-q");
    expect(feed(new EscapeKeys(keys), "\x10", "a\x10", "x")).toMatchObject({ sent: "\x10a\x10x", detachedAt: -1 });
    expect(feed(new EscapeKeys(keys), "\x10", "a\x10", "\x11")).toMatchObject({ sent: "\x10a", detachedAt: 2 });
  });

  test("parsing and describing; bad specs say what is allowed", () => {
    expect([...parseDetachKeys("ctrl-a,d")]).toEqual([1, 0x64]);
    expect([...parseDetachKeys("ctrl-@,ctrl-]")]).toEqual([0, 0x1d]);
    expect(describeDetachKeys(parseDetachKeys("ctrl-p,ctrl-q"))).toBe("Ctrl+P Ctrl+Q");
    expect(() => parseDetachKeys("ctrl-1")).toThrow(/Invalid detach keys "ctrl-1"/);
    expect(() => parseDetachKeys("alt-x")).toThrow(/"alt-x" is not a key/);
    try {
      parseDetachKeys("alt-x");
    } catch (err) {
      expect((err as { hint?: string }).hint).toContain("ctrl-p,ctrl-q");
    }
    expect(() => parseDetachKeys("")).toThrow(/Invalid detach keys/);
  });
});
