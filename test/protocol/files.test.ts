import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { FILE_MAX_BYTES, fileProblem, STORED_FILE_NAME, storedFileName } from "../../src/protocol/files.ts";

const at = new Date("2026-11-29T14:03:07.250Z");

describe("files handed to a session", () => {
  test("the stored name: the original reduced to safe characters, the time, the extension", () => {
    expect(storedFileName("Screen Shot 2.png", at)).toBe("Screen-Shot-2-20261129-140307.png");
    expect(storedFileName("/Users/me/Désktop/résumé.PDF", at)).toBe("resume-20261129-140307.pdf");
    expect(storedFileName("C:\\\\Users\\\\me\\\\notes.md", at)).toBe("notes-20261129-140307.md");
    expect(storedFileName(".hidden.txt", at)).toBe("hidden-20261129-140307.txt");
    expect(storedFileName("../../etc/passwd.txt", at)).toBe("passwd-20261129-140307.txt");
    expect(storedFileName("日本語.png", at)).toBe("file-20261129-140307.png");
    expect(storedFileName(`${"a".repeat(300)}.csv`, at)).toBe(`${"a".repeat(64)}-20261129-140307.csv`);
  });

  test("any name the client sends becomes one the agent accepts, or is refused first", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.constantFrom("png", "PDF", "md", "exe", ""), (stem, ext) => {
        const name = ext ? `${stem}.${ext}` : stem;
        if (fileProblem(name, 1) !== null) return;
        const stored = storedFileName(name, at);
        expect(stored).toMatch(STORED_FILE_NAME);
        expect(stored).not.toContain("/");
        expect(stored.startsWith(".")).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  test("types and size", () => {
    expect(fileProblem("photo.JPG", 10)).toBeNull();
    expect(fileProblem("tool.exe", 10)).toContain("not a file type a session takes");
    expect(fileProblem("Makefile", 10)).toContain("not a file type");
    expect(fileProblem("big.pdf", FILE_MAX_BYTES)).toBeNull();
    expect(fileProblem("big.pdf", FILE_MAX_BYTES + 1)).toContain("larger than 10 MB");
  });

  test("the agent refuses names that could leave the directory", () => {
    for (const bad of ["../x-20261129-140307.png", ".x-20261129-140307.png", "a/b-20261129-140307.png", "x.png", "x-20261129-140307.exe", "x-20261129-140307.png\n"]) {
      expect(STORED_FILE_NAME.test(bad)).toBe(false);
    }
  });
});
