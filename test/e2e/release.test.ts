/**
 * The release as users meet it: `release/release.ts` builds two versions (for this machine's
 * platform); their npm packages go to a local Verdaccio registry and their archives to a local
 * download server. Then: `npx catty` runs, `install.sh` installs (and refuses a checksum
 * mismatch, a download location whose archive and SHA256SUMS were swapped together — signed with
 * another key — and a machine without OpenSSL 3), `catty update` moves an npm install and a
 * downloaded binary to the newer version (and refuses the swapped ones), and the check after a
 * command asks once, then not again about the version declined. The release key is the test's
 * own, handed to release.ts as a CI secret would be.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { currentTarget } from "../../src/client/platforms.ts";
import { shellExitCode } from "../helpers/session-flow.ts";
import { Tmux } from "../helpers/tmux.ts";
import { startRegistry, type Registry } from "../helpers/verdaccio.ts";
import { tempDirs } from "../helpers/fs.ts";
import { signRelease } from "../../src/client/release-signature.ts";

const ROOT = join(import.meta.dir, "..", "..");
const target = currentTarget() as string;
const OLD = "0.9.0";
const NEW = "0.9.1";
/** Every directory the release test makes (npm prefixes hold whole installs): removed at the end. */
const tempDir = tempDirs("catty-release-");
const dl = tempDir();
const releases: Record<string, string> = {};
let registry: Registry;
const pem = (key: { export(o: { format: "pem"; type: "pkcs8" }): string | Buffer }): string => key.export({ format: "pem", type: "pkcs8" }).toString();
/** The release key (as a CI secret holds it), and someone else's. */
const SIGNING_KEY = pem(generateKeyPairSync("ed25519").privateKey);
const OTHER_KEY = pem(generateKeyPairSync("ed25519").privateKey);
/** What other download locations serve (`/bad/…`, `/evil/…`), by path; anything else comes from `dl`. */
const other = new Map<string, Uint8Array>();

const files = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const path = new URL(req.url).pathname;
    const special = other.get(path);
    if (special) return new Response(special);
    const name = path.replace(/^\/(bad\/)?/, "");
    if (!/^[\w.-]+$/.test(name) || !existsSync(join(dl, name))) return new Response("not found", { status: 404 });
    return new Response(Bun.file(join(dl, name)));
  },
});
const base = files.url.origin;

async function release(version: string): Promise<string> {
  const out = tempDir();
  const proc = Bun.spawn([process.execPath, join(ROOT, "release", "release.ts"), "--quiet", "--version", version, "--targets", target, "--base-url", base, "--out", out], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, CATTY_RELEASE_SIGNING_KEY: SIGNING_KEY },
  });
  if ((await proc.exited) !== 0) throw new Error(`release ${version} failed:\n${await new Response(proc.stderr).text()}`);
  return out;
}

/** Runs a command to its end without blocking this process (its download server must keep answering). */
async function run(argv: string[], env: Record<string, string | undefined> = {}, cwd?: string): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(argv, { cwd, env: { ...process.env, CATTY_NO_UPDATE_CHECK: "1", ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

beforeAll(async () => {
  const [a, b, r] = await Promise.all([release(OLD), release(NEW), startRegistry()]);
  releases[OLD] = a;
  releases[NEW] = b;
  registry = r;
  // One download location for both versions: their archives, and one SHA256SUMS listing all.
  let sums = "";
  for (const dir of [a, b]) {
    for (const f of readdirSync(dir)) if (f.endsWith(".tar.gz")) copyFileSync(join(dir, f), join(dl, f));
    sums += readFileSync(join(dir, "SHA256SUMS"), "utf8");
  }
  // Combined, it needs a signature of its own: made with the release key, as a release pipeline would.
  const enc = new TextEncoder();
  await Bun.write(join(dl, "SHA256SUMS"), sums);
  await Bun.write(join(dl, "SHA256SUMS.sig"), signRelease(SIGNING_KEY, enc.encode(sums)));
  copyFileSync(join(a, "install.sh"), join(dl, "install.sh"));
  // /bad: checksums that do not match, properly signed (a release made wrong).
  const badSums = sums.replace(/^[0-9a-f]{4}/gm, "0000");
  other.set("/bad/SHA256SUMS", enc.encode(badSums));
  other.set("/bad/SHA256SUMS.sig", signRelease(SIGNING_KEY, enc.encode(badSums)));
  // /evil: a download location taken over: other binaries, and a SHA256SUMS that matches them, signed with another key.
  const evil = tempDir();
  let evilSums = "";
  for (const exe of ["catty", "catty-server", "catty-agent"]) {
    writeFileSync(join(evil, exe), "#!/bin/sh\necho evil\n");
    chmodSync(join(evil, exe), 0o755);
  }
  for (const v of [OLD, NEW]) {
    const name = `catty-${v}-${target}.tar.gz`;
    expect(Bun.spawnSync(["tar", "czf", join(evil, name), "-C", evil, "catty", "catty-server", "catty-agent"]).exitCode).toBe(0);
    const bytes = new Uint8Array(readFileSync(join(evil, name)));
    other.set(`/evil/${name}`, bytes);
    evilSums += `${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}  ${name}\n`;
  }
  other.set("/evil/SHA256SUMS", enc.encode(evilSums));
  other.set("/evil/SHA256SUMS.sig", signRelease(OTHER_KEY, enc.encode(evilSums)));
  await registry.publish(join(a, `catty-${target}-${OLD}.tgz`));
  await registry.publish(join(a, `catty-${OLD}.tgz`));
}, 300_000);

afterAll(async () => {
  files.stop(true);
  await registry?.stop();
});

describe("a release", () => {
  test("npm packages for catty and catty-server (a shim and one package per platform), archives, SHA256SUMS, install.sh", async () => {
    const dir = releases[OLD] as string;
    expect(readdirSync(dir).sort()).toEqual(
      [`SHA256SUMS`, `SHA256SUMS.sig`, `catty-${OLD}-${target}.tar.gz`, `catty-${OLD}.tgz`, `catty-${target}-${OLD}.tgz`, `catty-server-${OLD}.tgz`, `catty-server-${target}-${OLD}.tgz`, "install.sh"].sort(),
    );
    for (const line of readFileSync(join(dir, "SHA256SUMS"), "utf8").trim().split("\n")) {
      const [sum, name] = line.split(/\s+/) as [string, string];
      expect(new Bun.CryptoHasher("sha256").update(readFileSync(join(dir, name))).digest("hex")).toBe(sum);
    }
    const pkg = JSON.parse((await run(["tar", "xzOf", join(dir, `catty-${OLD}.tgz`), "package/package.json"])).out) as Record<string, unknown>;
    expect(pkg).toMatchObject({ name: "catty", version: OLD, bin: { catty: "bin/catty.cjs" }, optionalDependencies: { [`catty-${target}`]: OLD } });
    const listing = (await run(["tar", "tzf", join(dir, `catty-${OLD}-${target}.tar.gz`)])).out.split("\n").filter(Boolean).sort();
    expect(listing).toEqual(["catty", "catty-agent", "catty-server"]);
    // Hashing every artifact and listing the archive read several hundred MB: seconds on a busy machine.
  }, 60_000);

  test("no release without the signing key, nor with a version that is not semver; the key never enters the release", async () => {
    const out = tempDir();
    const env = { ...process.env, CATTY_RELEASE_SIGNING_KEY: undefined, CATTY_RELEASE_SIGNING_KEY_FILE: undefined };
    const unsigned = await run([process.execPath, join(ROOT, "release", "release.ts"), "--quiet", "--targets", target, "--out", out], env);
    expect(unsigned.code).not.toBe(0);
    expect(unsigned.err).toContain("no release signing key: set CATTY_RELEASE_SIGNING_KEY_FILE");
    const odd = await run([process.execPath, join(ROOT, "release", "release.ts"), "--quiet", "--version", "1.0/../x", "--targets", target, "--out", out], { CATTY_RELEASE_SIGNING_KEY: SIGNING_KEY });
    expect(odd.code).not.toBe(0);
    expect(odd.err).toContain("is not a semver version");
    expect(readdirSync(out)).toEqual([]);
    const secret = SIGNING_KEY.split("\n")[1] as string;
    for (const f of ["install.sh", "SHA256SUMS"]) expect(readFileSync(join(releases[OLD] as string, f), "utf8")).not.toContain(secret);
  });

  test("npx --registry runs it in a clean prefix; the exit code and the error come through the shim", async () => {
    const clean = tempDir();
    const env = { HOME: registry.home, npm_config_cache: join(clean, "cache"), npm_config_prefix: join(clean, "prefix") };
    const version = await run(["npx", "--yes", "--registry", registry.url, "catty", "--version"], env, clean);
    expect(version.out.trim()).toBe(OLD);
    const refused = await run(["npx", "--yes", "--registry", registry.url, "catty", "stop"], env, clean);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("Which session? Give its label, or --all.");
  }, 120_000);

  test("install.sh installs into the prefix; a checksum mismatch is refused and installs nothing", async () => {
    const prefix = tempDir();
    const ok = await run(["sh", join(dl, "install.sh"), "--prefix", prefix]);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain(`Installed catty ${OLD} into ${prefix}/bin.`);
    expect((await run([join(prefix, "bin", "catty"), "--version"])).out.trim()).toBe(OLD);
    expect(existsSync(join(prefix, "bin", "catty-server"))).toBe(true);
    const elsewhere = tempDir();
    const bad = await run(["sh", join(dl, "install.sh"), "--prefix", elsewhere, "--base-url", `${base}/bad`]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("checksum mismatch");
    expect(existsSync(join(elsewhere, "bin", "catty"))).toBe(false);
  }, 120_000);

  test("install.sh checks SHA256SUMS's signature with the key it holds: a swapped archive and SHA256SUMS are refused; without OpenSSL 3 nothing is installed", async () => {
    const prefix = tempDir();
    const evil = await run(["sh", join(dl, "install.sh"), "--prefix", prefix, "--base-url", `${base}/evil`]);
    expect(evil.code).toBe(1);
    expect(evil.err).toContain("not signed with the Catty release key");
    expect(existsSync(join(prefix, "bin", "catty"))).toBe(false);
    const none = await run(["sh", join(dl, "install.sh"), "--prefix", prefix], { CATTY_OPENSSL: join(prefix, "no-openssl") });
    expect(none.code).toBe(1);
    expect(none.err).toContain("needs OpenSSL 3");
    // An openssl that is not OpenSSL 3 (macOS's LibreSSL has no pkeyutl -rawin).
    const libressl = join(prefix, "openssl");
    writeFileSync(libressl, "#!/bin/sh\necho 'LibreSSL 3.3.6'\n");
    chmodSync(libressl, 0o755);
    const old = await run(["sh", join(dl, "install.sh"), "--prefix", prefix], { CATTY_OPENSSL: libressl });
    expect(old.code).toBe(1);
    expect(old.err).toContain("needs OpenSSL 3 or newer, and");
    expect(old.err).toContain("LibreSSL 3.3.6");
    expect(existsSync(join(prefix, "bin", "catty"))).toBe(false);
    expect(readFileSync(join(dl, "install.sh"), "utf8")).not.toContain("__RELEASE_KEY__");
  }, 120_000);

  test("catty update: an npm install through npm, a downloaded binary by replacing itself; the check after a command asks once", async () => {
    const g = tempDir();
    const npmEnv = { HOME: registry.home, npm_config_prefix: g, npm_config_cache: join(g, "cache"), CATTY_NPM_REGISTRY: registry.url };
    expect((await run(["npm", "install", "--global", "--registry", registry.url, `catty@${OLD}`], npmEnv)).code).toBe(0);
    expect((await run([join(g, "bin", "catty"), "version"])).out.trim()).toBe(OLD);
    const current = await run([join(g, "bin", "catty"), "update"], npmEnv);
    expect(current.code).toBe(0);
    expect(current.out + current.err).toContain(`catty ${OLD} is the latest version`);
    await registry.publish(join(releases[NEW] as string, `catty-${target}-${NEW}.tgz`));
    await registry.publish(join(releases[NEW] as string, `catty-${NEW}.tgz`));
    const updated = await run([join(g, "bin", "catty"), "update"], npmEnv);
    expect(updated.code).toBe(0);
    expect((await run([join(g, "bin", "catty"), "--version"])).out.trim()).toBe(NEW);

    const prefix = tempDir();
    expect((await run(["sh", join(dl, "install.sh"), "--prefix", prefix])).code).toBe(0);
    // From a download location taken over: refused, nothing replaced.
    const swapped = await run([join(prefix, "bin", "catty"), "update"], { CATTY_NPM_REGISTRY: registry.url, CATTY_DOWNLOAD_URL: `${base}/evil` });
    expect(swapped.code).toBe(1);
    expect(swapped.err).toContain("not signed with the Catty release key");
    expect((await run([join(prefix, "bin", "catty"), "--version"])).out.trim()).toBe(OLD);
    const self = await run([join(prefix, "bin", "catty"), "update"], { CATTY_NPM_REGISTRY: registry.url });
    expect(self.code).toBe(0);
    expect((await run([join(prefix, "bin", "catty"), "--version"])).out.trim()).toBe(NEW);
    expect((await run([join(prefix, "bin", "catty-server"), "--version"])).out.trim()).toBe(NEW);

    // The automatic check, on a terminal (a user's: no CI): asks once; "n" keeps it quiet about NEW.
    const asked = tempDir();
    expect((await run(["sh", join(dl, "install.sh"), "--prefix", asked])).code).toBe(0);
    const home = tempDir();
    const tmux = new Tmux({ HOME: home, CATTY_HOME: home, PATH: `${join(asked, "bin")}:${process.env.PATH}`, PS1: "$ " });
    tmux.start({ cols: 120, rows: 30 });
    try {
      tmux.type(`clear; env -u CI -u CATTY_NO_UPDATE_CHECK CATTY_NPM_REGISTRY=${registry.url} catty secrets list; echo FIRST=$?`);
      await tmux.waitFor(`Update available: ${OLD} → ${NEW}. Update now? [Y/n]`, 30_000);
      tmux.type("n");
      expect(await shellExitCode(tmux, "FIRST", 30_000)).toBe(0);
      expect(tmux.capture()).toContain(`Not asking about ${NEW} again for 2 days`);
      tmux.type(`clear; env -u CI -u CATTY_NO_UPDATE_CHECK CATTY_NPM_REGISTRY=${registry.url} catty secrets list; echo SECOND=$?`);
      expect(await shellExitCode(tmux, "SECOND", 30_000)).toBe(0);
      expect(tmux.capture()).not.toContain("Update available");
      expect((await run([join(asked, "bin", "catty"), "--version"])).out.trim()).toBe(OLD);
    } finally {
      tmux.kill();
    }
  }, 240_000);
});
