import { describe, expect, test } from "bun:test";
import { linkSync, mkdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { droppableFiles, pastedPaths, readDroppedFile, uploadAnswer, type DroppedFile } from "../../src/client/paste-files.ts";
import { tempDirs } from "../helpers/fs.ts";

const temp = tempDirs("catty-paste-");
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

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
    const places = { home: join(dir, "home"), cattyHome: join(dir, "home", ".catty") };
    writeFileSync(join(dir, "a.png"), "png");
    writeFileSync(join(dir, "tool.exe"), "MZ");
    writeFileSync(join(dir, "big.pdf"), Buffer.alloc(10 * 1024 * 1024 + 1));
    const st = statSync(join(dir, "a.png"));
    expect(droppableFiles([join(dir, "a.png")], places)).toEqual({ files: [{ path: join(dir, "a.png"), name: "a.png", size: 3, dev: st.dev, ino: st.ino }] });
    expect(droppableFiles([join(dir, "a.png"), join(dir, "tool.exe")], places)).toBeNull();
    expect(droppableFiles([join(dir, "big.pdf")], places)).toBeNull();
    expect(droppableFiles([join(dir, "missing.png")], places)).toBeNull();
    expect(droppableFiles([dir], places)).toBeNull();
    // `.` and `..` in a pasted path are not hidden places.
    mkdirSync(join(dir, "sub"));
    expect(droppableFiles([join(dir, "sub", "..", ".", "a.png")], places)).toEqual({ files: [expect.objectContaining({ path: join(dir, "a.png") })] });
  });

  test("nothing private is offered: links, catty's home, ~/.ssh, ~/.claude, ~/.aws, ~/.config, hidden places, also behind a linked directory", () => {
    const dir = temp();
    const home = join(dir, "home");
    const places = { home, cattyHome: join(home, ".catty") };
    const put = (path: string, text = "x"): string => {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
      return path;
    };
    const key = put(join(home, ".ssh", "id_rsa"), "-----BEGIN OPENSSH PRIVATE KEY-----");
    symlinkSync(key, join(dir, "cat.png"));
    const refused = (path: string): string => {
      const got = droppableFiles([put(join(dir, "ok.png")), path], places);
      if (!got || !("refused" in got)) throw new Error(`${path} was not refused: ${JSON.stringify(got)}`);
      return got.refused;
    };
    expect(refused(join(dir, "cat.png"))).toContain("symbolic link");
    linkSync(put(join(home, ".ssh", "id_ed25519.txt")), join(dir, "dog.txt"));
    expect(refused(join(dir, "dog.txt"))).toContain("other names (hard links)");
    expect(refused(put(join(home, ".catty", "credentials.json"), "{}"))).toContain("catty's own directory");
    expect(refused(put(join(home, ".claude", ".credentials.json"), "{}"))).toContain(join(home, ".claude"));
    expect(refused(put(join(home, ".aws", "notes.txt")))).toContain(join(home, ".aws"));
    expect(refused(put(join(home, ".config", "gh", "notes.md")))).toContain(join(home, ".config"));
    expect(refused(put(join(home, "project", ".git", "notes.md")))).toContain("hidden");
    // A directory linked to a private one: the resolved path is checked.
    symlinkSync(join(home, ".ssh"), join(dir, "keys"));
    put(join(home, ".ssh", "id.txt"));
    expect(refused(join(dir, "keys", "id.txt"))).toContain(join(home, ".ssh"));
    // $CATTY_HOME anywhere, not only under home.
    const elsewhere = { home, cattyHome: join(dir, "catty-home") };
    expect(droppableFiles([put(join(dir, "catty-home", "secrets.json"), "{}")], elsewhere)).toEqual({ refused: expect.stringContaining("catty's own directory") });
    // ~/.config linked to a visible dotfiles folder: still refused, by the path as pasted.
    const home2 = join(dir, "home2");
    put(join(dir, "dotfiles", "notes.md"));
    mkdirSync(home2);
    symlinkSync(join(dir, "dotfiles"), join(home2, ".config"), "dir");
    expect(droppableFiles([join(home2, ".config", "notes.md")], { home: home2, cattyHome: join(home2, ".catty") })).toEqual({ refused: expect.stringContaining(join(home2, ".config")) });
  });

  test("the file read is the file checked: one swapped for a link or another file since is not read", () => {
    const dir = temp();
    const places = { home: join(dir, "home"), cattyHome: join(dir, "home", ".catty") };
    writeFileSync(join(dir, "a.png"), "png");
    writeFileSync(join(dir, "secret.txt"), "secret");
    const found = droppableFiles([join(dir, "a.png")], places);
    if (!found || !("files" in found)) throw new Error("not offered");
    const [file] = found.files as [DroppedFile];
    expect(new TextDecoder().decode(readDroppedFile(file))).toBe("png");
    rmSync(join(dir, "a.png"));
    symlinkSync(join(dir, "secret.txt"), join(dir, "a.png"));
    expect(() => readDroppedFile(file)).toThrow();
    // (Written while the link still holds its name, so it cannot get the old file's inode back.)
    writeFileSync(join(dir, "b.png"), "other");
    renameSync(join(dir, "b.png"), join(dir, "a.png"));
    expect(() => readDroppedFile(file)).toThrow(/changed since it was checked/);
  });

  test("the question's answers: Enter uploads, Esc or Ctrl+C pastes the text (plain, kitty, modifyOtherKeys); other keys are no answer", () => {
    for (const k of ["\r", "\n", "\x1b[13u", "\x1b[13;1u"]) expect(uploadAnswer(enc(k))).toBe("upload");
    for (const k of ["\x1b", "\x03", "\x1b[27u", "\x1b[99;5u", "\x1b[27;5;99~"]) expect(uploadAnswer(enc(k))).toBe("paste");
    for (const k of ["y", "\x1b[A", "\x1b[13;1:3u", " ", "\r\r"]) expect(uploadAnswer(enc(k))).toBeNull();
  });
});
