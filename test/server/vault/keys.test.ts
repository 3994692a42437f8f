/** The vault's keys layer: one key per user, made once, kept wrapped in the database, opened only by its master key. */
import { expect, test } from "bun:test";
import { openStore, createUserToken } from "../../../server/startup.ts";
import { blobId } from "../../../server/vault/crypto.ts";
import { createKeyring } from "../../../server/vault/keys.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { MASTER } from "./layers.ts";

const tempDir = tempDirs("catty-keys-");

test("a user's key is made once and stored wrapped; another keyring on the same database opens the same key; another master key opens nothing", async () => {
  const store = await openStore({ dataDir: tempDir() });
  await createUserToken(store, "alice");
  await createUserToken(store, "bob");
  const [alice, bob] = [(await store.userByName("alice"))!.id, (await store.userByName("bob"))!.id];
  const a = createKeyring({ store, master: MASTER });
  const [k1, k2] = await Promise.all([a.keysOf(alice), a.keysOf(alice)]);
  expect(k1).toBe(k2);
  const wrapped = await store.userKey(alice);
  expect(wrapped).not.toBeNull();
  expect(Buffer.from(wrapped!, "base64").includes(k1.seal)).toBe(false);
  const again = await createKeyring({ store, master: MASTER }).keysOf(alice);
  expect(blobId(again, "00".repeat(32))).toBe(blobId(k1, "00".repeat(32)));
  expect(blobId(await a.keysOf(bob), "00".repeat(32))).not.toBe(blobId(k1, "00".repeat(32)));
  const wrong = createKeyring({ store, master: Buffer.alloc(32, 1) });
  await expect(wrong.keysOf(alice)).rejects.toThrow(/CATTY_MASTER_KEY/);
  // A failure is not remembered: the same keyring tries again (and fails again, the key being wrong).
  await expect(wrong.keysOf(alice)).rejects.toThrow(/CATTY_MASTER_KEY/);
  await store.close();
});
