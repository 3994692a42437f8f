/**
 * What the bucket holds besides packs, so that saves can be found again without the database
 * (`recover.ts`): one object per user (`vault-keys/<userId>`: the user's id, name and wrapped
 * key, sealed with the master key) and one per save (`vault-saves/<userId>/<HMAC>`: the save's
 * row and enough of its session's to list it again, sealed with the user's key).
 * Each is bound to its key as associated data, so an object copied under another name does not
 * open. Neither lives under `vault/<userId>/`, where the collection deletes what no row names.
 */
import { z } from "zod";
import { Label } from "../../src/protocol/index.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { SaveRow, SessionRow } from "../store/types.ts";
import { blobId, openBlob, sealBlobs, type UserKeys } from "./crypto.ts";

/** A save's or upload's key in the database: `vault:<root>` for saves in the vault, else an archive's blob key (saves from before). */
export const VAULT_KEY = "vault:";
export const vaultRoot = (key: string | null): string | null => (key?.startsWith(VAULT_KEY) ? key.slice(VAULT_KEY.length) : null);

export const USER_RECORDS = "vault-keys/";
export const SAVE_RECORDS = "vault-saves/";
const MAX_RECORD_BYTES = 1024 * 1024;

export const userRecordKey = (userId: string): string => `${USER_RECORDS}${userId}`;
/** Named by an HMAC under the user's naming key, as blobs are: the name shows neither the session nor the save. */
export const saveRecordKey = (keys: UserKeys, userId: string, sessionId: string, saveId: string): string =>
  `${SAVE_RECORDS}${userId}/${blobId(keys, `save ${sessionId} ${saveId}`)}`;

export const UserRecord = z.object({ v: z.literal(1), id: z.string(), name: z.string(), createdAt: z.string(), wrapped: z.string() });
export type UserRecord = z.infer<typeof UserRecord>;

export const SaveRecord = z.object({
  v: z.literal(1),
  session: z.object({
    id: z.string(),
    label: Label,
    userId: z.string(),
    region: z.string(),
    provider: z.string(),
    command: z.array(z.string()),
    createdAt: z.string(),
  }),
  save: z.object({
    id: z.string(),
    sessionId: z.string(),
    /** Only saves in the vault are recorded. */
    key: z.string().startsWith(VAULT_KEY),
    createdAt: z.string(),
    size: z.number(),
    files: z.number(),
    reason: z.string(),
    added: z.number().nullable(),
  }),
});
export type SaveRecord = z.infer<typeof SaveRecord>;

/** The master key used as a record's sealing key (user records are sealed as user keys are wrapped: by the master key). */
const masterKeys = (master: Buffer): UserKeys => ({ seal: master, name: master });

async function seal(keys: UserKeys, key: string, value: unknown): Promise<Uint8Array> {
  const [pieces] = await sealBlobs(keys, [{ aad: `catty record v1 ${key}`, plain: new TextEncoder().encode(JSON.stringify(value)) }]);
  return Buffer.concat(pieces!);
}

/** The record's value; throws, saying which object, when it does not open or is not one. */
async function open<T>(keys: UserKeys, key: string, bytes: Uint8Array, schema: z.ZodType<T>): Promise<T> {
  let text: string;
  try {
    text = new TextDecoder().decode(await openBlob(keys, `catty record v1 ${key}`, bytes, MAX_RECORD_BYTES));
  } catch {
    throw new Error(`${key} does not decrypt: it was altered, or sealed with another key (is CATTY_MASTER_KEY the one the saves were made with?).`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${key} is not a record this server reads: it is not JSON.`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new Error(`${key} is not a record this server reads: ${parsed.error.issues[0]?.message}.`);
  return parsed.data;
}

export function writeUserRecord(blobs: BlobStore, master: Buffer, user: Omit<UserRecord, "v">): Promise<void> {
  const key = userRecordKey(user.id);
  return seal(masterKeys(master), key, { v: 1, ...user }).then((bytes) => blobs.put(key, bytes));
}

export function readUserRecord(master: Buffer, key: string, bytes: Uint8Array): Promise<UserRecord> {
  return open(masterKeys(master), key, bytes, UserRecord);
}

export async function writeSaveRecord(blobs: BlobStore, keys: UserKeys, session: SessionRow, save: SaveRow): Promise<void> {
  const key = saveRecordKey(keys, session.userId, session.id, save.id);
  const { id, label, userId, region, provider, command, createdAt } = session;
  await blobs.put(key, await seal(keys, key, { v: 1, session: { id, label, userId, region, provider, command, createdAt }, save }));
}

export function readSaveRecord(keys: UserKeys, key: string, bytes: Uint8Array): Promise<SaveRecord> {
  return open(keys, key, bytes, SaveRecord);
}
