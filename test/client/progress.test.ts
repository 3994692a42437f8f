import { describe, expect, test } from "bun:test";
import { createProgress, renderLine, REDRAW_INTERVAL_MS, summaryLine, type ProgressStream } from "../../src/client/progress.ts";

function fakeStream(isTTY: boolean, columns = 80): ProgressStream & { out: string[] } {
  const out: string[] = [];
  return { isTTY, columns, out, write: (chunk: string) => out.push(chunk) };
}

function clock(start = 1000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const CLEAR = "\r\x1b[2K";

describe("renderLine", () => {
  test("label, bar, bytes, percent and rate when the total is known", () => {
    const line = renderLine({ label: "Downloading x", total: 10 * 1024 * 1024, done: 4 * 1024 * 1024, elapsedMs: 2000, columns: 100 });
    expect(line).toMatch(/^Downloading x {2}\[#+-+\] {2}4\.0 MB \/ 10 MB {2}40% {2}2\.0 MB\/s$/);
    const filled = line.match(/\[(#+)(-+)\]/)!;
    expect(filled[1]!.length / (filled[1]!.length + filled[2]!.length)).toBeCloseTo(0.4, 1);
  });

  test("no bar or percent without a total; extra goes last", () => {
    expect(renderLine({ label: "Packing", done: 2048, elapsedMs: 1000, extra: "12 files" })).toBe("Packing  2.0 KB  2.0 KB/s  12 files");
  });

  test("no rate before enough time has passed", () => {
    expect(renderLine({ label: "Packing", done: 2048, elapsedMs: 10 })).toBe("Packing  2.0 KB");
  });

  test("fits the terminal: the bar goes first, then the line is cut", () => {
    const state = { label: "Downloading brave-tiger-1234", total: 1 << 20, done: 1 << 19, elapsedMs: 1000 };
    const narrow = renderLine({ ...state, columns: 60 });
    expect(narrow.length).toBeLessThanOrEqual(59);
    expect(narrow).not.toContain("[");
    expect(narrow).toContain("50%");
    const tiny = renderLine({ ...state, columns: 30 });
    expect(tiny.length).toBeLessThanOrEqual(29);
    expect(tiny.endsWith("…")).toBe(true);
  });

  test("percent is clamped", () => {
    expect(renderLine({ label: "x", total: 100, done: 150, elapsedMs: 0 })).toContain("100%");
  });
});

describe("createProgress on a terminal", () => {
  test("redraws in place at most every interval", () => {
    const stream = fakeStream(true);
    const t = clock();
    const p = createProgress({ label: "Downloading x", total: 1000, stream, now: t.now });
    p.update(100);
    expect(stream.out).toHaveLength(1);
    expect(stream.out[0]!.startsWith(CLEAR)).toBe(true);
    expect(stream.out[0]).toContain("10%");

    t.advance(REDRAW_INTERVAL_MS / 2);
    p.update(200);
    expect(stream.out).toHaveLength(1); // throttled

    t.advance(REDRAW_INTERVAL_MS / 2);
    p.update(300);
    expect(stream.out).toHaveLength(2);
    expect(stream.out[1]).toContain("30%");
    expect(stream.out.every((chunk) => !chunk.includes("\n"))).toBe(true);
  });

  test("done clears the line and prints the message", () => {
    const stream = fakeStream(true);
    const p = createProgress({ label: "Downloading x", total: 10, stream, now: clock().now });
    p.update(5);
    p.done("All done.");
    expect(stream.out.slice(-2)).toEqual([CLEAR, "All done.\n"]);
    p.update(10);
    p.done();
    expect(stream.out).toHaveLength(3); // nothing after the end
  });

  test("done without a message prints a summary", () => {
    const stream = fakeStream(true);
    const t = clock();
    const p = createProgress({ label: "Downloading x", stream, now: t.now });
    p.update(2048);
    t.advance(2000);
    p.done();
    expect(stream.out.at(-1)).toBe("Downloading x: 2.0 KB in 2.0 s (1.0 KB/s)\n");
  });

  test("fail clears the line and prints nothing else", () => {
    const stream = fakeStream(true);
    const p = createProgress({ label: "Downloading x", total: 10, stream, now: clock().now });
    p.update(5);
    p.fail();
    expect(stream.out.at(-1)).toBe(CLEAR);
    p.done("late");
    expect(stream.out.at(-1)).toBe(CLEAR);
  });

  test("fail before any drawing writes nothing", () => {
    const stream = fakeStream(true);
    createProgress({ label: "x", stream }).fail();
    expect(stream.out).toEqual([]);
  });
});

describe("createProgress elsewhere", () => {
  test("prints nothing until done, then one line", () => {
    const stream = fakeStream(false);
    const t = clock();
    const p = createProgress({ label: "Downloading x", total: 4096, stream, now: t.now });
    for (let i = 1; i <= 4; i++) {
      t.advance(500);
      p.update(i * 1024, `${i} files`);
    }
    expect(stream.out).toEqual([]);
    p.done();
    expect(stream.out).toEqual(["Downloading x: 4.0 KB in 2.0 s (2.0 KB/s), 4 files\n"]);
  });

  test("fail prints nothing", () => {
    const stream = fakeStream(false);
    const p = createProgress({ label: "x", stream });
    p.update(1);
    p.fail();
    expect(stream.out).toEqual([]);
  });
});

describe("a stream that went away", () => {
  test("a throwing write is swallowed", () => {
    const stream: ProgressStream = {
      isTTY: true,
      columns: 80,
      write: () => {
        throw Object.assign(new Error("write EPIPE"), { code: "EPIPE" });
      },
    };
    const p = createProgress({ label: "x", total: 10, stream });
    expect(() => {
      p.update(1);
      p.done("bye");
    }).not.toThrow();
  });

  test("a destroyed stream is not written to", () => {
    const stream = { ...fakeStream(true), destroyed: true };
    const p = createProgress({ label: "x", total: 10, stream });
    p.update(1);
    p.done();
    expect(stream.out).toEqual([]);
  });
});

test("summaryLine", () => {
  expect(summaryLine("Packing", 10, 100)).toBe("Packing: 10 B in 0.1 s");
});
