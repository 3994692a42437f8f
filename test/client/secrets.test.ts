/**
 * The secret store: values sealed with AES-256-GCM under a key in the OS credential store where
 * there is one, else one bound to this machine and account; files private, names checked; a
 * copied store does not open elsewhere and says which values it could not read; a value moved
 * under another name does not open; the GitHub token's two names go together. The store's choice
 * is tested with injected credential stores (one that works, one that is absent, one that lies);
 * the file tests use an absent one, as most servers are.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openSecretStore as openWith, osKeyVault, type KeyVault } from "../../src/client/secrets.ts";
import { checkSecretName } from "../../src/protocol/secrets.ts";
import { tempDirs } from "../helpers/fs.ts";

const tempDir = tempDirs("catty-secrets-");

/** No credential store (a Linux machine without a D-Bus session): every call fails. */
const NO_VAULT: KeyVault = {
  name: "no store",
  get: () => Promise.reject(new Error("libsecret not available")),
  set: () => Promise.reject(new Error("libsecret not available")),
};

/** A working credential store, in memory (shared by the stores given it, as the real one is). */
function memoryVault(): KeyVault & { entries: Map<string, string> } {
  const entries = new Map<string, string>();
  return {
    name: "the test keychain",
    entries,
    get: async (id) => entries.get(id) ?? null,
    set: async (id, value) => void entries.set(id, value),
  };
}

/** The file's own key: what these first tests are about. */
const openSecretStore = (home: string, vault: KeyVault = NO_VAULT) => openWith(home, vault);
const ROOT = join(import.meta.dir, "../..");

describe("the secret store", () => {
  test("a value comes back; the files are private and hold no value in the clear", async () => {
    const home = join(tempDir(), ".catty");
    const store = openSecretStore(home);
    expect(await store.open()).toEqual({ values: {}, failed: [], problem: null });
    await store.set("NPM_TOKEN", "npm_very-secret-value");
    await store.set("OTHER", "second");
    expect(store.names()).toEqual(["NPM_TOKEN", "OTHER"]);
    expect((await openSecretStore(home).open())).toEqual({ values: { NPM_TOKEN: "npm_very-secret-value", OTHER: "second" }, failed: [], problem: null });
    expect(statSync(home).mode & 0o777).toBe(0o700);
    expect(statSync(join(home, "secrets.json")).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, "secrets.salt")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(home, "secrets.json"), "utf8")).not.toContain("very-secret");
    // Each value has its own IV: the same value twice seals differently.
    await store.set("OTHER", "npm_very-secret-value");
    const file = JSON.parse(readFileSync(join(home, "secrets.json"), "utf8"));
    expect(file.secrets.OTHER.iv).not.toBe(file.secrets.NPM_TOKEN.iv);
    expect(file.secrets.OTHER.data).not.toBe(file.secrets.NPM_TOKEN.data);
  });

  test("a value moved under another name does not open, and is named", async () => {
    const home = join(tempDir(), ".catty");
    const store = openSecretStore(home);
    await store.set("A_TOKEN", "a");
    const file = JSON.parse(readFileSync(join(home, "secrets.json"), "utf8"));
    file.secrets.B_TOKEN = file.secrets.A_TOKEN;
    writeFileSync(join(home, "secrets.json"), JSON.stringify(file));
    expect((await openSecretStore(home).open())).toEqual({ values: { A_TOKEN: "a" }, failed: ["B_TOKEN"], problem: null });
  });

  test("a copy does not open for another account (another home), and says which values it could not read", () => {
    // Each step in a process of its own, with its own HOME from the start.
    const store = (HOME: string, dir: string, code: string): unknown => {
      const script = `const { openSecretStore } = await import(${JSON.stringify(join(ROOT, "src/client/secrets.ts"))}); const s = openSecretStore(${JSON.stringify(dir)}, { name: "none", get: () => Promise.reject(new Error("none")), set: () => Promise.reject(new Error("none")) }); ${code}`;
      const res = Bun.spawnSync([process.execPath, "-e", script], { env: { ...process.env, HOME } });
      if (res.exitCode !== 0) throw new Error(res.stderr.toString());
      return JSON.parse(res.stdout.toString());
    };
    const mine = tempDir();
    const home = join(mine, ".catty");
    store(mine, home, `await s.set("NPM_TOKEN", "v1"); await s.set("GH_TOKEN", "v2"); console.log("1");`);
    expect(store(mine, home, "console.log(JSON.stringify(await s.open()));")).toEqual({ values: { GH_TOKEN: "v2", NPM_TOKEN: "v1" }, failed: [], problem: null });
    const elsewhere = tempDir();
    cpSync(home, join(elsewhere, ".catty"), { recursive: true });
    expect(store(elsewhere, join(elsewhere, ".catty"), "console.log(JSON.stringify(await s.open()));")).toEqual({ values: {}, failed: ["GH_TOKEN", "NPM_TOKEN"], problem: null });
  });

  test("with a credential store: the key goes there (nothing beside the file to derive it from); the file alone opens nowhere", async () => {
    const vault = memoryVault();
    const home = join(tempDir(), ".catty");
    const store = openSecretStore(home, vault);
    expect(store.keyPlace()).toBeNull();
    await store.set("NPM_TOKEN", "npm_secret");
    expect(store.keyPlace()).toBe("os");
    expect(existsSync(join(home, "secrets.salt"))).toBe(false);
    expect(vault.entries.size).toBe(1);
    const file = readFileSync(join(home, "secrets.json"), "utf8");
    for (const key of vault.entries.values()) expect(file).not.toContain(key);
    expect(await openSecretStore(home, vault).open()).toEqual({ values: { NPM_TOKEN: "npm_secret" }, failed: [], problem: null });
    // The same file, and another account's store (or this one's, emptied): nothing opens, and it says why.
    const other = await openSecretStore(home, memoryVault()).open();
    expect(other).toEqual({ values: {}, failed: ["NPM_TOKEN"], problem: expect.stringContaining("not in the test keychain") });
    // The store gone (no D-Bus session any more): nothing opens, it says why, and nothing is added under another key.
    const gone = await openSecretStore(home, NO_VAULT).open();
    expect(gone).toEqual({ values: {}, failed: ["NPM_TOKEN"], problem: expect.stringContaining("could not be reached") });
    await expect(openSecretStore(home, NO_VAULT).set("OTHER", "x")).rejects.toThrow("Cannot add a secret");
    expect(openSecretStore(home, vault).names()).toEqual(["NPM_TOKEN"]);
  });

  test("without a credential store (it fails, or gives back another key): the file's own key; once a store works, the next secret moves them all there", async () => {
    const home = join(tempDir(), ".catty");
    await openSecretStore(home, NO_VAULT).set("A", "1");
    await openSecretStore(home, NO_VAULT).set("B", "2");
    expect(openSecretStore(home, NO_VAULT).keyPlace()).toBe("file");
    expect(existsSync(join(home, "secrets.salt"))).toBe(true);
    expect(await openSecretStore(home, NO_VAULT).open()).toEqual({ values: { A: "1", B: "2" }, failed: [], problem: null });
    // A store that works now: adding a secret moves every value under a key kept there, and the salt goes.
    const vault = memoryVault();
    await openSecretStore(home, vault).set("C", "3");
    expect(openSecretStore(home, vault).keyPlace()).toBe("os");
    expect(vault.entries.size).toBe(1);
    expect(existsSync(join(home, "secrets.salt"))).toBe(false);
    expect(await openSecretStore(home, vault).open()).toEqual({ values: { A: "1", B: "2", C: "3" }, failed: [], problem: null });
    expect((await openSecretStore(home, NO_VAULT).open()).failed).toEqual(["A", "B", "C"]);

    // A value that does not open here (made on another machine) is never lost by a move: the store stays on the file's key.
    const mixed = join(tempDir(), ".catty");
    await openSecretStore(mixed, NO_VAULT).set("MINE", "m");
    const file = JSON.parse(readFileSync(join(mixed, "secrets.json"), "utf8"));
    file.secrets.FOREIGN = { iv: file.secrets.MINE.iv, data: file.secrets.MINE.data, tag: file.secrets.MINE.tag };
    writeFileSync(join(mixed, "secrets.json"), JSON.stringify(file));
    await openSecretStore(mixed, memoryVault()).set("MORE", "x");
    expect(openSecretStore(mixed, NO_VAULT).keyPlace()).toBe("file");
    expect(await openSecretStore(mixed, NO_VAULT).open()).toEqual({ values: { MINE: "m", MORE: "x" }, failed: ["FOREIGN"], problem: null });

    const lying: KeyVault = { name: "a broken store", get: async () => "not the key", set: async () => {} };
    const home2 = join(tempDir(), ".catty");
    await openSecretStore(home2, lying).set("C", "3");
    expect(openSecretStore(home2, lying).keyPlace()).toBe("file");
    expect(await openSecretStore(home2, NO_VAULT).open()).toEqual({ values: { C: "3" }, failed: [], problem: null });
  });

  test("on this machine, the real store is tried and a store that is not there fails cleanly into the file's key", async () => {
    const home = join(tempDir(), ".catty");
    const store = openWith(home, osKeyVault());
    await store.set("PROBE_TOKEN", "v");
    expect(["os", "file"]).toContain(store.keyPlace() as string);
    expect(await openWith(home, osKeyVault()).open()).toEqual({ values: { PROBE_TOKEN: "v" }, failed: [], problem: null });
    // Where there is a real store (a developer's Keychain), the test's key leaves it again.
    const { keyId } = JSON.parse(readFileSync(join(home, "secrets.json"), "utf8")) as { keyId?: string };
    if (keyId) await Bun.secrets.delete({ service: "catty-secrets", name: keyId });
  });

  test("removing GH_TOKEN removes GITHUB_TOKEN too, and the other way round", async () => {
    const store = openSecretStore(join(tempDir(), ".catty"));
    for (const n of ["GH_TOKEN", "GITHUB_TOKEN", "KEEP"]) await store.set(n, "x");
    expect(await store.remove("GITHUB_TOKEN")).toEqual(["GH_TOKEN", "GITHUB_TOKEN"]);
    expect(store.names()).toEqual(["KEEP"]);
    expect(await store.remove("NOPE")).toEqual([]);
  });

  test("names: capitals, digits and underscores; the session's own and credential prefixes are refused, saying why", async () => {
    for (const ok of ["NPM_TOKEN", "_X", "A1", "OPENAI_API_KEY", "GH_TOKEN"]) expect(checkSecretName(ok)).toBeNull();
    for (const bad of ["npm_token", "1ABC", "A-B", "", "A B"]) expect(checkSecretName(bad)).toContain("not a valid name");
    for (const reserved of ["PATH", "HOME", "USER", "SHELL", "PWD", "TERM"]) expect(checkSecretName(reserved)).toContain("set by the session");
    expect(checkSecretName("CATTY_TOKEN")).toContain("Catty's own settings");
    expect(checkSecretName("ANTHROPIC_API_KEY")).toContain("--own-api-key");
    for (const cloud of ["AWS_SECRET_ACCESS_KEY", "FLY_API_TOKEN", "KUBECONFIG"]) expect(checkSecretName(cloud)).toContain("credentials");
    await expect(openSecretStore(join(tempDir(), ".catty")).set("PATH", "x")).rejects.toThrow("set by the session");
  });
});
