/** A store with one user, disk blobs and a keyring, for the vault's layer tests. */
import { join } from "node:path";
import { createDiskBlobStore } from "../../../server/blobs/disk.ts";
import { createUserToken, openStore } from "../../../server/listen.ts";
import { createKeyring } from "../../../server/vault/keys.ts";

export const MASTER = Buffer.alloc(32, 9);

export async function layerRig(dir: () => string) {
  const store = await openStore({ dataDir: dir() });
  await createUserToken(store, "alice");
  const blobs = createDiskBlobStore({ dir: join(dir(), "blobs"), secret: "ab".repeat(32) });
  const keyring = createKeyring({ store, master: MASTER });
  return { store, blobs, keyring, alice: (await store.userByName("alice"))!.id };
}
