/**
 * The vault's pack writer: seals a run of blobs as one pack object. Large blobs are sealed each
 * on its own; small ones in groups (`encodeGroup`), in the order they came, with trees apart from
 * files: a restore reads every tree first, and would otherwise open every group for its trees and
 * then again for its files. (What looks like a tree only decides where a blob is placed; reading
 * does not depend on it.) The pack ends in its header (`pack-header.ts`), so that it can be indexed
 * from storage alone.
 */
import type { BlobLocation } from "../store/types.ts";
import { encodeGroup, GROUP_AAD, sealBlobs, type SealUnit, type UserKeys } from "./crypto.ts";
import { sealPackHeader, type PackUnit } from "./pack-header.ts";

/** Blobs smaller than this are sealed in groups of about `GROUP_BYTES`, `GROUP_MEMBERS` at most. */
export const GROUP_BELOW = 64 * 1024;
const GROUP_BYTES = 256 * 1024;
const GROUP_MEMBERS = 4096;
/** How every tree's bytes begin (`encodeTree`). */
const TREE_PREFIX = new TextEncoder().encode('{"v":1,"e":[');
const looksLikeTree = (bytes: Uint8Array): boolean => bytes.length >= TREE_PREFIX.length && TREE_PREFIX.every((b, i) => bytes[i] === b);

export interface PlainBlob {
  /** The blob's stored id (`blobId`). */
  id: string;
  plain: Uint8Array;
}

export interface SealedPack {
  /** The pack object's bytes, in pieces to write one after another (its header last). */
  parts: Uint8Array[];
  /** Where each blob is in it (grouped blobs share their group's range). */
  rows: Array<BlobLocation & { id: string }>;
}

/** Seals `blobs` (ids distinct) as the pack object `pack`. */
export async function sealPack(keys: UserKeys, pack: string, blobs: readonly PlainBlob[]): Promise<SealedPack> {
  const units: Array<SealUnit & { ids: string[]; grouped: boolean }> = [];
  const forming = { trees: { members: [] as PlainBlob[], bytes: 0 }, files: { members: [] as PlainBlob[], bytes: 0 } };
  const closeGroup = (group: { members: PlainBlob[]; bytes: number }): void => {
    if (group.members.length > 0) units.push({ aad: GROUP_AAD, plain: encodeGroup(group.members), ids: group.members.map((m) => m.id), grouped: true });
    group.members = [];
    group.bytes = 0;
  };
  for (const blob of blobs) {
    if (blob.plain.length >= GROUP_BELOW) {
      units.push({ aad: blob.id, plain: blob.plain, ids: [blob.id], grouped: false });
      continue;
    }
    const group = looksLikeTree(blob.plain) ? forming.trees : forming.files;
    group.members.push(blob);
    group.bytes += blob.plain.length;
    if (group.bytes >= GROUP_BYTES || group.members.length >= GROUP_MEMBERS) closeGroup(group);
  }
  closeGroup(forming.files);
  closeGroup(forming.trees);
  const parts: Uint8Array[] = [];
  const rows: SealedPack["rows"] = [];
  const header: PackUnit[] = [];
  let offset = 0;
  (await sealBlobs(keys, units)).forEach((sealed, i) => {
    const length = sealed.reduce((n, p) => n + p.length, 0);
    const unit = units[i]!;
    parts.push(...sealed);
    header.push({ length, grouped: unit.grouped, ids: unit.ids });
    for (const id of unit.ids) rows.push(unit.grouped ? { id, pack, offset, length, grouped: true } : { id, pack, offset, length });
    offset += length;
  });
  if (rows.length > 0) parts.push(...(await sealPackHeader(keys, pack, header)));
  return { parts, rows };
}
