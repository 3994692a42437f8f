/**
 * The user's secrets (a GitHub token, API keys of their own tools), kept on their machine only:
 * `$CATTY_HOME/secrets.json` (0600, in a 0700 directory), each value sealed with AES-256-GCM under
 * a random IV, its name bound to it. Where the key lives is written in the file:
 *
 * - `os`: a random key in the operating system's credential store (`Bun.secrets`: the macOS
 *   Keychain, libsecret on Linux, the Windows Credential Manager), under an id kept in the file.
 *   The file alone, or a copy of it, opens nowhere: the key never touches the disk in the clear.
 * - `file`, where there is no such store (a Linux machine without a D-Bus session or keyring, as
 *   on most servers): a key derived with scrypt from facts of this machine and account (host name,
 *   home directory, uid and account name) and a random salt kept beside the file
 *   (`secrets.salt`). Those facts are not secret: this protects against the file shown or copied
 *   on its own, and a copy opening on another machine or account by accident — not against
 *   someone who can read `$CATTY_HOME` as this user. When a store is usable later, the next
 *   secret added moves every value to a key there (if every one opens here) and the salt goes.
 *
 * A value that does not open is reported by name, never skipped silently. `catty new` sends the
 * opened values in its create request, and only there.
 */
import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { currentAccount } from "../lib/account.ts";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../lib/safe-fs.ts";
import { CattyError } from "../protocol/errors.ts";
import { checkSecretName } from "../protocol/secrets.ts";

export { checkSecretName };

const Sealed = z.object({ iv: z.string(), data: z.string(), tag: z.string() });
const SecretsFile = z.object({
  version: z.literal(1),
  /** Where the key is: absent in files made before there was a choice (the file's own key). */
  key: z.enum(["os", "file"]).optional(),
  /** The key's name in the OS credential store (with `key: "os"`). */
  keyId: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/).optional(),
  secrets: z.record(z.string(), Sealed),
});
type SecretsFile = z.infer<typeof SecretsFile>;

/** The GitHub token goes by both names tools read; removing one removes the other. */
export const GITHUB_NAMES = ["GH_TOKEN", "GITHUB_TOKEN"] as const;

/** The OS credential store, as the secret store uses it (tests inject their own). */
export interface KeyVault {
  /** How it reads in a message: "the system credential store". */
  readonly name: string;
  /** The value stored under `id`, null when there is none; rejects when the store cannot be used. */
  get(id: string): Promise<string | null>;
  set(id: string, value: string): Promise<void>;
}

/** Where `Bun.secrets` keeps things for catty. */
const VAULT_SERVICE = "catty-secrets";
/** A store that does not answer within this is treated as absent (a keyring waiting on a prompt…). */
const VAULT_TIMEOUT_MS = 10_000;

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${VAULT_TIMEOUT_MS / 1000} s`)), VAULT_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The operating system's credential store, through `Bun.secrets`. */
export function osKeyVault(): KeyVault {
  const name = process.platform === "darwin" ? "the macOS Keychain" : process.platform === "win32" ? "the Windows Credential Manager" : "the system keyring (libsecret)";
  return {
    name,
    get: (id) => withTimeout(Bun.secrets.get({ service: VAULT_SERVICE, name: id }), name),
    // Windows: this computer only (a roaming profile would carry the key to others).
    set: (id, value) => withTimeout(Bun.secrets.set({ service: VAULT_SERVICE, name: id, value, persist: "local" }), name),
  };
}

export interface OpenedSecrets {
  values: Record<string, string>;
  /** Names whose values do not open here. */
  failed: string[];
  /** Why none opened, when the reason is the key's store rather than the values. */
  problem: string | null;
}

export interface SecretStore {
  readonly file: string;
  /** Names, sorted. */
  names(): string[];
  /** Every value that opens, and the names of those that do not. */
  open(): Promise<OpenedSecrets>;
  /** Where the key is: the OS credential store or the file's own; null before the first secret. */
  keyPlace(): "os" | "file" | null;
  set(name: string, value: string): Promise<void>;
  /** Removes `name` (with its GitHub twin); resolves to the names removed. */
  remove(name: string): Promise<string[]>;
}

/** What binds the key to this machine and account. */
function machineSecret(): string {
  // The uid and the account's name from the system (never $USER, which differs between shells).
  const account = currentAccount();
  const user = `${process.getuid?.() ?? ""}:${account?.name ?? ""}`;
  return ["catty-secrets-v1", hostname(), homedir(), user].join("\0");
}

export function openSecretStore(home: string, vault: KeyVault = osKeyVault()): SecretStore {
  const file = join(home, "secrets.json");
  const saltFile = join(home, "secrets.salt");

  const read = (): SecretsFile => {
    if (!existsSync(file)) return { version: 1, secrets: {} };
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      throw new CattyError("bad_request", `${file} is not valid JSON.`, `Move it away and add your secrets again with \`catty secrets add NAME\`.`);
    }
    const checked = SecretsFile.safeParse(parsed);
    if (!checked.success) throw new CattyError("bad_request", `${file} is not a Catty secrets file.`, "Move it away and add your secrets again.");
    return checked.data;
  };

  let cachedKey: Buffer | null = null;
  /** The file's own key (`key: "file"`): from this machine's facts and the salt beside the file. */
  const fileKey = (create: boolean): Buffer | null => {
    let salt: Buffer;
    if (existsSync(saltFile)) {
      salt = Buffer.from(readFileSync(saltFile, "utf8").trim(), "base64");
    } else {
      if (!create) return null;
      mkdirSync(home, { recursive: true, mode: 0o700 });
      chmodSync(home, 0o700);
      salt = randomBytes(32);
      // Written once; a second writer racing here would only make earlier values unreadable.
      writeFileSync(saltFile, `${salt.toString("base64")}\n`, { mode: 0o600, flag: "wx" });
    }
    return scryptSync(machineSecret(), salt, 32, { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  };

  /** The key of the secrets in `data`: null (with why) when it cannot be had. */
  const existingKey = async (data: SecretsFile): Promise<{ key: Buffer | null; problem: string | null }> => {
    if (cachedKey) return { key: cachedKey, problem: null };
    if (data.key !== "os") {
      cachedKey = fileKey(false);
      return { key: cachedKey, problem: null };
    }
    let stored: string | null;
    try {
      stored = await vault.get(data.keyId ?? "");
    } catch (err) {
      return { key: null, problem: `${vault.name} could not be reached (${(err as Error).message}), and it holds their key` };
    }
    const key = stored ? Buffer.from(stored, "base64") : null;
    if (!key || key.length !== 32) return { key: null, problem: `their key is not in ${vault.name} of this machine and account` };
    cachedKey = key;
    return { key, problem: null };
  };

  /** A new random key in the OS credential store, read back to be sure; null when there is no usable store. */
  const newVaultKey = async (): Promise<{ id: string; key: Buffer } | null> => {
    const id = randomBytes(18).toString("base64url");
    const key = randomBytes(32);
    try {
      await vault.set(id, key.toString("base64"));
      return (await vault.get(id)) === key.toString("base64") ? { id, key } : null;
    } catch {
      return null; // no usable store here
    }
  };

  /** Set when the values just moved to the OS credential store: the salt goes once the file is written. */
  let retireSalt = false;

  /**
   * The key for a new secret: the OS credential store's when it works — the first secret puts a
   * key there, and values sealed under the file's own key move to it (only when every one of
   * them opens, so none is lost) — else the file's own key.
   */
  const keyFor = async (data: SecretsFile): Promise<Buffer> => {
    const established = data.key !== undefined || existsSync(saltFile);
    if (established && data.key === "os") {
      const { key, problem } = await existingKey(data);
      if (key) return key;
      throw new CattyError("unavailable", `Cannot add a secret: ${problem}.`, "Unlock or start your keyring and try again; or move secrets.json away and add your secrets again.");
    }
    const old = established ? (await existingKey(data)).key : null;
    const names = Object.keys(data.secrets);
    const opened = names.map((n) => [n, old ? unseal(old, n, data.secrets[n] as z.infer<typeof Sealed>) : null] as const);
    if (opened.every(([, v]) => v !== null)) {
      const fresh = await newVaultKey();
      if (fresh) {
        for (const [n, v] of opened) data.secrets[n] = seal(fresh.key, n, v as string);
        data.key = "os";
        data.keyId = fresh.id;
        retireSalt = existsSync(saltFile);
        return (cachedKey = fresh.key);
      }
    }
    data.key = "file";
    delete data.keyId;
    return (cachedKey = old ?? (fileKey(true) as Buffer));
  };

  const write = async (data: SecretsFile): Promise<void> => {
    mkdirSync(home, { recursive: true, mode: 0o700 });
    chmodSync(home, 0o700);
    await writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, 0o600);
  };

  const seal = (k: Buffer, name: string, value: string): z.infer<typeof Sealed> => {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", k, iv);
    // The name is bound to its value: a value moved under another name does not open.
    cipher.setAAD(Buffer.from(name));
    const data = Buffer.concat([cipher.update(value, "utf8"), cipher.final()]);
    return { iv: iv.toString("base64"), data: data.toString("base64"), tag: cipher.getAuthTag().toString("base64") };
  };

  const unseal = (k: Buffer, name: string, sealed: z.infer<typeof Sealed>): string | null => {
    try {
      const decipher = createDecipheriv("aes-256-gcm", k, Buffer.from(sealed.iv, "base64"));
      decipher.setAAD(Buffer.from(name));
      decipher.setAuthTag(Buffer.from(sealed.tag, "base64"));
      return Buffer.concat([decipher.update(Buffer.from(sealed.data, "base64")), decipher.final()]).toString("utf8");
    } catch {
      return null;
    }
  };

  return {
    file,
    names: () => Object.keys(read().secrets).sort(),
    keyPlace() {
      const data = read();
      return data.key ?? (existsSync(saltFile) ? "file" : null);
    },
    async open() {
      const data = read();
      const names = Object.keys(data.secrets).sort();
      if (names.length === 0) return { values: {}, failed: [], problem: null };
      const { key: k, problem } = await existingKey(data);
      const values: Record<string, string> = {};
      const failed: string[] = [];
      for (const name of names) {
        const value = k ? unseal(k, name, data.secrets[name] as z.infer<typeof Sealed>) : null;
        if (value === null) failed.push(name);
        else values[name] = value;
      }
      return { values, failed, problem };
    },
    async set(name, value) {
      const problem = checkSecretName(name);
      if (problem) throw new CattyError("bad_request", problem);
      const data = read();
      data.secrets[name] = seal(await keyFor(data), name, value);
      await write(data);
      if (retireSalt) {
        retireSalt = false;
        rmSync(saltFile, { force: true });
      }
    },
    async remove(name) {
      const data = read();
      const twins: readonly string[] = (GITHUB_NAMES as readonly string[]).includes(name) ? GITHUB_NAMES : [name];
      const removed = twins.filter((n) => n in data.secrets);
      if (removed.length === 0) return [];
      for (const n of removed) delete data.secrets[n];
      await write(data);
      return removed;
    },
  };
}
