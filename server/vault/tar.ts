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

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function writeField(block: Uint8Array, offset: number, width: number, text: string): void {
  // Numbers and markers are ASCII: written as they are, without an encoder.
  if (/^[\x00-\x7f]*$/.test(text)) {
    for (let i = 0; i < text.length && i < width; i++) block[offset + i] = text.charCodeAt(i);
    return;
  }
  const bytes = encoder.encode(text);
  block.set(bytes.subarray(0, width), offset);
}

function header(name: string, typeflag: string, mode: number, size: number, mtime: number, linkname: string): Uint8Array {
  const block = new Uint8Array(BLOCK);
  writeField(block, 0, 100, name);
  writeField(block, 100, 8, octal(mode & 0o7777, 8));
  writeField(block, 108, 8, octal(0, 8));
  writeField(block, 116, 8, octal(0, 8));
  writeField(block, 124, 12, octal(size, 12));
  writeField(block, 136, 12, octal(Math.max(0, Math.floor(mtime)), 12));
  writeField(block, 148, 8, "        ");
  writeField(block, 156, 1, typeflag);
  writeField(block, 157, 100, linkname);
  writeField(block, 257, 6, "ustar\0");
  writeField(block, 263, 2, "00");
  let sum = 0;
  // Indexed: a typed array's iterator is several times slower, and this runs for every entry.
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  writeField(block, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
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
