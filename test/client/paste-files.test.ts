import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { droppableFiles, PasteCatcher, pastedPaths, type PasteEvent } from "../../src/client/paste-files.ts";
import { tempDirs } from "../helpers/fs.ts";

const temp = tempDirs("catty-paste-");
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const START = "\x1b[200~";
const END = "\x1b[201~";

/** What the catcher makes of `input` cut into `reads`: the bytes passed on as text, and the pastes. */
function catchAll(reads: string[]): { bytes: string; pastes: string[] } {
  const c = new PasteCatcher();
  let bytes = "";
  const pastes: string[] = [];
  const take = (evs: PasteEvent[]): void => {
    for (const e of evs) {
      if (e.kind === "bytes") bytes += new TextDecoder().decode(e.data);
      else {
        pastes.push(e.text);
        bytes += `<paste>`;
      }
    }
  };
  for (const r of reads) take(c.feed(enc(r)));
  return { bytes, pastes };
}

describe("bracketed pastes in the input", () => {
  test("found with its text and end cut anywhere across reads; a start marker cut by a read passes as typed", () => {
    const input = `ab${START}/tmp/x.png${END}cd`;
    const startAt = 2;
    for (let cut = 0; cut <= input.length; cut++) {
      for (let cut2 = cut; cut2 <= input.length; cut2 += 3) {
        const got = catchAll([input.slice(0, cut), input.slice(cut, cut2), input.slice(cut2)]);
        const startCut = (cut > startAt && cut < startAt + START.length) || (cut2 > startAt && cut2 < startAt + START.length);
        expect(got).toEqual(startCut ? { bytes: input, pastes: [] } : { bytes: "ab<paste>cd", pastes: ["/tmp/x.png"] });
      }
    }
  });

  test("a lone Escape key is passed on at once, not held", () => {
    const c = new PasteCatcher();
    expect(c.feed(enc("\x1b"))).toEqual([{ kind: "bytes", data: expect.anything() }]);
  });

  test("a long paste is not held: it passes through as it comes, markers and all", () => {
    const long = "x".repeat(100_000);
    expect(catchAll([`${START}${long.slice(0, 70_000)}`, `${long.slice(70_000)}${END}z`])).toEqual({ bytes: `${START}${long}${END}z`, pastes: [] });
  });

  test("input without a paste is passed on whole and in order", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 30 }).filter((s) => !s.includes("\x1b"))), (reads) => {
        expect(catchAll(reads)).toEqual({ bytes: reads.join(""), pastes: [] });
      }),
    );
  });
});

describe("pasted paths", () => {
  test("absolute and ~/ paths, escaped spaces, quotes, several; anything else is not paths", () => {
    expect(pastedPaths("/a/b.png", "/home/me")).toEqual(["/a/b.png"]);
    expect(pastedPaths("/a/Screen\\ Shot.png ~/notes.md ", "/home/me")).toEqual(["/a/Screen Shot.png", "/home/me/notes.md"]);
    expect(pastedPaths("'/a/my file.pdf'", "/home/me")).toEqual(["/a/my file.pdf"]);
    expect(pastedPaths("hello world")).toBeNull();
    expect(pastedPaths("relative/x.png")).toBeNull();
    expect(pastedPaths("/a.png\n/b.png")).toBeNull();
    expect(pastedPaths("")).toBeNull();
  });

  test("files a session takes: existing, of an allowed type, at most 10 MB; one bad path and none go", () => {
    const dir = temp();
    writeFileSync(join(dir, "a.png"), "png");
    writeFileSync(join(dir, "tool.exe"), "MZ");
    writeFileSync(join(dir, "big.pdf"), Buffer.alloc(10 * 1024 * 1024 + 1));
    expect(droppableFiles([join(dir, "a.png")])).toEqual([{ path: join(dir, "a.png"), name: "a.png", size: 3 }]);
    expect(droppableFiles([join(dir, "a.png"), join(dir, "tool.exe")])).toBeNull();
    expect(droppableFiles([join(dir, "big.pdf")])).toBeNull();
    expect(droppableFiles([join(dir, "missing.png")])).toBeNull();
    expect(droppableFiles([dir])).toBeNull();
  });
});
