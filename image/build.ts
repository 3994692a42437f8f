/**
 * `npm run session-image`: builds the session image with no registry but Debian's packages and
 * npm's, into the Docker engine at `DOCKER_HOST`:
 *
 *   1. the base: a Debian bookworm root file system from image/packages.txt with `mmdebstrap`,
 *      then image/install.sh in it (Node.js, npm, Claude Code, the `catty` user) — the same steps
 *      as image/Dockerfile above its marker; kept as a tarball in a cache, named by the hash of
 *      its inputs, so it is made once;
 *   2. `docker import` of that tarball (skipped when the engine has it);
 *   3. `docker build` of the part of image/Dockerfile below its marker (the agent, environment,
 *      entrypoint) on top of it, with the `catty-agent` of `dist/`.
 *
 * Flags: --tag REF (default catty-session:latest), --agent PATH (default dist/catty-agent),
 * --cache DIR (default $CATTY_IMAGE_CACHE or ~/.cache/catty).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { currentAccount } from "../src/lib/account.ts";
import { join } from "node:path";
import { pack } from "tar-stream";
import { createDockerClient, DEFAULT_DOCKER_HOST, type DockerClient } from "../server/providers/docker-api.ts";

const HERE = import.meta.dir;
const ROOT = join(HERE, "..");
const SUITE = "bookworm";
const MARKER = "# --- agent ---";
const HOST_CA = "/etc/ssl/certs/ca-certificates.crt";

export interface BuildOptions {
  docker: DockerClient;
  tag: string;
  agentBin: string;
  cacheDir: string;
  /** Progress, one line at a time. */
  say(line: string): void;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CATTY_IMAGE_CACHE) return env.CATTY_IMAGE_CACHE;
  // The account's home, not $HOME: tests run with a temporary HOME and share this cache.
  const home = currentAccount()?.home || homedir();
  return join(env.XDG_CACHE_HOME ?? join(home, ".cache"), "catty");
}

const read = (name: string): string => readFileSync(join(HERE, name), "utf8");

export function packages(): string[] {
  return read("packages.txt")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
}

/** The hash of everything the base is made from. */
export function baseHash(): string {
  const h = createHash("sha256");
  for (const part of [SUITE, packages().join(","), read("versions.env"), read("install.sh")]) h.update(part).update("\0");
  return h.digest("hex").slice(0, 16);
}

/** The part of image/Dockerfile below the marker, on top of `base`. */
export function agentDockerfile(base: string): string {
  const text = read("Dockerfile");
  const at = text.indexOf(MARKER);
  if (at === -1) throw new Error(`image/Dockerfile has no "${MARKER}" line`);
  return `FROM ${base}\n${text.slice(text.indexOf("\n", at) + 1)}`;
}

/** Makes the base tarball with mmdebstrap, unless the cache has it; returns its path. */
async function baseTarball(opts: BuildOptions, hash: string): Promise<string> {
  const file = join(opts.cacheDir, `session-base-${hash}.tar`);
  if (existsSync(file)) {
    opts.say(`base: cached (${file})`);
    return file;
  }
  const mmdebstrap = Bun.which("mmdebstrap");
  if (!mmdebstrap) throw new Error("mmdebstrap is not installed: apt-get install mmdebstrap (or build image/Dockerfile with docker build)");
  mkdirSync(opts.cacheDir, { recursive: true });
  const partial = join(opts.cacheDir, `session-base-${hash}.partial-${process.pid}.tar`);
  opts.say(`base: Debian ${SUITE} with ${packages().length} packages, then Node.js and Claude Code (about two minutes, once)…`);
  const started = performance.now();
  const proc = Bun.spawn(
    [
      mmdebstrap,
      "--variant=apt",
      "--format=tar",
      `--include=${packages().join(",")}`,
      "--customize-hook=mkdir -p \"$1/tmp/catty-image\"",
      `--customize-hook=copy-in ${join(HERE, "versions.env")} ${join(HERE, "install.sh")} /tmp/catty-image`,
      // This machine's CA bundle, for the downloads only (a TLS-inspecting proxy); not kept.
      ...(existsSync(HOST_CA) ? [`--customize-hook=copy-in ${HOST_CA} /tmp/catty-image`] : []),
      `--customize-hook=chroot "$1" env ${existsSync(HOST_CA) ? "CATTY_BUILD_CA=/tmp/catty-image/ca-certificates.crt " : ""}sh /tmp/catty-image/install.sh`,
      "--customize-hook=rm -rf \"$1/tmp/catty-image\"",
      SUITE,
      partial,
    ],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } },
  );
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) {
    rmSync(partial, { force: true });
    throw new Error(`mmdebstrap failed (exit ${code}):\n${(out + err).split("\n").slice(-30).join("\n")}`);
  }
  renameSync(partial, file);
  opts.say(`base: made in ${Math.round((performance.now() - started) / 1000)} s, ${Math.round(statSync(file).size / 1e6)} MB`);
  return file;
}

/** A build context: the Dockerfile, and the agent and entrypoint at the paths it copies them from. */
async function context(dockerfile: string, agentBin: string, into: string): Promise<void> {
  const tar = pack();
  const done = Bun.write(into, new Response(tar as unknown as ReadableStream));
  tar.entry({ name: "Dockerfile", mode: 0o644 }, dockerfile);
  tar.entry({ name: "image/entrypoint.sh", mode: 0o755 }, read("entrypoint.sh"));
  const agent = new Uint8Array(await Bun.file(agentBin).arrayBuffer());
  tar.entry({ name: "dist/catty-agent", mode: 0o755 }, Buffer.from(agent.buffer, agent.byteOffset, agent.byteLength));
  tar.finalize();
  await done;
}

/** Builds the session image; resolves to its tag. */
export async function buildSessionImage(opts: BuildOptions): Promise<string> {
  if (!existsSync(opts.agentBin)) throw new Error(`no catty-agent at ${opts.agentBin}: build it first (bun build.ts)`);
  await opts.docker.ping();
  const hash = baseHash();
  const base = `catty-session-base:${hash}`;
  if (await opts.docker.hasImage(base)) {
    opts.say(`base: ${base} is in the engine`);
  } else {
    const tarball = await baseTarball(opts, hash);
    opts.say(`base: importing into the engine…`);
    await opts.docker.importImage(base, Bun.file(tarball), []);
  }
  opts.say(`image: ${opts.tag} (the agent on ${base})…`);
  mkdirSync(opts.cacheDir, { recursive: true });
  const ctx = join(opts.cacheDir, `context-${process.pid}.tar`);
  try {
    await context(agentDockerfile(base), opts.agentBin, ctx);
    await opts.docker.build(opts.tag, Bun.file(ctx));
  } finally {
    rmSync(ctx, { force: true });
  }
  opts.say(`image: ${opts.tag} built`);
  return opts.tag;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i === -1 ? undefined : args[i + 1];
  };
  const docker = createDockerClient(process.env.DOCKER_HOST || DEFAULT_DOCKER_HOST);
  try {
    await buildSessionImage({
      docker,
      tag: flag("tag") ?? "catty-session:latest",
      agentBin: flag("agent") ?? join(ROOT, "dist", "catty-agent"),
      cacheDir: flag("cache") ?? defaultCacheDir(),
      say: (line) => console.log(line),
    });
  } catch (err) {
    console.error(`✗ ${(err as Error).message}`);
    process.exit(1);
  }
}
