import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPairSync } from "node:crypto";
import { CHECK_EVERY_MS, DECLINED_QUIET_MS, installCommand, installKind, isNewer, latestVersion, offerUpdate, replaceBinaries, UpdateCheckState, type UpdateSettings } from "../../src/client/update.ts";
import { isReleaseVersion, releasePublicKey, signRelease, verifyRelease } from "../../src/client/release-signature.ts";
import { currentTarget } from "../../src/client/platforms.ts";
import { tempDirs } from "../helpers/fs.ts";

const temp = tempDirs("catty-update-");
/** The tests' own release key pair (a release's comes from CATTY_RELEASE_SIGNING_KEY; none is in the repository). */
const newKey = (): string => generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
const RELEASE_KEY = newKey();
const settings: UpdateSettings = { registry: "http://registry.test", packageName: "@acme/catty", downloadUrl: null, releaseKey: releasePublicKey(RELEASE_KEY) };

describe("how catty was installed", () => {
  test("a development build, a package manager's global install, a downloaded binary", () => {
    expect(installKind("/usr/local/bin/catty", "dev")).toEqual({ kind: "dev" });
    expect(installKind("/usr/lib/node_modules/catty-linux-x64/bin/catty", "1.0.0")).toEqual({ kind: "package", manager: "npm" });
    expect(installKind("/home/me/.local/share/pnpm/global/5/.pnpm/catty-linux-x64@1.0.0/node_modules/catty-linux-x64/bin/catty", "1.0.0")).toEqual({ kind: "package", manager: "pnpm" });
    expect(installKind("/home/me/.bun/install/global/node_modules/catty-linux-x64/bin/catty", "1.0.0")).toEqual({ kind: "package", manager: "bun" });
    expect(installKind("/home/me/.config/yarn/global/node_modules/catty-linux-x64/bin/catty", "1.0.0")).toEqual({ kind: "package", manager: "yarn" });
    expect(installKind("/home/me/.local/bin/catty", "1.0.0")).toEqual({ kind: "binary", path: "/home/me/.local/bin/catty" });
  });

  test("each package manager's install command, with the registry", () => {
    expect(installCommand("npm", settings, "1.2.3")).toEqual(["npm", "install", "--global", "@acme/catty@1.2.3", "--registry", "http://registry.test"]);
    expect(installCommand("pnpm", settings, "1.2.3").slice(0, 4)).toEqual(["pnpm", "add", "--global", "@acme/catty@1.2.3"]);
    expect(installCommand("yarn", settings, "1.2.3").slice(0, 4)).toEqual(["yarn", "global", "add", "@acme/catty@1.2.3"]);
    expect(installCommand("bun", settings, "1.2.3").slice(0, 4)).toEqual(["bun", "add", "--global", "@acme/catty@1.2.3"]);
  });

  test("versions compare by number; a pre-release is older than its release", () => {
    expect(isNewer("0.10.0", "0.9.9")).toBe(true);
    expect(isNewer("1.0.0", "1.0.0")).toBe(false);
    expect(isNewer("1.0.0", "1.0.0-rc.1")).toBe(true);
    expect(isNewer("1.0.0-rc.2", "1.0.0-rc.1")).toBe(true);
    expect(isNewer("0.9.0", "1.0.0")).toBe(false);
  });
});

describe("the automatic check", () => {
  test("looks at most every 15 minutes (a failed look counts); a declined version is quiet for 2 days", async () => {
    const state = new UpdateCheckState(join(temp(), "update-check.json"));
    let looks = 0;
    const lookup = async () => {
      looks++;
      return "1.1.0";
    };
    const t0 = 1_000_000_000_000;
    expect(await offerUpdate(state, lookup, "1.0.0", t0)).toBe("1.1.0");
    expect(await offerUpdate(state, lookup, "1.0.0", t0 + CHECK_EVERY_MS - 1)).toBe("1.1.0");
    expect(looks).toBe(1);
    state.write({ ...state.read(), declined: { version: "1.1.0", at: t0 } });
    expect(await offerUpdate(state, lookup, "1.0.0", t0 + CHECK_EVERY_MS)).toBeNull();
    expect(looks).toBe(2);
    expect(await offerUpdate(state, lookup, "1.0.0", t0 + DECLINED_QUIET_MS + 1)).toBe("1.1.0");
    // Up to date: nothing to offer. Offline: no offer, and no new look for 15 minutes.
    expect(await offerUpdate(state, lookup, "1.1.0", t0 + DECLINED_QUIET_MS + CHECK_EVERY_MS * 2)).toBeNull();
    const offline = new UpdateCheckState(join(temp(), "update-check.json"));
    let tries = 0;
    const down = async (): Promise<string> => {
      tries++;
      throw new Error("offline");
    };
    expect(await offerUpdate(offline, down, "1.0.0", t0)).toBeNull();
    expect(await offerUpdate(offline, down, "1.0.0", t0 + 1000)).toBeNull();
    expect(tries).toBe(1);
    // What an older catty remembered from a registry, not a version: never offered (nor printed).
    const remembered = join(temp(), "update-check.json");
    writeFileSync(remembered, JSON.stringify({ checkedAt: t0, latest: "9.9.9\x1b]52;c;ZXZpbA==\x07", declined: null }));
    expect(await offerUpdate(new UpdateCheckState(remembered), down, "1.0.0", t0 + 1000)).toBeNull();
  });
});

describe("a downloaded binary replaces itself", () => {
  const target = currentTarget() as string;
  const files = new Map<string, Uint8Array>();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      const body = files.get(new URL(req.url).pathname.slice(1));
      return body ? new Response(body) : new Response("no", { status: 404 });
    },
  });
  afterAll(() => server.stop(true));

  /** Publishes a release of `version`: its SHA256SUMS wrong if `corrupt`, signed with `signer` (none: no signature). */
  async function publish(version: string, corrupt = false, signer: string | null = RELEASE_KEY): Promise<void> {
    const dir = temp();
    for (const exe of ["catty", "catty-server", "catty-agent"]) writeFileSync(join(dir, exe), `#!/bin/sh\necho ${exe} ${version}\n`);
    const archive = `catty-${version}-${target}.tar.gz`;
    const tar = Bun.spawnSync(["tar", "czf", join(dir, archive), "-C", dir, "catty", "catty-server", "catty-agent"]);
    expect(tar.exitCode).toBe(0);
    const bytes = new Uint8Array(readFileSync(join(dir, archive)));
    files.set(archive, bytes);
    const sum = new Bun.CryptoHasher("sha256").update(corrupt ? new Uint8Array([1]) : bytes).digest("hex");
    const sums = new TextEncoder().encode(`${sum}  ${archive}\n`);
    files.set("SHA256SUMS", sums);
    if (signer) files.set("SHA256SUMS.sig", signRelease(signer, sums));
    else files.delete("SHA256SUMS.sig");
  }

  function installed(): string {
    const bin = join(temp(), "bin");
    mkdirSync(bin);
    for (const exe of ["catty", "catty-server"]) {
      writeFileSync(join(bin, exe), "#!/bin/sh\necho old\n");
      chmodSync(join(bin, exe), 0o755);
    }
    return bin;
  }

  test("the archive checked against SHA256SUMS; catty and the server beside it replaced; nothing added", async () => {
    await publish("2.0.0");
    const bin = installed();
    const replaced = await replaceBinaries(join(bin, "catty"), { ...settings, downloadUrl: server.url.origin }, "2.0.0");
    expect(replaced.sort()).toEqual([join(bin, "catty"), join(bin, "catty-server")]);
    expect(Bun.spawnSync([join(bin, "catty")]).stdout.toString()).toBe("catty 2.0.0\n");
    expect(Bun.spawnSync([join(bin, "catty-server")]).stdout.toString()).toBe("catty-server 2.0.0\n");
    expect(Bun.spawnSync(["ls", "-A", bin]).stdout.toString().split("\n").filter(Boolean).sort()).toEqual(["catty", "catty-server"]);
  });

  test("a checksum mismatch is refused and changes nothing", async () => {
    await publish("2.0.1", true);
    const bin = installed();
    await expect(replaceBinaries(join(bin, "catty"), { ...settings, downloadUrl: server.url.origin }, "2.0.1")).rejects.toThrow(/Checksum mismatch/);
    expect(readFileSync(join(bin, "catty"), "utf8")).toBe("#!/bin/sh\necho old\n");
    await expect(replaceBinaries(join(bin, "catty"), settings, "2.0.1")).rejects.toThrow(/does not know where its releases/);
  });

  test("SHA256SUMS must be signed with the built-in key: an archive swapped together with its checksum is refused, and so is a missing signature or key", async () => {
    const at = { ...settings, downloadUrl: server.url.origin };
    // Whoever controls the download location publishes a matching archive and SHA256SUMS, signed with a key of their own.
    await publish("2.0.2", false, newKey());
    const bin = installed();
    await expect(replaceBinaries(join(bin, "catty"), at, "2.0.2")).rejects.toThrow(/not signed with the Catty release key/);
    await publish("2.0.2", false, null);
    await expect(replaceBinaries(join(bin, "catty"), at, "2.0.2")).rejects.toThrow(/SHA256SUMS.sig: 404/);
    await publish("2.0.2");
    await expect(replaceBinaries(join(bin, "catty"), { ...at, releaseKey: null }, "2.0.2")).rejects.toThrow(/no release key built in/);
    expect(readFileSync(join(bin, "catty"), "utf8")).toBe("#!/bin/sh\necho old\n");
    expect(readFileSync(join(bin, "catty-server"), "utf8")).toBe("#!/bin/sh\necho old\n");
    // A version that is not one is never turned into a download path.
    await expect(replaceBinaries(join(bin, "catty"), at, "../../2.0.2")).rejects.toThrow(/not a version/);
  });
});

describe("what the registry and the download location say", () => {
  test("the registry's latest version must be semver: a path, an option or a URL is refused", async () => {
    let answer = "1.2.3";
    const registry = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ name: "catty", version: answer }) });
    try {
      const s = { ...settings, registry: registry.url.origin, packageName: "catty" };
      expect(await latestVersion(s)).toBe("1.2.3");
      for (const bad of ["../../../etc/passwd", "1.2.3/../../x", "1.2.3 --registry=http://evil", "http://evil/x.tgz", "1.2", "v1.2.3", "1.2.3-\x1b]0;x", `1.2.3-${"a".repeat(80)}`]) {
        answer = bad;
        await expect(latestVersion(s)).rejects.toThrow(/is not a version/);
      }
    } finally {
      registry.stop(true);
    }
  });

  test("signatures: only the pinned key's over exactly these bytes; semver as the registry may name it", () => {
    const data = new TextEncoder().encode("abc  catty-1.0.0-linux-x64.tar.gz\n");
    const sig = signRelease(RELEASE_KEY, data);
    const pub = releasePublicKey(RELEASE_KEY);
    expect(verifyRelease(pub, data, sig)).toBe(true);
    expect(verifyRelease(pub, new TextEncoder().encode("abd  catty-1.0.0-linux-x64.tar.gz\n"), sig)).toBe(false);
    expect(verifyRelease(releasePublicKey(newKey()), data, sig)).toBe(false);
    expect(verifyRelease(pub, data, sig.slice(0, 63))).toBe(false);
    expect(verifyRelease("not a key", data, sig)).toBe(false);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    expect(() => releasePublicKey(rsa)).toThrow(/not Ed25519/);
    for (const ok of ["0.1.0", "1.2.3-rc.1", "1.2.3+build.5", "10.20.30-alpha-1.beta"]) expect(isReleaseVersion(ok)).toBe(true);
    for (const bad of ["", "1", "01.2.3", "1.2.3.4", "1.2.3-", "1.2.3/x", " 1.2.3"]) expect(isReleaseVersion(bad)).toBe(false);
  });
});
