/**
 * The vault's keys layer: each user's keys, unwrapped from the database's wrapped key with the
 * master key (a user without one gets one on first use). Unwrapped keys are kept for the
 * process's life; a lookup that fails is not kept, so the next use tries again. Before a user's
 * first pack, their wrapped key is stored in the bucket too (`catalog.ts`), once.
 */
import type { BlobStore } from "../blobs/types.ts";
import type { Store } from "../store/types.ts";
import { userRecordKey, writeUserRecord } from "./catalog.ts";
import { newWrappedUserKey, unwrapUserKeys, type UserKeys } from "./crypto.ts";

export interface Keyring {
  keysOf(userId: string): Promise<UserKeys>;
  /** Makes sure the bucket holds the user's record (id, name, wrapped key): checked once per process. */
  recorded(userId: string): Promise<void>;
}

export function createKeyring(deps: { store: Store; master: Buffer; blobs?: BlobStore }): Keyring {
  const { store, master, blobs } = deps;
  const cache = new Map<string, Promise<UserKeys>>();
  const records = new Map<string, Promise<void>>();
  const keyring: Keyring = {
    recorded(userId) {
      let done = records.get(userId);
      if (!done && blobs) {
        done = (async () => {
          await keyring.keysOf(userId);
          if (await blobs.stat(userRecordKey(userId))) return;
          const [user, wrapped] = await Promise.all([store.userById(userId), store.userKey(userId)]);
          if (!user || !wrapped) return;
          await writeUserRecord(blobs, master, { id: user.id, name: user.name, createdAt: user.createdAt, wrapped });
        })();
        done.catch(() => records.delete(userId));
        records.set(userId, done);
      }
      return done ?? Promise.resolve();
    },
    keysOf(userId) {
      let keys = cache.get(userId);
      if (!keys) {
        keys = (async () => {
          const wrapped = (await store.userKey(userId)) ?? (await store.insertUserKey(userId, newWrappedUserKey(master)));
          return unwrapUserKeys(master, wrapped);
        })();
        keys.catch(() => cache.delete(userId));
        cache.set(userId, keys);
      }
      return keys;
    },
  };
  return keyring;
}
