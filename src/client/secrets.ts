/**
 * The user's secrets (a GitHub token, API keys of their own tools), kept on their machine only:
 * `$CATTY_HOME/secrets.json` (0600, in a 0700 directory), each value sealed with AES-256-GCM under
 * a random IV. The key is derived with scrypt from this machine and account (host name, home
 * directory, uid) and a random salt kept beside the file (`secrets.salt`): a copied pair of files
 * does not open on another machine or account. A value that does not open is reported by name,
 * never skipped silently. `catty new` sends the opened values in its create request, and only there.
 */
import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { currentAccount } from "../lib/account.ts";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../lib/safe-fs.ts";
import { CattyError } from "../protocol/errors.ts";
import { checkSecretName } from "../protocol/secrets.ts";

export { checkSecretName };

const Sealed = z.object({ iv: z.string(), data: z.string(), tag: z.string() });
const SecretsFile = z.object({ version: z.literal(1), secrets: z.record(z.string(), Sealed) });
type SecretsFile = z.infer<typeof SecretsFile>;

/** The GitHub token goes by both names tools read; removing one removes the other. */
export const GITHUB_NAMES = ["GH_TOKEN", "GITHUB_TOKEN"] as const;

export interface SecretStore {
  readonly file: string;
  /** Names, sorted. */
  names(): string[];
  /** Every value that opens, and the names of those that do not. */
  open(): { values: Record<string, string>; failed: string[] };
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

export function openSecretStore(home: string): SecretStore {
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
  const key = (create: boolean): Buffer | null => {
    if (cachedKey) return cachedKey;
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
    cachedKey = scryptSync(machineSecret(), salt, 32, { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
    return cachedKey;
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
    open() {
      const data = read();
      const names = Object.keys(data.secrets).sort();
      if (names.length === 0) return { values: {}, failed: [] };
      const k = key(false);
      const values: Record<string, string> = {};
      const failed: string[] = [];
      for (const name of names) {
        const value = k ? unseal(k, name, data.secrets[name] as z.infer<typeof Sealed>) : null;
        if (value === null) failed.push(name);
        else values[name] = value;
      }
      return { values, failed };
    },
    async set(name, value) {
      const problem = checkSecretName(name);
      if (problem) throw new CattyError("bad_request", problem);
      const data = read();
      data.secrets[name] = seal(key(true) as Buffer, name, value);
      await write(data);
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
