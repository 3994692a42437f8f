/** Words for people shared by the CLI and the dashboard: ages, and strings as shell words (checked by a real sh). */
import { describe, expect, test } from "bun:test";
import { ago, shellQuote, shellWord } from "../../src/lib/format.ts";

describe("ago", () => {
  test("seconds, minutes, hours, days; never in the future", () => {
    const now = Date.parse("2026-01-02T00:00:00Z");
    const at = (msBefore: number): string => new Date(now - msBefore).toISOString();
    expect(ago(at(42_000), now)).toBe("42s ago");
    expect(ago(at(5 * 60_000 + 59_000), now)).toBe("5m ago");
    expect(ago(at(3 * 3_600_000), now)).toBe("3h ago");
    expect(ago(at(2 * 86_400_000 + 5), now)).toBe("2d ago");
    expect(ago(at(-10_000), now)).toBe("0s ago");
  });
});

describe("shell words", () => {
  const words = ["plain/path-1.txt", "Screen Shot.png", "it's", "$HOME `x` \"y\"", "a\nb", "*", ""];

  test("a plain path stays as it is; anything else is quoted", () => {
    expect(shellWord("/workspace/.catty-uploads/notes-20260101-000000.md")).toBe("/workspace/.catty-uploads/notes-20260101-000000.md");
    expect(shellWord("Screen Shot.png")).toBe("'Screen Shot.png'");
    expect(shellQuote("plain")).toBe("'plain'");
  });

  test("sh reads each back as exactly one word, unchanged", async () => {
    for (const quote of [shellWord, shellQuote]) {
      const script = `for w in ${words.map(quote).join(" ")}; do printf '%s\\0' "$w"; done`;
      const out = await new Response(Bun.spawn(["sh", "-c", script], { stdout: "pipe" }).stdout).text();
      expect(out.split("\0").slice(0, -1)).toEqual(words);
    }
  });
});
