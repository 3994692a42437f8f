/** What of an output frame a client does not have yet, given the end offset it holds. */
import { describe, expect, test } from "bun:test";
import { newOutput } from "../../src/lib/output-offset.ts";

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);

describe("newOutput", () => {
  test("a client that holds nothing takes the whole frame", () => {
    expect(newOutput(null, 100, bytes(1, 2, 3))).toEqual({ data: bytes(1, 2, 3), end: 103, gap: false });
  });

  test("the next bytes are taken whole; bytes held already are not taken again", () => {
    expect(newOutput(100, 100, bytes(1, 2))).toEqual({ data: bytes(1, 2), end: 102, gap: false });
    expect(newOutput(102, 100, bytes(1, 2))).toBeNull();
    expect(newOutput(110, 100, bytes(1, 2))).toBeNull();
    expect(newOutput(100, 100, bytes())).toBeNull();
  });

  test("a frame that overlaps what is held gives only its new part", () => {
    expect(newOutput(101, 100, bytes(1, 2, 3))).toEqual({ data: bytes(2, 3), end: 103, gap: false });
  });

  test("a frame past what is held is taken, and says bytes are missing", () => {
    expect(newOutput(100, 105, bytes(7))).toEqual({ data: bytes(7), end: 106, gap: true });
  });
});
