/**
 * The secret store: values sealed with AES-256-GCM under a key bound to this machine and account,
 * files private, names checked; a copied store does not open elsewhere and says which values it
 * could not read; a value moved under another name does not open; the GitHub token's two names
 * go together.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openSecretStore } from "../../src/client/secrets.ts";
import { checkSecretName } from "../../src/protocol/secrets.ts";
import { tempDirs } from "../helpers/fs.ts";

const tempDir = tempDirs("catty-secrets-");
const ROOT = join(import.meta.dir, "../..");

describe("the secret store", () => {
  test("a value comes back; the files are private and hold no value in the clear", async () => {
    const home = join(tempDir(), ".catty");
    const store = openSecretStore(home);
    expect(store.open()).toEqual({ values: {}, failed: [] });
    await store.set("NPM_TOKEN", "npm_very-secret-value");
    await store.set("OTHER", "second");
    expect(store.names()).toEqual(["NPM_TOKEN", "OTHER"]);
    expect(openSecretStore(home).open()).toEqual({ values: { NPM_TOKEN: "npm_very-secret-value", OTHER: "second" }, failed: [] });
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
    expect(openSecretStore(home).open()).toEqual({ values: { A_TOKEN: "a" }, failed: ["B_TOKEN"] });
  });

  test("a copy does not open for another account (another home), and says which values it could not read", () => {
    // Each step in a process of its own, with its own HOME from the start.
    const store = (HOME: string, dir: string, code: string): unknown => {
      const script = `const { openSecretStore } = await import(${JSON.stringify(join(ROOT, "src/client/secrets.ts"))}); const s = openSecretStore(${JSON.stringify(dir)}); ${code}`;
      const res = Bun.spawnSync([process.execPath, "-e", script], { env: { ...process.env, HOME } });
      if (res.exitCode !== 0) throw new Error(res.stderr.toString());
      return JSON.parse(res.stdout.toString());
    };
    const mine = tempDir();
    const home = join(mine, ".catty");
    store(mine, home, `await s.set("NPM_TOKEN", "v1"); await s.set("GH_TOKEN", "v2"); console.log("1");`);
    expect(store(mine, home, "console.log(JSON.stringify(s.open()));")).toEqual({ values: { GH_TOKEN: "v2", NPM_TOKEN: "v1" }, failed: [] });
    const elsewhere = tempDir();
    cpSync(home, join(elsewhere, ".catty"), { recursive: true });
    expect(store(elsewhere, join(elsewhere, ".catty"), "console.log(JSON.stringify(s.open()));")).toEqual({ values: {}, failed: ["GH_TOKEN", "NPM_TOKEN"] });
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
