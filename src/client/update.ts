/**
 * Keeping catty current. The latest version comes from the npm registry (5 s timeout, no cache)
 * and must be a semver version. An install from npm, pnpm, yarn or bun is updated with that
 * package manager; a downloaded binary downloads the release archive, SHA256SUMS and its
 * signature, checks the signature against the release key built into this catty, then the archive
 * against SHA256SUMS, and replaces itself (and the server and agent beside it) atomically. A
 * development build is never updated.
 *
 * After most commands, on a terminal, catty looks (at most every 15 minutes) and asks; a version
 * the user declined is not asked about again for 2 days.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { CattyError } from "../protocol/errors.ts";
import { currentTarget } from "./platforms.ts";
import { VERSION } from "../lib/version.ts";
import { isReleaseVersion, verifyRelease } from "./release-signature.ts";

/** Set by `build.ts --release`: the npm package and the download URL the release was made for. */
declare const CATTY_NPM_NAME: string | undefined;
declare const CATTY_DOWNLOAD_URL: string | undefined;
/** Set by `build.ts --release-key`: the public key release SHA256SUMS are signed with (base64 SPKI). */
declare const CATTY_RELEASE_PUBLIC_KEY: string | undefined;

export const CHECK_EVERY_MS = 15 * 60_000;
export const DECLINED_QUIET_MS = 2 * 86_400_000;
const LOOKUP_TIMEOUT_MS = 5_000;

export type PackageManager = "npm" | "pnpm" | "yarn" | "bun";
export type Install = { kind: "dev" } | { kind: "package"; manager: PackageManager } | { kind: "binary"; path: string };

export interface UpdateSettings {
  registry: string;
  packageName: string;
  /** Where release archives and SHA256SUMS are (a downloaded binary updates from there). */
  downloadUrl: string | null;
  /** The release signing key's public half, built in (never from the environment); null: none. */
  releaseKey: string | null;
}

export function updateSettings(env: NodeJS.ProcessEnv = process.env): UpdateSettings {
  return {
    registry: (env.CATTY_NPM_REGISTRY || env.npm_config_registry || "https://registry.npmjs.org").replace(/\/+$/, ""),
    packageName: env.CATTY_NPM_NAME || (typeof CATTY_NPM_NAME === "string" ? CATTY_NPM_NAME : "catty"),
    downloadUrl: (env.CATTY_DOWNLOAD_URL || (typeof CATTY_DOWNLOAD_URL === "string" ? CATTY_DOWNLOAD_URL : "")).replace(/\/+$/, "") || null,
    releaseKey: typeof CATTY_RELEASE_PUBLIC_KEY === "string" && CATTY_RELEASE_PUBLIC_KEY ? CATTY_RELEASE_PUBLIC_KEY : null,
  };
}

/** How this catty was installed, from where its executable lives. */
export function installKind(execPath: string = process.execPath, version: string = VERSION): Install {
  if (version === "dev") return { kind: "dev" };
  const p = execPath.replaceAll("\\", "/");
  if (!p.includes("/node_modules/")) return { kind: "binary", path: execPath };
  if (p.includes("/.pnpm/") || p.includes("/pnpm/")) return { kind: "package", manager: "pnpm" };
  if (p.includes("/.bun/install/")) return { kind: "package", manager: "bun" };
  if (p.includes("/yarn/global/") || p.includes("/.yarn/")) return { kind: "package", manager: "yarn" };
  return { kind: "package", manager: "npm" };
}

/** Whether version `a` is newer than `b` (numeric major.minor.patch; a pre-release is older than its release). */
export function isNewer(a: string, b: string): boolean {
  const parse = (v: string): [number[], string] => {
    const [core = "", pre = ""] = v.replace(/^v/, "").split("-", 2);
    return [core.split(".").map((n) => Number(n) || 0), pre];
  };
  const [x, xp] = parse(a);
  const [y, yp] = parse(b);
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  if (xp === yp) return false;
  return xp === "" || (yp !== "" && xp > yp);
}

/** The latest published version of the package (the registry's `latest` tag). */
export async function latestVersion(s: UpdateSettings): Promise<string> {
  const name = s.packageName.replace("/", "%2f");
  let res: Response;
  try {
    res = await fetch(`${s.registry}/${name}/latest`, { signal: AbortSignal.timeout(LOOKUP_TIMEOUT_MS), headers: { accept: "application/json" }, cache: "no-store" });
  } catch (err) {
    throw new CattyError("unavailable", `Could not reach the npm registry at ${s.registry} (${(err as Error).message}).`, "Check your network, or set CATTY_NPM_REGISTRY.");
  }
  if (!res.ok) throw new CattyError("unavailable", `The npm registry answered ${res.status} for ${s.packageName}.`);
  const version = ((await res.json().catch(() => null)) as { version?: unknown } | null)?.version;
  if (typeof version !== "string") throw new CattyError("unavailable", `The npm registry gave no version for ${s.packageName}.`);
  return checkedVersion(version, `The npm registry at ${s.registry}`);
}

/** `version` if it is a semver version; else an error naming who said it. */
export function checkedVersion(version: string, from: string): string {
  if (isReleaseVersion(version)) return version;
  throw new CattyError(
    "unavailable",
    `${from} names ${JSON.stringify(version.slice(0, 80))} as the latest version, which is not a version (such as 1.2.3); not updating.`,
    "Check CATTY_NPM_REGISTRY, or try again later.",
  );
}

/** The command that installs `version` with the package manager that installed catty. */
export function installCommand(manager: PackageManager, s: UpdateSettings, version: string): string[] {
  const spec = `${s.packageName}@${version}`;
  const registry = ["--registry", s.registry];
  switch (manager) {
    case "npm":
      return ["npm", "install", "--global", spec, ...registry];
    case "pnpm":
      return ["pnpm", "add", "--global", spec, ...registry];
    case "yarn":
      return ["yarn", "global", "add", spec, ...registry];
    case "bun":
      return ["bun", "add", "--global", spec, ...registry];
  }
}

async function download(url: string): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(120_000) });
  } catch (err) {
    throw new CattyError("unavailable", `Could not download ${url} (${(err as Error).message}).`);
  }
  if (!res.ok) throw new CattyError("unavailable", `Could not download ${url}: ${res.status} ${res.statusText}.`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * A downloaded binary: fetches `catty-<version>-<platform>.tar.gz`, SHA256SUMS and its signature,
 * refuses a signature that is not the built-in release key's and a checksum mismatch, and renames
 * the new executables over the old ones (catty, and catty-server and catty-agent where they sit
 * beside it).
 */
export async function replaceBinaries(execPath: string, s: UpdateSettings, version: string): Promise<string[]> {
  checkedVersion(version, "The update");
  if (!s.downloadUrl) throw new CattyError("bad_request", "This catty does not know where its releases are downloaded from.", "Set CATTY_DOWNLOAD_URL to the release's download URL.");
  if (!s.releaseKey) {
    throw new CattyError("bad_request", "This catty has no release key built in, so it cannot check a download.", "Install the new version with install.sh from the release, or from npm.");
  }
  const target = currentTarget();
  if (!target) throw new CattyError("bad_request", `No release is built for ${process.platform}-${process.arch}.`);
  const archive = `catty-${version}-${target}.tar.gz`;
  const [bytes, sums, signature] = await Promise.all([
    download(`${s.downloadUrl}/${archive}`),
    download(`${s.downloadUrl}/SHA256SUMS`),
    download(`${s.downloadUrl}/SHA256SUMS.sig`),
  ]);
  // Whoever can replace the archive can replace SHA256SUMS beside it: only the signature says it is the release's.
  if (!verifyRelease(s.releaseKey, sums, signature)) {
    throw new CattyError(
      "unavailable",
      `SHA256SUMS at ${s.downloadUrl} is not signed with the Catty release key; not updating.`,
      "The download location may have been tampered with. Install from a source you trust, or report it.",
    );
  }
  const expected = new TextDecoder()
    .decode(sums)
    .split("\n")
    .map((l) => l.trim().split(/\s+\*?/))
    .find(([, f]) => f === archive)?.[0];
  if (!expected) throw new CattyError("unavailable", `${archive} is not listed in SHA256SUMS; not updating.`);
  const actual = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  if (actual !== expected) throw new CattyError("unavailable", `Checksum mismatch for ${archive} (expected ${expected}, got ${actual}); not updating.`);
  const dir = dirname(execPath);
  const tmp = mkdtempSync(join(dir, ".catty-update-"));
  try {
    writeFileSync(join(tmp, archive), bytes);
    const tar = Bun.spawnSync(["tar", "xzf", join(tmp, archive), "-C", tmp]);
    if (tar.exitCode !== 0) throw new CattyError("unavailable", `Could not unpack ${archive}: ${tar.stderr.toString().trim()}`);
    const replaced: string[] = [];
    for (const exe of ["catty", "catty-server", "catty-agent"]) {
      const dest = exe === "catty" ? execPath : join(dir, exe);
      if (exe !== "catty" && !existsSync(dest)) continue;
      const fresh = join(tmp, exe);
      if (!existsSync(fresh)) throw new CattyError("unavailable", `${archive} holds no ${exe}; not updating.`);
      chmodSync(fresh, 0o755);
      renameSync(fresh, dest);
      replaced.push(dest);
    }
    return replaced;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** What the automatic check remembers, in `$CATTY_HOME/update-check.json`. */
interface CheckState {
  checkedAt: number;
  latest: string | null;
  declined: { version: string; at: number } | null;
}

export class UpdateCheckState {
  constructor(private readonly file: string) {}

  read(): CheckState {
    try {
      const s = JSON.parse(readFileSync(this.file, "utf8")) as Partial<CheckState>;
      // A version remembered by an older catty (which took any string) is offered only if it is one.
      const latest = typeof s.latest === "string" && isReleaseVersion(s.latest) ? s.latest : null;
      return { checkedAt: Number(s.checkedAt) || 0, latest, declined: s.declined ?? null };
    } catch {
      return { checkedAt: 0, latest: null, declined: null };
    }
  }

  write(s: CheckState): void {
    try {
      writeFileSync(this.file, JSON.stringify(s), { mode: 0o600 });
    } catch {
      // a check that cannot remember asks again next time; nothing else breaks
    }
  }
}

/**
 * The version to offer after a command, or null: looks up the registry at most every 15 min
 * (a failed look counts, so an offline machine is not slowed down each time), and stays quiet
 * about a version declined in the last 2 days.
 */
export async function offerUpdate(state: UpdateCheckState, lookup: () => Promise<string>, current: string, now = Date.now()): Promise<string | null> {
  const s = state.read();
  let latest = s.latest;
  if (now - s.checkedAt >= CHECK_EVERY_MS) {
    latest = await lookup().catch(() => null);
    state.write({ ...s, checkedAt: now, latest: latest ?? s.latest });
    latest ??= s.latest;
  }
  if (!latest || !isNewer(latest, current)) return null;
  if (s.declined && s.declined.version === latest && now - s.declined.at < DECLINED_QUIET_MS) return null;
  return latest;
}
