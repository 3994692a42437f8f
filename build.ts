/**
 * Compiles the three executables with `bun build --compile`:
 *   bun build.ts          → dist/catty, dist/catty-server, dist/catty-agent (this machine)
 *   bun build.ts --all    → dist/<target>/… for every release target
 *   --outdir DIR          → somewhere else than dist/ (tests); --quiet prints nothing
 *   --release [--version V] → binaries that report V or package.json's version (else "dev"), with
 *                           --npm-name NAME and --download-url URL: where `catty update` looks,
 *                           and --release-key KEY: the public key (base64 SPKI) releases are signed with
 *   --targets a,b         → with --all: only these targets (of linux-x64, linux-arm64, darwin-x64, darwin-arm64)
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { buildWebAssets } from "./server/web/assets.ts";
import { PACKAGE_VERSION } from "./src/lib/version.ts";
import { TARGETS } from "./src/client/platforms.ts";

const ENTRIES = [
  { name: "catty", entry: "src/cli.ts" },
  { name: "catty-server", entry: "server/main.ts" },
  { name: "catty-agent", entry: "agent/main.ts" },
] as const;


const args = process.argv.slice(2);
const all = args.includes("--all");
const quiet = args.includes("--quiet");
const release = args.includes("--release");
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
};
const root = import.meta.dir;
const outdirFlag = args.indexOf("--outdir");
const distDir = outdirFlag === -1 ? join(root, "dist") : (args[outdirFlag + 1] ?? join(root, "dist"));

/** Ink optionally loads react-devtools-core, which must not end up in (or break) a binary. */
const stubDevtools: Bun.BunPlugin = {
  name: "stub-react-devtools",
  setup(build) {
    build.onResolve({ filter: /^react-devtools-core$/ }, () => ({ path: "react-devtools-core", namespace: "stub" }));
    build.onLoad({ filter: /.*/, namespace: "stub" }, () => ({ contents: "export default {};", loader: "js" }));
  },
};

/** The dashboard, bundled for the browser once and built into catty-server (server/web/assets.ts). */
let web: Promise<{ js: string; css: string }> | null = null;

async function compile(name: string, entry: string, target: string | null): Promise<void> {
  const outdir = target ? join(distDir, target) : distDir;
  mkdirSync(outdir, { recursive: true });
  const outfile = join(outdir, name);
  const started = performance.now();
  const result = await Bun.build({
    entrypoints: [join(root, entry)],
    compile: {
      ...(target ? { target: `bun-${target}` as Bun.Build.CompileTarget } : {}),
      outfile,
      // The agent idles beside the user's program for hours: a smaller heap that is collected sooner.
      ...(name === "catty-agent" ? { execArgv: ["--smol"] } : {}),
    },
    minify: true,
    // Precompiled bytecode: the CLI starts in ~25 ms instead of ~100 (it needs ES module output).
    bytecode: true,
    format: "esm",
    sourcemap: "linked",
    plugins: [stubDevtools],
    define: {
      ...(release ? { CATTY_VERSION: JSON.stringify(flag("--version") ?? PACKAGE_VERSION) } : {}),
      ...(release && flag("--npm-name") ? { CATTY_NPM_NAME: JSON.stringify(flag("--npm-name")) } : {}),
      ...(release && flag("--download-url") ? { CATTY_DOWNLOAD_URL: JSON.stringify(flag("--download-url")) } : {}),
      ...(release && flag("--release-key") ? { CATTY_RELEASE_PUBLIC_KEY: JSON.stringify(flag("--release-key")) } : {}),
      ...(name === "catty-server" ? { CATTY_WEB_ASSETS: JSON.stringify(await (web ??= buildWebAssets())) } : {}),
    },
  });
  if (!result.success) {
    for (const log of result.logs) console.error(log);
    throw new Error(`build of ${name}${target ? ` (${target})` : ""} failed`);
  }
  if (!quiet) console.log(`built ${outfile} in ${Math.round(performance.now() - started)} ms`);
}

const targetsFlag = args.indexOf("--targets");
const targets = targetsFlag === -1 ? [...TARGETS] : (flag("--targets") ?? "").split(",").filter((t) => (TARGETS as readonly string[]).includes(t));
// With --targets only those (a release); with --all alone this machine's too.
for (const target of all ? [...(targetsFlag === -1 ? [null] : []), ...targets] : [null]) {
  for (const { name, entry } of ENTRIES) await compile(name, entry, target);
}
