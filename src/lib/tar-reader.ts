/**
 * Reading tar (POSIX ustar with pax extended headers, GNU long names, v7), pushed a chunk at a
 * time and handed on synchronously: each entry's header, then its contents in pieces that are
 * views of the chunk pushed (no copies), then its end. The safe extractor (`archive.ts`) writes
 * files as the pieces arrive, so a restore costs little more than the system calls it makes.
 *
 * Anything that is not well-formed tar throws `TarFormatError`: a header whose checksum does not
 * match, a malformed number or pax record, an archive that ends without its end marker or in the
 * middle of an entry. What an entry may be (its type, name, link) is for the caller to judge.
 */
const BLOCK = 512;
/** Pax headers and GNU long names are held in memory: no more than this. */
const MAX_META_BYTES = 1024 * 1024;

export class TarFormatError extends Error {}

export type TarEntryType =
  | "file"
  | "link"
  | "symlink"
  | "character-device"
  | "block-device"
  | "directory"
  | "fifo"
  | "contiguous-file"
  | `type ${string}`;

export interface TarEntryHeader {
  /** As stored: a path with `/` between parts (directories may end with `/`). */
  name: string;
  type: TarEntryType;
  mode: number;
  size: number;
  /** Seconds since the epoch (fractions from pax). */
  mtime: number;
  linkname: string;
}

export interface TarEntrySink {
  /** A new entry; its contents (`size` bytes) follow through `data`, then `end`. */
  entry(header: TarEntryHeader): void;
  /** A piece of the current entry's contents: valid only during the call. */
  data(bytes: Uint8Array): void;
  /** The current entry's contents are complete. */
  end(): void;
  /** What follows the end marker's first block, as it arrives (without it, it is not read). */
  after?(bytes: Uint8Array): void;
}

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "1": "link",
  "2": "symlink",
  "3": "character-device",
  "4": "block-device",
  "5": "directory",
  "6": "fifo",
  "7": "contiguous-file",
};

/** What the next entry's header is overridden with (pax `x`, GNU `L`/`K`). */
interface Overrides {
  path?: string;
  linkpath?: string;
  size?: number;
  mtime?: number;
}

type State =
  | { at: "header" }
  /** Contents of an entry handed on; then `pad` bytes skipped. */
  | { at: "data"; left: number; pad: number }
  /** Contents of a pax header or GNU long name, collected. */
  | { at: "meta"; kind: "x" | "g" | "L" | "K"; parts: Uint8Array[]; got: number; size: number }
  | { at: "pad"; left: number }
  | { at: "end" };

export class TarReader {
  private state: State = { at: "header" };
  private readonly header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  private overrides: Overrides = {};

  constructor(private readonly sink: TarEntrySink) {}

  /** Reads on through `chunk`; throws `TarFormatError` (or what the sink threw). */
  push(chunk: Uint8Array): void {
    let at = 0;
    const n = chunk.byteLength;
    while (at < n) {
      const s = this.state;
      switch (s.at) {
        case "end":
          // What follows the end marker (record padding, a restore's manifest) is the sink's.
          if (at < n) this.sink.after?.(chunk.subarray(at));
          return;
        case "header": {
          const take = Math.min(BLOCK - this.headerFill, n - at);
          if (take === BLOCK && this.headerFill === 0) {
            this.onHeader(chunk.subarray(at, at + BLOCK));
          } else {
            this.header.set(chunk.subarray(at, at + take), this.headerFill);
            this.headerFill += take;
            if (this.headerFill === BLOCK) {
              this.headerFill = 0;
              this.onHeader(this.header);
            }
          }
          at += take;
          break;
        }
        case "data": {
          const take = Math.min(s.left, n - at);
          if (take > 0) this.sink.data(chunk.subarray(at, at + take));
          s.left -= take;
          at += take;
          if (s.left === 0) {
            this.sink.end();
            this.state = s.pad > 0 ? { at: "pad", left: s.pad } : { at: "header" };
          }
          break;
        }
        case "meta": {
          const take = Math.min(s.size - s.got, n - at);
          s.parts.push(chunk.slice(at, at + take));
          s.got += take;
          at += take;
          if (s.got === s.size) {
            this.onMeta(s.kind, Buffer.concat(s.parts, s.size));
            const pad = padding(s.size);
            this.state = pad > 0 ? { at: "pad", left: pad } : { at: "header" };
          }
          break;
        }
        case "pad": {
          const take = Math.min(s.left, n - at);
          s.left -= take;
          at += take;
          if (s.left === 0) this.state = { at: "header" };
          break;
        }
      }
    }
  }

  /** The input is over: throws unless the archive ended properly. */
  finish(): void {
    if (this.state.at === "end") return;
    if (this.state.at === "header" && this.headerFill === 0) throw new TarFormatError("the archive ends without its end marker");
    throw new TarFormatError("the archive is cut short");
  }

  private onHeader(block: Uint8Array): void {
    if (isZero(block)) {
      if (Object.keys(this.overrides).length > 0) throw new TarFormatError("an extended header is followed by no entry");
      this.state = { at: "end" };
      return;
    }
    const b = Buffer.from(block.buffer, block.byteOffset, BLOCK);
    checkSum(b);
    const flag = String.fromCharCode(b[156]!);
    const size = number(b, 124, 12, "size");
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      if (size > MAX_META_BYTES) throw new TarFormatError(`an extended header of ${size} bytes is larger than ${MAX_META_BYTES} allowed`);
      // A global pax header's records (a commit id from git archive) change no entry: read and dropped.
      this.state = size === 0 ? { at: "header" } : { at: "meta", kind: flag, parts: [], got: 0, size };
      if (size === 0) this.onMeta(flag, new Uint8Array(0));
      return;
    }
    const o = this.overrides;
    this.overrides = {};
    const name = o.path ?? fullName(b);
    let type: TarEntryType = TYPES[flag] ?? `type ${JSON.stringify(flag)}`;
    // v7 and old GNU archives mark directories only by a trailing slash.
    if (type === "file" && name.endsWith("/")) type = "directory";
    const header: TarEntryHeader = {
      name,
      type,
      mode: number(b, 100, 8, "mode"),
      size: o.size ?? size,
      mtime: o.mtime ?? number(b, 136, 12, "mtime"),
      linkname: o.linkpath ?? text(b, 157, 100),
    };
    // Only these types carry contents; the size of others (a link, a directory) means nothing.
    const carries = type === "file" || type === "contiguous-file" || type.startsWith("type ");
    if (!carries) header.size = 0;
    this.sink.entry(header);
    if (header.size > 0) {
      this.state = { at: "data", left: header.size, pad: padding(header.size) };
    } else {
      this.sink.end();
      this.state = { at: "header" };
    }
  }

  private onMeta(kind: "x" | "g" | "L" | "K", bytes: Uint8Array): void {
    if (kind === "L") this.overrides.path = cString(bytes);
    else if (kind === "K") this.overrides.linkpath = cString(bytes);
    else if (kind === "x") Object.assign(this.overrides, paxRecords(bytes));
  }
}

function padding(size: number): number {
  const rest = size % BLOCK;
  return rest === 0 ? 0 : BLOCK - rest;
}

function isZero(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function checkSum(b: Buffer): void {
  const stored = number(b, 148, 8, "checksum");
  // The sum of the header's bytes with the checksum field taken as spaces.
  let unsigned = 8 * 0x20;
  for (let i = 0; i < 148; i++) unsigned += b[i]!;
  for (let i = 156; i < BLOCK; i++) unsigned += b[i]!;
  if (stored === unsigned) return;
  // Some old archivers summed signed bytes.
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) signed += b[i]! > 127 ? b[i]! - 256 : b[i]!;
  if (stored !== signed) throw new TarFormatError("a header's checksum does not match (is it a tar archive?)");
}

/** A numeric field: octal digits (spaces and NULs around them), or base-256 when the top bit is set. */
function number(b: Buffer, off: number, width: number, what: string): number {
  if (b[off]! & 0x80) {
    if (b[off] === 0xff) throw new TarFormatError(`a header's ${what} is negative`);
    let v = b[off]! & 0x7f;
    for (let i = 1; i < width; i++) v = v * 256 + b[off + i]!;
    if (!Number.isSafeInteger(v)) throw new TarFormatError(`a header's ${what} is too large`);
    return v;
  }
  let i = off;
  const end = off + width;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`a header's ${what} is not a number`);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) if (b[i] !== 0x20 && b[i] !== 0) throw new TarFormatError(`a header's ${what} is not a number`);
  if (digits === 0 && what === "checksum") throw new TarFormatError("a header has no checksum (is it a tar archive?)");
  return v;
}

/** A NUL-terminated text field (UTF-8). */
function text(b: Buffer, off: number, width: number): string {
  let end = off;
  const max = off + width;
  while (end < max && b[end] !== 0) end++;
  return b.toString("utf8", off, end);
}

/** The name, with the ustar prefix when there is one (not in GNU archives, which use those bytes otherwise). */
function fullName(b: Buffer): string {
  const name = text(b, 0, 100);
  const ustar = b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 && b[260] === 0x61 && b[261] === 0x72 && b[262] === 0;
  if (!ustar || b[345] === 0) return name;
  return `${text(b, 345, 155)}/${name}`;
}

function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return Buffer.from(bytes.buffer, bytes.byteOffset, nul < 0 ? bytes.byteLength : nul).toString("utf8");
}

/** Pax records (`<length> <key>=<value>\n`): the ones that change what an entry is. */
function paxRecords(bytes: Uint8Array): Overrides {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Overrides = {};
  let at = 0;
  while (at < b.length) {
    // Padding NULs may follow the last record.
    if (b[at] === 0) break;
    const space = b.indexOf(0x20, at);
    const len = Number(b.toString("latin1", at, space));
    if (space < 0 || !Number.isSafeInteger(len) || len <= space - at + 1 || at + len > b.length || b[at + len - 1] !== 0x0a) {
      throw new TarFormatError("a pax header is malformed");
    }
    const record = b.toString("utf8", space + 1, at + len - 1);
    at += len;
    const eq = record.indexOf("=");
    if (eq < 0) throw new TarFormatError("a pax header is malformed");
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === "path") out.path = value;
    else if (key === "linkpath") out.linkpath = value;
    else if (key === "size" || key === "mtime") {
      const v = Number(value);
      if (value === "" || !Number.isFinite(v) || v < 0 || (key === "size" && !Number.isSafeInteger(v))) throw new TarFormatError(`a pax header's ${key} is not a number`);
      out[key] = v;
    }
  }
  return out;
}
