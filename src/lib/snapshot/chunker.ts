/**
 * Content-defined chunking (FastCDC with normalized chunking): a file's bytes are cut where a
 * rolling hash of the last bytes hits a pattern, so an edit in the middle of a big file moves only
 * the cuts around it and every other chunk keeps its hash. Files up to `MIN_CHUNK` are one chunk.
 * The gear table and the masks are part of the saves format: changing them breaks nothing but
 * deduplication against older saves.
 */

/** No cut before this many bytes of a chunk. */
export const MIN_CHUNK = 256 * 1024;
/** The size chunks aim for. */
export const AVG_CHUNK = 1024 * 1024;
/** A chunk is cut here at the latest. */
export const MAX_CHUNK = 4 * 1024 * 1024;

/** 256 fixed pseudo-random 32-bit values (splitmix32 from a constant seed). */
const GEAR = (() => {
  const table = new Int32Array(256);
  let state = 0x9e3779b9;
  for (let i = 0; i < 256; i++) {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    table[i] = z ^ (z >>> 16);
  }
  return table;
})();

// Normalized chunking: harder to cut before the average (22 one-bits), easier after (18).
// The top bits: the gear hash's high bits depend on the most bytes (the last 32).
const MASK_HARD = 0xff_ff_fc_00 | 0; // 22 bits
const MASK_EASY = 0xff_ff_c0_00 | 0; // 18 bits

/**
 * Where the chunk starting at `buf[start]` ends: its length, at most `end - start`. When the data
 * runs out before a cut (`end - start < MAX_CHUNK` and more may follow), the caller reads more
 * first unless this is the end of the file.
 */
export function cutPoint(buf: Uint8Array, start: number, end: number): number {
  const n = end - start;
  if (n <= MIN_CHUNK) return n;
  const limit = Math.min(n, MAX_CHUNK);
  const normal = Math.min(limit, AVG_CHUNK);
  let h = 0;
  let i = MIN_CHUNK;
  for (; i < normal; i++) {
    h = ((h << 1) + GEAR[buf[start + i]!]!) | 0;
    if ((h & MASK_HARD) === 0) return i + 1;
  }
  for (; i < limit; i++) {
    h = ((h << 1) + GEAR[buf[start + i]!]!) | 0;
    if ((h & MASK_EASY) === 0) return i + 1;
  }
  return limit;
}

/** Reads up to `length` bytes at `position` into `buf[offset…]`; resolves to the bytes read (0 at the end). */
export type ReadAt = (buf: Uint8Array, offset: number, length: number, position: number) => Promise<number>;

/**
 * Splits a file read through `read` into chunks, calling `onChunk` with each one's bytes (a view
 * valid only until `onChunk` resolves). Reads at most `MAX_CHUNK` ahead, into `buf` (reusable between
 * files). Resolves to the bytes read.
 */
export async function chunkStream(
  read: ReadAt,
  onChunk: (bytes: Uint8Array) => Promise<void> | void,
  buf: Uint8Array = new Uint8Array(MAX_CHUNK * 2),
): Promise<number> {
  if (buf.length < MAX_CHUNK * 2) throw new Error("chunkStream needs a buffer of at least 2 × MAX_CHUNK");
  let filled = 0;
  let position = 0;
  let eof = false;
  for (;;) {
    while (!eof && filled < MAX_CHUNK) {
      const got = await read(buf, filled, buf.length - filled, position);
      if (got === 0) eof = true;
      filled += got;
      position += got;
    }
    if (filled === 0) return position;
    const len = cutPoint(buf, 0, filled);
    await onChunk(buf.subarray(0, len));
    buf.copyWithin(0, len, filled);
    filled -= len;
  }
}

/** The chunks of bytes already in memory (tests, small inputs). */
export function chunkBytes(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let start = 0; start < bytes.length; ) {
    const len = cutPoint(bytes, start, bytes.length);
    out.push(bytes.subarray(start, start + len));
    start += len;
  }
  return out;
}
