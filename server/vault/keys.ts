/**
 * The vault's keys layer: each user's keys, unwrapped from the database's wrapped key with the
 * master key (a user without one gets one on first use). Unwrapped keys are kept for the
 * process's life; a lookup that fails is not kept, so the next use tries again.
 */
import type { Store } from "../store/types.ts";
import { newWrappedUserKey, unwrapUserKeys, type UserKeys } from "./crypto.ts";

export interface Keyring {
  keysOf(userId: string): Promise<UserKeys>;
}

export function createKeyring(deps: { store: Store; master: Buffer }): Keyring {
  const { store, master } = deps;
  const cache = new Map<string, Promise<UserKeys>>();
  return {
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
}
