/**
 * The keys and ciphers of stored saves. The operator's **master key** (`CATTY_MASTER_KEY`, or
 * `<dataDir>/master-key` made on first start) wraps one random **user key** per user; the
 * wrapped key is kept in the database. From a user key come two keys (HKDF-SHA256): one
 * encrypts blobs (AES-256-GCM), one names them: a blob's stored id is HMAC-SHA256 of its
 * content hash, so the store's names reveal nothing, and the same file of two users is two
 * unrelated blobs. A sealed blob is `nonce (12) ‖ ciphertext ‖ tag (16)`, its id bound in as
 * associated data (a blob moved under another id does not open). The plaintext is a flag byte
 * (0 raw, 1 zstd) and the payload, compressed when that makes it smaller.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

export const KEY_BYTES = 32;
const NONCE = 12;
const TAG = 16;
const WRAP_AAD = Buffer.from("catty user key v1");

export interface UserKeys {
  /** Encrypts blobs. */
  readonly seal: Buffer;
  /** Names blobs. */
  readonly name: Buffer;
}

/** Parses a master key: 64 hex characters or base64 of 32 bytes. */
export function parseMasterKey(text: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  if (key.length !== KEY_BYTES || (!/^[0-9a-fA-F]{64}$/.test(t) && !/^[A-Za-z0-9+/_-]{43}=?$/.test(t))) {
    throw new Error("The master key must be 32 bytes, written as 64 hex characters or in base64 (openssl rand -hex 32).");
  }
  return key;
}

/**
 * `nonce ‖ ciphertext ‖ tag` of the concatenated `pieces`, as pieces to store one after another:
 * each goes through the cipher in turn, which gives the same ciphertext without copying them
 * together first.
 */
function gcmSeal(key: Buffer, pieces: readonly Uint8Array[], aad: Uint8Array): Uint8Array[] {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  const out: Uint8Array[] = [nonce, ...pieces.map((p) => cipher.update(p))];
  const rest = cipher.final(); // empty for GCM
  if (rest.length > 0) out.push(rest);
  out.push(cipher.getAuthTag());
  return out;
}

function gcmOpen(key: Buffer, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (sealed.length < NONCE + TAG) throw new Error("sealed data is too short");
  const nonce = sealed.subarray(0, NONCE);
  const tag = sealed.subarray(sealed.length - TAG);
  const decipher = createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const body = decipher.update(sealed.subarray(NONCE, sealed.length - TAG));
  const rest = decipher.final(); // checks the tag; empty for GCM
  return rest.length === 0 ? body : Buffer.concat([body, rest]);
}

/** A new user key, wrapped by the master key for the database. */
export function newWrappedUserKey(master: Buffer): string {
  return Buffer.concat(gcmSeal(master, [randomBytes(KEY_BYTES)], WRAP_AAD)).toString("base64");
}

/** The user's keys from their wrapped key; throws when the master key is not the one that wrapped it. */
export function unwrapUserKeys(master: Buffer, wrapped: string): UserKeys {
  let key: Buffer;
  try {
    key = gcmOpen(master, Buffer.from(wrapped, "base64"), WRAP_AAD);
  } catch {
    throw new Error("A user's save key does not open with this server's master key: is CATTY_MASTER_KEY the one the saves were made with?");
  }
  const derive = (info: string): Buffer => Buffer.from(hkdfSync("sha256", key, Buffer.alloc(0), info, KEY_BYTES));
  return { seal: derive("catty saves seal v1"), name: derive("catty saves name v1") };
}

/** The stored id of the blob whose content hash is `hash` (hex SHA-256). */
export function blobId(keys: UserKeys, hash: string): string {
  // Bun's hasher: a restore or an upload names every blob, and node:crypto's Hmac costs half again as much.
  return new Bun.CryptoHasher("sha256", keys.name).update(hash).digest("hex");
}

/** A sealed blob's first plaintext byte: how the rest is encoded. */
const RAW = Buffer.of(0);
const ZSTD = Buffer.of(1);

/** What is sealed as one: a blob (its associated data its id) or a group of small blobs. */
export interface SealUnit {
  /** Associated data: the blob's id, or `GROUP_AAD`. */
  aad: string;
  plain: Uint8Array;
}

/**
 * Seals many units, compressing them side by side on Bun's worker threads. Resolves to each
 * unit's sealed pieces, in order.
 */
export async function sealBlobs(keys: UserKeys, units: readonly SealUnit[]): Promise<Uint8Array[][]> {
  const packed = await Promise.all(units.map(({ plain }) => (plain.length >= 64 ? Bun.zstdCompress(plain, { level: 1 }) : null)));
  return units.map(({ aad, plain }, i) => {
    const zipped = packed[i];
    const [flag, payload] = zipped && zipped.length < plain.length - 16 ? [ZSTD, zipped] : [RAW, plain];
    return gcmSeal(keys.seal, [flag, payload], Buffer.from(aad));
  });
}

/**
 * Decrypts and decompresses a unit (decompressing on Bun's worker threads, so many can be opened
 * side by side); throws if it was altered or sealed with other associated data or another user's
 * key. `maxBytes` caps the result.
 */
export async function openBlob(keys: UserKeys, aad: string, sealed: Uint8Array, maxBytes: number): Promise<Uint8Array> {
  const body = gcmOpen(keys.seal, sealed, Buffer.from(aad));
  if (body[0] === 0) return body.subarray(1);
  if (body[0] !== 1) throw new Error("unknown blob encoding");
  // Sealed by this server, so the frame is ours; the cap still guards against a bug.
  const out = await Bun.zstdDecompress(body.subarray(1));
  if (out.length > maxBytes) throw new Error("a blob is larger than blobs may be");
  return out;
}

/**
 * Small blobs are sealed in groups: thousands of small files cost a few hundred ciphers and
 * compressions instead of one each, and compress better together. A group's associated data is
 * this constant; what binds each blob to its id is the group's own list of members, sealed with
 * it: a count (u32), each member's id (32 bytes) and length (u32), then the members' bytes.
 */
export const GROUP_AAD = "catty blob group v1";
const ID_BYTES = 32;

export function encodeGroup(members: ReadonlyArray<{ id: string; plain: Uint8Array }>): Uint8Array {
  const head = 4 + members.length * (ID_BYTES + 4);
  const out = Buffer.allocUnsafe(head + members.reduce((n, m) => n + m.plain.length, 0));
  out.writeUInt32BE(members.length, 0);
  let at = 4;
  let body = head;
  for (const { id, plain } of members) {
    if (out.write(id, at, ID_BYTES, "hex") !== ID_BYTES) throw new Error("a blob id is not 32 bytes of hex");
    out.writeUInt32BE(plain.length, at + ID_BYTES);
    at += ID_BYTES + 4;
    out.set(plain, body);
    body += plain.length;
  }
  return out;
}

/** The members of an opened group by id; throws if its list does not add up to its bytes. */
export function decodeGroup(group: Uint8Array): Map<string, Uint8Array> {
  const bytes = Buffer.from(group.buffer, group.byteOffset, group.byteLength);
  if (bytes.length < 4) throw new Error("a blob group is cut short");
  const count = bytes.readUInt32BE(0);
  let body = 4 + count * (ID_BYTES + 4);
  if (body > bytes.length) throw new Error("a blob group is cut short");
  const out = new Map<string, Uint8Array>();
  for (let i = 0, at = 4; i < count; i++, at += ID_BYTES + 4) {
    const length = bytes.readUInt32BE(at + ID_BYTES);
    if (body + length > bytes.length) throw new Error("a blob group is cut short");
    out.set(bytes.toString("hex", at, at + ID_BYTES), bytes.subarray(body, body + length));
    body += length;
  }
  if (body !== bytes.length) throw new Error("a blob group has bytes no member claims");
  return out;
}
