/**
 * A pack's header: what makes a pack readable without the database (restic's self-describing
 * packs). After a pack's sealed units comes its header, sealed with the user's key and bound to
 * the pack's key (a header moved to another pack does not open), then its sealed length (u32)
 * and `CPH1`. The header lists the pack's units in order: each unit's sealed length (u32), a
 * flag byte (1: a group of small blobs), its blob count (u32) and the blobs' ids (32 bytes each);
 * offsets follow from the lengths. Packs written before headers end in a sealed unit instead:
 * `readPackHeader` says so, and the database stays their only index.
 */
import type { BlobStore } from "../blobs/types.ts";
import type { BlobLocation } from "../store/types.ts";
import { openBlob, sealBlobs, type UserKeys } from "./crypto.ts";

const MAGIC = Buffer.from("CPH1");
const TRAILER = 8;
const ID_BYTES = 32;
/** A header opens to at most this many bytes (a pack of 64 MiB of 1-byte blobs would need more; packs are far smaller). */
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

const aadOf = (pack: string): string => `catty pack header v1 ${pack}`;

export interface PackUnit {
  length: number;
  grouped: boolean;
  ids: string[];
}

/** The header's sealed bytes and trailer, to write after the units. */
export async function sealPackHeader(keys: UserKeys, pack: string, units: readonly PackUnit[]): Promise<Uint8Array[]> {
  const plain = Buffer.allocUnsafe(4 + units.reduce((n, u) => n + 9 + u.ids.length * ID_BYTES, 0));
  plain.writeUInt32BE(units.length, 0);
  let at = 4;
  for (const u of units) {
    plain.writeUInt32BE(u.length, at);
    plain[at + 4] = u.grouped ? 1 : 0;
    plain.writeUInt32BE(u.ids.length, at + 5);
    at += 9;
    for (const id of u.ids) {
      if (plain.write(id, at, ID_BYTES, "hex") !== ID_BYTES) throw new Error("a blob id is not 32 bytes of hex");
      at += ID_BYTES;
    }
  }
  const [sealed] = await sealBlobs(keys, [{ aad: aadOf(pack), plain }]);
  const length = sealed!.reduce((n, p) => n + p.length, 0);
  const trailer = Buffer.allocUnsafe(TRAILER);
  trailer.writeUInt32BE(length, 0);
  MAGIC.copy(trailer, 4);
  return [...sealed!, trailer];
}

export type PackHeader =
  | { ok: true; rows: Array<BlobLocation & { id: string }> }
  /** `legacy`: the pack ends in no header (written before headers); `damaged`: it has one that does not open or add up. */
  | { ok: false; problem: "legacy" | "damaged"; message: string };

/** The header's length and where it starts, from the pack's last 8 bytes and its size; a failure when there is none. */
function trailerOf(pack: string, tail: Buffer, size: number): { start: number; length: number } | PackHeader {
  if (tail.length < TRAILER || !tail.subarray(tail.length - 4).equals(MAGIC)) {
    return { ok: false, problem: "legacy", message: `Pack ${pack} has no header (it was written before packs had one, or its end is cut off): only the database indexes it.` };
  }
  const length = tail.readUInt32BE(tail.length - TRAILER);
  const start = size - TRAILER - length;
  if (start < 0) return { ok: false, problem: "damaged", message: `The header of pack ${pack} claims more bytes than the pack has.` };
  return { start, length };
}

/** The rows of a sealed header that starts at `start`; never throws. */
async function openHeader(keys: UserKeys, pack: string, sealed: Uint8Array, start: number): Promise<PackHeader> {
  const damaged = (why: string): PackHeader => ({ ok: false, problem: "damaged", message: `The header of pack ${pack} ${why}.` });
  let plain: Buffer;
  try {
    const opened = await openBlob(keys, aadOf(pack), sealed, MAX_HEADER_BYTES);
    plain = Buffer.from(opened.buffer, opened.byteOffset, opened.byteLength);
  } catch {
    return damaged("does not decrypt with its user's key (it was altered, or belongs to another pack)");
  }
  const rows: Array<BlobLocation & { id: string }> = [];
  if (plain.length < 4) return damaged("is cut short");
  const count = plain.readUInt32BE(0);
  let at = 4;
  let offset = 0;
  for (let i = 0; i < count; i++) {
    if (at + 9 > plain.length) return damaged("is cut short");
    const length = plain.readUInt32BE(at);
    const grouped = plain[at + 4] === 1;
    const members = plain.readUInt32BE(at + 5);
    at += 9;
    if (at + members * ID_BYTES > plain.length) return damaged("is cut short");
    for (let m = 0; m < members; m++, at += ID_BYTES) {
      const id = plain.toString("hex", at, at + ID_BYTES);
      rows.push(grouped ? { id, pack, offset, length, grouped: true } : { id, pack, offset, length });
    }
    offset += length;
  }
  if (at !== plain.length) return damaged("has bytes no unit claims");
  if (offset !== start) return damaged("does not add up to the pack's length");
  return { ok: true, rows };
}

/** Reads the header at the end of the pack object `pack` (its whole bytes); never throws. */
export async function readPackHeader(keys: UserKeys, pack: string, bytes: Uint8Array): Promise<PackHeader> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const where = trailerOf(pack, buf.subarray(Math.max(0, buf.length - TRAILER)), buf.length);
  if ("ok" in where) return where;
  return openHeader(keys, pack, buf.subarray(where.start, where.start + where.length), where.start);
}

/** Whether the pack object `pack` of `size` bytes ends in a header (without opening it). */
export async function hasPackHeader(blobs: Pick<BlobStore, "getRange">, pack: string, size: number): Promise<boolean> {
  if (size < TRAILER) return false;
  const tail = await blobs.getRange(pack, size - TRAILER, TRAILER);
  return tail !== null && Buffer.from(tail).subarray(4).equals(MAGIC);
}

/** Reads the header of the pack object `pack` of `size` bytes from storage, fetching only its end; throws only when storage does. */
export async function readPackTail(blobs: Pick<BlobStore, "getRange">, keys: UserKeys, pack: string, size: number): Promise<PackHeader> {
  const gone: PackHeader = { ok: false, problem: "damaged", message: `Pack ${pack} vanished while it was read.` };
  const tail = size >= TRAILER ? await blobs.getRange(pack, size - TRAILER, TRAILER) : Buffer.alloc(0);
  if (!tail) return gone;
  const where = trailerOf(pack, Buffer.from(tail), size);
  if ("ok" in where) return where;
  const sealed = await blobs.getRange(pack, where.start, where.length);
  if (!sealed) return gone;
  return openHeader(keys, pack, sealed, where.start);
}
