/**
 * Writing tar (POSIX ustar, with pax extended headers for long names and link targets and for
 * sizes ustar cannot hold): just the headers; the caller streams contents and padding. Saves are
 * read out as tar, so the safe extractor that checks uploads checks restores and downloads too.
 */
const BLOCK = 512;
const encoder = new TextEncoder();

export interface TarEntry {
  name: string;
  type: "file" | "dir" | "symlink";
  mode: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  linkname?: string;
}

export const TAR_END = new Uint8Array(BLOCK * 2);

/** Zero bytes that complete a file of `size` bytes to a whole block. */
export function tarPadding(size: number): Uint8Array {
  const rest = size % BLOCK;
  return new Uint8Array(rest === 0 ? 0 : BLOCK - rest);
}

/** The fields every header shares: uid, gid, the checksum placeholder, the ustar magic and version. */
const TEMPLATE = (() => {
  const block = Buffer.alloc(BLOCK);
  block.write("0000000\0", 108, "latin1");
  block.write("0000000\0", 116, "latin1");
  block.write("        ", 148, "latin1");
  block.write("ustar\0", 257, "latin1");
  block.write("00", 263, "latin1");
  return block;
})();

/** `value` in octal, zero-padded to `width - 1` digits and a NUL. */
function octal(block: Buffer, offset: number, width: number, value: number): void {
  let v = Math.max(0, Math.floor(value));
  block[offset + width - 1] = 0;
  for (let i = offset + width - 2; i >= offset; i--) {
    block[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
}

function header(name: string, typeflag: string, mode: number, size: number, mtime: number, linkname: string): Buffer {
  const block = Buffer.allocUnsafe(BLOCK);
  TEMPLATE.copy(block);
  // Names were cut to fit (see truncate); what does not fit is left out, as the field's width says.
  block.write(name, 0, 100, "utf8");
  octal(block, 100, 8, mode & 0o7777);
  octal(block, 124, 12, size);
  octal(block, 136, 12, mtime);
  block[156] = typeflag.charCodeAt(0);
  if (linkname !== "") block.write(linkname, 157, 100, "utf8");
  let sum = 0;
  // Indexed: a typed array's iterator is several times slower, and this runs for every entry.
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  octal(block, 148, 7, sum);
  block[155] = 0x20;
  return block;
}

/** One pax record: `<length> <key>=<value>\n`, the length counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = encoder.encode(body).length;
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length !== String(len - bodyLen).length) len = bodyLen + String(len).length;
  return `${len}${body}`;
}

const MAX_OCTAL_SIZE = 8 ** 11 - 1;

/** The header blocks of one entry (a pax header first when needed). */
export function tarHeader(e: TarEntry): Uint8Array {
  const name = e.type === "dir" ? `${e.name}/` : e.name;
  const linkname = e.linkname ?? "";
  let pax = "";
  if (byteLength(name) > 99) pax += paxRecord("path", name);
  if (byteLength(linkname) > 99) pax += paxRecord("linkpath", linkname);
  if (e.size > MAX_OCTAL_SIZE) pax += paxRecord("size", String(e.size));
  const typeflag = e.type === "dir" ? "5" : e.type === "symlink" ? "2" : "0";
  const main = header(truncate(name), typeflag, e.mode, e.size > MAX_OCTAL_SIZE ? 0 : e.size, e.mtime, truncate(linkname));
  if (pax === "") return main;
  const paxBytes = encoder.encode(pax);
  const out = new Uint8Array(BLOCK + paxBytes.length + tarPadding(paxBytes.length).length + BLOCK);
  out.set(header("PaxHeader", "x", 0o644, paxBytes.length, e.mtime, ""), 0);
  out.set(paxBytes, BLOCK);
  out.set(main, out.length - BLOCK);
  return out;
}

const byteLength = (text: string): number => (/^[\x00-\x7f]*$/.test(text) ? text.length : encoder.encode(text).length);

/** The first 99 bytes of `text` (pax carries the whole), cut on a character boundary. */
function truncate(text: string): string {
  if (byteLength(text) <= 99) return text;
  let out = "";
  for (const ch of text) {
    if (encoder.encode(out + ch).length > 99) break;
    out += ch;
  }
  return out;
}

/** Tar output is handed on in pieces of about this size. */
const TAR_BATCH = 256 * 1024;
/** Pieces at least this large are handed on as they are, not copied into a batch. */
const WHOLE_PIECE = 64 * 1024;

/**
 * Gathers tar output (headers, small files' contents, padding) into batches of about
 * `TAR_BATCH` bytes, copied once; large pieces pass through without a copy.
 */
export class TarBatches {
  private buf = Buffer.allocUnsafe(TAR_BATCH);
  private fill = 0;
  private readonly done: Uint8Array[] = [];

  add(bytes: Uint8Array): void {
    if (bytes.byteLength >= WHOLE_PIECE) {
      this.flush();
      this.done.push(bytes);
      return;
    }
    if (this.fill + bytes.byteLength > TAR_BATCH) this.flush();
    this.buf.set(bytes, this.fill);
    this.fill += bytes.byteLength;
  }

  /** The pieces ready to be handed on (everything, at the end). */
  *ready(end = false): Generator<Uint8Array> {
    if (end) this.flush();
    while (this.done.length > 0) yield this.done.shift()!;
  }

  private flush(): void {
    if (this.fill === 0) return;
    this.done.push(this.buf.subarray(0, this.fill));
    this.buf = Buffer.allocUnsafe(TAR_BATCH);
    this.fill = 0;
  }
}
