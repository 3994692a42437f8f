/**
 * The saves format, shared by whoever writes a save (the agent, the CLI's upload) and the server
 * that stores and reads it. A save is a tree of directory listings plus the chunks of file
 * contents, each stored once by the SHA-256 of its bytes:
 *
 * - a **tree** is one directory's entries as canonical JSON (`encodeTree`), sorted by name:
 *   files with mode, size, mtime and their chunks' hashes, symlinks with their target, and
 *   subdirectories with their own tree's hash. A save names its root tree's hash.
 * - a **pack** carries blobs (chunks and trees) to the server in one request: `PACK_MAGIC`, then
 *   per blob its 32-byte hash, its length (u32, big-endian) and its bytes. The server checks each
 *   blob's hash before keeping any of the pack.
 *
 * Everything here is parsed as untrusted input.
 */
import { z } from "zod";
import { linkTargetProblem, MAX_PART_BYTES } from "../safe-fs.ts";

/** The most bytes one blob may have: a chunk is at most `MAX_CHUNK` (4 MiB); a tree of a huge directory more. */
export const MAX_BLOB_BYTES = 16 * 1024 * 1024;
/** The most bytes one pack request may carry. */
export const MAX_PACK_BYTES = MAX_BLOB_BYTES + 64 * 1024;
/** Packs are sent once this many blob bytes are waiting. */
export const PACK_TARGET_BYTES = 8 * 1024 * 1024;
/** The most hashes one "which are missing?" request may ask about. */
export const MAX_QUERY_HASHES = 10_000;

export const PACK_MAGIC = new TextEncoder().encode("CATTYPK1");
const RECORD_HEADER = 32 + 4;

const HASH = /^[0-9a-f]{64}$/;
/** A blob's name: hex SHA-256 of its content. */
export const isHash = (x: unknown): x is string => typeof x === "string" && HASH.test(x);
export const Hash = z.string().regex(HASH, "not a SHA-256 hash");
export type Hash = z.infer<typeof Hash>;

export function sha256(bytes: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

/** A directory entry's name: one path part, not `.` or `..`, no `/` or NUL, at most 255 bytes. */
const isName = (x: unknown): x is string =>
  typeof x === "string" &&
  x.length > 0 &&
  x !== "." &&
  x !== ".." &&
  !x.includes("/") &&
  !x.includes("\0") &&
  (x.length * 3 <= MAX_PART_BYTES || Buffer.byteLength(x) <= MAX_PART_BYTES);
const Name = z.string().refine(isName, "not a file name");
const Mode = z.number().int().min(0).max(0o7777);

export const FileEntry = z.object({
  t: z.literal("f"),
  n: Name,
  m: Mode,
  s: z.number().int().min(0),
  /** mtime in milliseconds since the epoch, whole seconds (what tar restores). */
  mt: z.number().int(),
  c: z.array(Hash),
});
export const DirEntry = z.object({ t: z.literal("d"), n: Name, m: Mode, h: Hash });
export const LinkEntry = z.object({ t: z.literal("l"), n: Name, l: z.string().refine((l) => linkTargetProblem(l) === null) });
export const TreeEntry = z.discriminatedUnion("t", [FileEntry, DirEntry, LinkEntry]);
export type FileEntry = z.infer<typeof FileEntry>;
export type DirEntry = z.infer<typeof DirEntry>;
export type LinkEntry = z.infer<typeof LinkEntry>;
export type TreeEntry = z.infer<typeof TreeEntry>;

export const Tree = z.object({ v: z.literal(1), e: z.array(TreeEntry) });
export type Tree = z.infer<typeof Tree>;

const byName = (a: TreeEntry, b: TreeEntry): number => (a.n < b.n ? -1 : a.n > b.n ? 1 : 0);

/** Canonical bytes of a directory: fixed key order, entries sorted by name. */
export function encodeTree(entries: readonly TreeEntry[]): Uint8Array {
  const e = [...entries].sort(byName).map((x) =>
    x.t === "f" ? { t: "f", n: x.n, m: x.m, s: x.s, mt: x.mt, c: x.c } : x.t === "d" ? { t: "d", n: x.n, m: x.m, h: x.h } : { t: "l", n: x.n, l: x.l },
  );
  return new TextEncoder().encode(JSON.stringify({ v: 1, e }));
}

/**
 * Parses a tree's bytes; throws on anything but a well-formed tree with unique, sorted names (the
 * schemas above, checked by hand: a restore reads every tree of a save, and zod cost more than
 * the parsing itself).
 */
export function decodeTree(bytes: Uint8Array): Tree {
  const raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) as unknown;
  if (!isRecord(raw) || raw.v !== 1 || !Array.isArray(raw.e)) throw new Error("not a tree (v 1 with entries e)");
  const entries = raw.e as unknown[];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (!isRecord(e) || !isName(e.n)) throw new Error(`entry ${i} has no valid name`);
    if (i > 0 && !((entries[i - 1] as TreeEntry).n < e.n)) throw new Error("tree entries are not sorted and unique");
    const ok =
      e.t === "f"
        ? isMode(e.m) && Number.isSafeInteger(e.s) && (e.s as number) >= 0 && Number.isSafeInteger(e.mt) && Array.isArray(e.c) && e.c.every(isHash)
        : e.t === "d"
          ? isMode(e.m) && isHash(e.h)
          : e.t === "l" && typeof e.l === "string" && linkTargetProblem(e.l) === null;
    if (!ok) throw new Error(`entry ${JSON.stringify(e.n)} is malformed`);
  }
  return raw as Tree;
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const isMode = (x: unknown): boolean => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0o7777;

export interface PackRecord {
  hash: string;
  bytes: Uint8Array;
}

/** A pack's bytes. */
export function encodePack(records: readonly PackRecord[]): Uint8Array {
  const pack = new PackWriter(records.reduce((n, r) => n + RECORD_HEADER + r.bytes.length, 0));
  for (const r of records) pack.add(r.hash, r.bytes);
  return pack.bytes();
}

/**
 * A pack written a record at a time, each blob copied in as it comes (the uploader's batch: sent
 * as it is when the store lacks all of it).
 */
export class PackWriter {
  private buf: Buffer;
  private fill = PACK_MAGIC.length;
  private readonly at: Array<{ hash: string; start: number; length: number }> = [];

  /** `capacity`: the bytes of records expected (it grows past that if need be). */
  constructor(capacity = PACK_TARGET_BYTES) {
    // Not zeroed: only what is written is touched (a save of one small file writes a few KB), and
    // only what is written is ever read.
    this.buf = Buffer.allocUnsafe(PACK_MAGIC.length + capacity);
    this.buf.set(PACK_MAGIC, 0);
  }

  /** Records written. */
  get count(): number {
    return this.at.length;
  }

  /** Bytes of its records (the pack without its magic). */
  get recordBytes(): number {
    return this.fill - PACK_MAGIC.length;
  }

  /** Bytes of its records with one more blob of `length` bytes. */
  recordBytesWith(length: number): number {
    return this.recordBytes + RECORD_HEADER + length;
  }

  add(hash: string, bytes: Uint8Array): void {
    const need = this.fill + RECORD_HEADER + bytes.length;
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      grown.set(this.buf.subarray(0, this.fill), 0);
      this.buf = grown;
    }
    if (this.buf.write(hash, this.fill, 32, "hex") !== 32) throw new Error("a blob hash is not 32 bytes of hex");
    this.buf.writeUInt32BE(bytes.length, this.fill + 32);
    this.buf.set(bytes, this.fill + RECORD_HEADER);
    this.at.push({ hash, start: this.fill, length: RECORD_HEADER + bytes.length });
    this.fill = need;
  }

  hashes(): string[] {
    return this.at.map((r) => r.hash);
  }

  /** Bytes of the blobs whose hashes are in `which`. */
  bytesOf(which: ReadonlySet<string>): number {
    return this.at.reduce((n, r) => (which.has(r.hash) ? n + r.length - RECORD_HEADER : n), 0);
  }

  /** The pack: all of it, or only the records whose hashes are in `only`. */
  bytes(only?: ReadonlySet<string>): Uint8Array {
    if (!only) return this.buf.subarray(0, this.fill);
    const kept = this.at.filter((r) => only.has(r.hash));
    const out = new Uint8Array(PACK_MAGIC.length + kept.reduce((n, r) => n + r.length, 0));
    out.set(PACK_MAGIC, 0);
    let off = PACK_MAGIC.length;
    for (const r of kept) {
      out.set(this.buf.subarray(r.start, r.start + r.length), off);
      off += r.length;
    }
    return out;
  }
}

/**
 * The records of an untrusted pack, each checked against its hash. Throws (naming the problem)
 * on a bad magic, a truncated record, an oversized blob or a blob whose bytes do not match.
 */
export function decodePack(pack: Uint8Array): PackRecord[] {
  if (pack.length < PACK_MAGIC.length || !PACK_MAGIC.every((b, i) => pack[i] === b)) throw new Error("not a pack (bad magic)");
  const view = new DataView(pack.buffer, pack.byteOffset, pack.byteLength);
  const out: PackRecord[] = [];
  for (let off = PACK_MAGIC.length; off < pack.length; ) {
    if (off + RECORD_HEADER > pack.length) throw new Error("the pack ends inside a record header");
    const hash = Buffer.from(pack.subarray(off, off + 32)).toString("hex");
    const len = view.getUint32(off + 32);
    if (len > MAX_BLOB_BYTES) throw new Error(`a blob of ${len} bytes is over the limit of ${MAX_BLOB_BYTES}`);
    const start = off + RECORD_HEADER;
    if (start + len > pack.length) throw new Error("the pack ends inside a blob");
    const bytes = pack.subarray(start, start + len);
    if (sha256(bytes) !== hash) throw new Error(`blob ${hash.slice(0, 12)}… does not match its hash`);
    out.push({ hash, bytes });
    off = start + len;
  }
  return out;
}

/**
 * What a restore stream carries after its tar end marker: each regular file of the archive, in
 * order, with its size and its chunks' hashes, so the restore knows what it wrote without hashing
 * it. `CATTYMF1`, a count (u32), then for each file its size (f64), its number of chunks (u32)
 * and their hashes (32 bytes each). A tar reader stops at the end marker and never sees it.
 */
const MANIFEST_MAGIC = new TextEncoder().encode("CATTYMF1");

export interface ManifestFile {
  size: number;
  chunks: string[];
}

export class ManifestWriter {
  private readonly parts: Uint8Array[] = [];
  private count = 0;

  add(size: number, chunks: readonly string[]): void {
    const part = Buffer.allocUnsafe(12 + 32 * chunks.length);
    part.writeDoubleBE(size, 0);
    part.writeUInt32BE(chunks.length, 8);
    chunks.forEach((c, i) => part.write(c, 12 + 32 * i, 32, "hex"));
    this.parts.push(part);
    this.count++;
  }

  bytes(): Uint8Array {
    const head = Buffer.allocUnsafe(MANIFEST_MAGIC.length + 4);
    head.set(MANIFEST_MAGIC, 0);
    head.writeUInt32BE(this.count, MANIFEST_MAGIC.length);
    return Buffer.concat([head, ...this.parts]);
  }
}

/** The files of a manifest (zero bytes before it, the rest of the end marker, are skipped); throws if malformed. */
export function decodeManifest(input: Uint8Array): ManifestFile[] {
  let at = 0;
  while (at < input.length && input[at] === 0) at++;
  const bytes = Buffer.from(input.buffer, input.byteOffset + at, input.byteLength - at);
  if (bytes.length < MANIFEST_MAGIC.length + 4 || !MANIFEST_MAGIC.every((b, i) => bytes[i] === b)) throw new Error("no manifest");
  const count = bytes.readUInt32BE(MANIFEST_MAGIC.length);
  const out: ManifestFile[] = [];
  let off = MANIFEST_MAGIC.length + 4;
  for (let i = 0; i < count; i++) {
    if (off + 12 > bytes.length) throw new Error("the manifest is cut short");
    const size = bytes.readDoubleBE(off);
    const n = bytes.readUInt32BE(off + 8);
    off += 12;
    if (off + 32 * n > bytes.length) throw new Error("the manifest is cut short");
    const chunks: string[] = [];
    for (let k = 0; k < n; k++, off += 32) chunks.push(bytes.toString("hex", off, off + 32));
    out.push({ size, chunks });
  }
  if (off !== bytes.length) throw new Error("the manifest has bytes after its end");
  return out;
}
