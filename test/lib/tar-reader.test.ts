import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TAR_END, tarHeader, tarPadding } from "../../server/vault/tar.ts";
import { extractArchive } from "../../src/lib/archive.ts";
import { TarFormatError, TarReader, type TarEntryHeader } from "../../src/lib/tar-reader.ts";
import { tempDirs } from "../helpers/fs.ts";
import { craftTar } from "../helpers/workspace.ts";

const tempDir = tempDirs("catty-tar-reader-");

interface Read extends TarEntryHeader {
  data: string;
}

/** Every entry of `archive`, pushed in pieces of the sizes `cuts` gives (cycled), with its contents. */
function readAll(archive: Uint8Array, cuts: number[] = [archive.byteLength]): Read[] {
  const out: Read[] = [];
  let parts: Uint8Array[] = [];
  let ended = true;
  const reader = new TarReader({
    entry(h) {
      expect(ended).toBe(true);
      ended = false;
      parts = [];
      out.push({ ...h, data: "" });
    },
    data(bytes) {
      expect(ended).toBe(false);
      // Valid only during the call: copied.
      parts.push(bytes.slice());
    },
    end() {
      ended = true;
      out[out.length - 1]!.data = Buffer.concat(parts).toString("latin1");
    },
  });
  let at = 0;
  for (let i = 0; at < archive.byteLength; i++) {
    const n = Math.max(1, cuts[i % cuts.length]!);
    reader.push(archive.subarray(at, at + n));
    at += n;
  }
  reader.finish();
  expect(ended).toBe(true);
  return out;
}

/** A tar as the server writes saves (ustar, pax for long names and links). */
function serverTar(entries: Array<{ name: string; type: "file" | "dir" | "symlink"; data?: string; linkname?: string; mode?: number; mtime?: number }>): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.data ?? "", "latin1");
    parts.push(tarHeader({ name: e.name, type: e.type, mode: e.mode ?? 0o644, size: data.length, mtime: e.mtime ?? 1_700_000_000, linkname: e.linkname }));
    parts.push(data, tarPadding(data.length));
  }
  parts.push(TAR_END);
  return new Uint8Array(Buffer.concat(parts));
}

const run = async (cmd: string[], cwd: string): Promise<void> => {
  const p = Bun.spawn(cmd, { cwd, stdout: "ignore", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`${cmd.join(" ")}: ${err}`);
};

describe("reading tar", () => {
  test("GNU tar's formats (gnu long names, posix pax, ustar prefixes, v7) extract as written", async () => {
    const src = tempDir();
    const deep = `${"dir-with-a-long-name/".repeat(6)}file-at-the-bottom.txt`; // 148 bytes: prefix + name in ustar
    mkdirSync(join(src, deep, ".."), { recursive: true });
    writeFileSync(join(src, deep), "deep\n");
    const long = `${"x".repeat(180)}.txt`; // too long for ustar's name; gnu and pax carry it
    writeFileSync(join(src, long), "long\n");
    writeFileSync(join(src, "script.sh"), "#!/bin/sh\n", { mode: 0o755 });
    writeFileSync(join(src, "empty"), "");
    symlinkSync(`${"../".repeat(0)}${"t".repeat(150)}`, join(src, "far-link"));
    utimesSync(join(src, "script.sh"), 1_600_000_000, 1_600_000_000);
    for (const format of ["gnu", "posix", "ustar", "v7"]) {
      // ustar and v7 cannot hold the long names: those archives leave them out.
      const names = format === "gnu" || format === "posix" ? ["."] : ["./script.sh", "./empty", ...(format === "ustar" ? [`./${deep}`] : [])];
      const archive = join(tempDir(), `a-${format}.tar`);
      await run(["tar", `--format=${format}`, "-cf", archive, ...names], src);
      const dest = join(tempDir(), "dest");
      const stats = await extractArchive(archive, dest);
      expect(readFileSync(join(dest, "script.sh"), "utf8")).toBe("#!/bin/sh\n");
      expect(statSync(join(dest, "script.sh")).mode & 0o777).toBe(0o755);
      expect(statSync(join(dest, "script.sh")).mtimeMs).toBe(1_600_000_000_000);
      expect(readFileSync(join(dest, "empty"), "utf8")).toBe("");
      if (format !== "v7") expect(readFileSync(join(dest, deep), "utf8")).toBe("deep\n");
      if (names[0] === ".") {
        expect(readFileSync(join(dest, long), "utf8")).toBe("long\n");
        expect(readlinkSync(join(dest, "far-link"))).toBe("t".repeat(150));
        expect(stats.files).toBe(5);
      }
    }
  });

  test("any split of the input reads the same entries (tar-stream's and the server's archives)", async () => {
    const name = fc.stringMatching(/^[a-zA-Z0-9_.é-]{1,40}$/).filter((n) => n !== "." && n !== "..");
    const entry = fc.record({
      path: fc.array(name, { minLength: 1, maxLength: 6 }).map((p) => p.join("/")),
      data: fc.oneof(fc.constant(""), fc.string({ maxLength: 2000 }), fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b).toString("latin1"))),
      mode: fc.constantFrom(0o644, 0o755, 0o600, 0o444),
      link: fc.option(fc.stringMatching(/^[a-z/]{1,300}$/), { freq: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 1500 }), { minLength: 1, maxLength: 8 }), async (entries, cuts) => {
        const server = serverTar(
          entries.map((e) => (e.link ? { name: e.path, type: "symlink" as const, linkname: e.link } : { name: e.path, type: "file" as const, data: e.data, mode: e.mode })),
        );
        const fromStream = await craftTar(
          entries.map((e) =>
            e.link
              ? { header: { name: e.path, type: "symlink", linkname: e.link, mtime: new Date(1_700_000_000_000) } }
              : { header: { name: e.path, mode: e.mode, mtime: new Date(1_700_000_000_000) }, data: Buffer.from(e.data, "latin1").toString("latin1") },
          ),
        );
        for (const archive of [server, fromStream]) {
          const whole = readAll(archive);
          expect(readAll(archive, cuts)).toEqual(whole);
          expect(whole.map((r) => r.name)).toEqual(entries.map((e) => e.path));
          entries.forEach((e, i) => {
            const r = whole[i]!;
            expect(r.type).toBe(e.link ? "symlink" : "file");
            if (e.link) expect(r.linkname).toBe(e.link);
            else {
              expect(r.mode & 0o777).toBe(e.mode);
              expect(r.mtime).toBe(1_700_000_000);
            }
          });
        }
        // Byte by byte too.
        expect(readAll(server, [1])).toEqual(readAll(server));
      }),
      { numRuns: 60 },
    );
  });

  test("pax records override size and mtime; a global pax header changes nothing and is not an entry", () => {
    const pax = (records: string, flag = "x"): Uint8Array => {
      const body = Buffer.from(records);
      const h = tarHeader({ name: "PaxHeader", type: "file", mode: 0o644, size: body.length, mtime: 0 });
      h[156] = flag.charCodeAt(0);
      fixSum(h);
      return Buffer.concat([h, body, tarPadding(body.length)]);
    };
    const file = serverTar([{ name: "short", type: "file", data: "abc" }]);
    const rec = (key: string, value: string): string => {
      const body = ` ${key}=${value}\n`;
      return `${body.length + String(body.length + 3).length}${body}`;
    };
    const archive = Buffer.concat([pax(rec("path", "global/name/ignored"), "g"), pax(rec("mtime", "1234567.5") + rec("path", "renamed")), file]);
    const [r, ...rest] = readAll(archive);
    expect(rest).toEqual([]);
    expect(r).toMatchObject({ name: "renamed", type: "file", mtime: 1234567.5, data: "abc" });
  });

  test("sizes past ustar's octal field (base-256) are read", () => {
    const h = tarHeader({ name: "big", type: "file", mode: 0o644, size: 0, mtime: 0 });
    // 3 bytes of contents, written in base-256 as GNU tar writes sizes of 8 GiB and more.
    h.fill(0, 124, 136);
    h[124] = 0x80;
    h[135] = 3;
    fixSum(h);
    const archive = Buffer.concat([h, Buffer.from("xyz"), tarPadding(3), TAR_END]);
    expect(readAll(archive)).toMatchObject([{ name: "big", size: 3, data: "xyz" }]);
  });

  test("malformed archives throw TarFormatError, wherever they are cut", () => {
    const good = serverTar([
      { name: "a", type: "file", data: "x".repeat(700) },
      { name: `${"long/".repeat(30)}b`, type: "file", data: "y" },
    ]);
    const broken = (bytes: Uint8Array): Error => {
      try {
        readAll(bytes);
      } catch (err) {
        return err as Error;
      }
      throw new Error("read without an error");
    };
    // Cut anywhere before the end marker: never read as whole.
    const endAt = good.byteLength - TAR_END.byteLength;
    for (let cut = 1; cut <= endAt; cut += 97) expect(broken(good.subarray(0, cut))).toBeInstanceOf(TarFormatError);
    expect(broken(good.subarray(0, endAt)).message).toContain("end marker");
    const flipped = Buffer.from(good);
    flipped[10] = flipped[10]! ^ 1;
    expect(broken(flipped).message).toContain("checksum");
    expect(broken(new TextEncoder().encode("not a tar archive at all".repeat(40)))).toBeInstanceOf(TarFormatError);
    const badSize = Buffer.from(good);
    badSize.write("9", 124, "latin1");
    fixSum(badSize);
    expect(broken(badSize).message).toContain("size");
  });
});

/** Writes a header's checksum again after a test changed it. */
function fixSum(h: Uint8Array): void {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += h[i]!;
  Buffer.from(h.buffer, h.byteOffset, 512).write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
}
