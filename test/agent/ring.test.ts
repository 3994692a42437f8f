import { describe, expect, test } from "bun:test";
import { OutputRing } from "../../agent/ring.ts";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | null): string | null => (b ? new TextDecoder().decode(b) : null);

describe("OutputRing", () => {
  test("numbers bytes and replays exactly from any held offset", () => {
    const ring = new OutputRing(1024);
    expect(ring.append(bytes("hello "))).toBe(0);
    expect(ring.append(bytes("world"))).toBe(6);
    expect(ring.end).toBe(11);
    expect(text(ring.since(0))).toBe("hello world");
    expect(text(ring.since(3))).toBe("lo world");
    expect(text(ring.since(6))).toBe("world");
    expect(text(ring.since(11))).toBe("");
    expect(ring.since(12)).toBeNull();
  });

  test("drops the oldest chunks past its capacity and says so", () => {
    const ring = new OutputRing(10);
    ring.append(bytes("aaaaa"));
    ring.append(bytes("bbbbb"));
    ring.append(bytes("ccccc"));
    expect(ring.start).toBe(5);
    expect(ring.since(4)).toBeNull();
    expect(text(ring.since(5))).toBe("bbbbbccccc");
    expect(text(ring.since(12))).toBe("ccc");
  });
});
