/**
 * `npm run release`: everything a release publishes, under dist/release/:
 *
 * - npm packages, as esbuild and Claude Code ship: a main package (`catty`; `--npm-name` for
 *   another, e.g. @diggerhq/catty) holding a small `bin` shim (release/shim.cjs) with
 *   `optionalDependencies` on one package per platform (`<name>-linux-x64`, …) that holds the
 *   compiled binary; the server and agent the same way (`catty-server`, `--server-npm-name`).
 *   Each packed with `npm pack` into a .tgz.
 * - `catty-<version>-<platform>.tar.gz`: the three binaries, for downloads and install.sh.
 * - `SHA256SUMS` of everything above, its Ed25519 signature `SHA256SUMS.sig`, and `install.sh`
 *   with the version, `--base-url` and the release's public key filled in.
 *
 *   CATTY_RELEASE_SIGNING_KEY_FILE=key.pem bun release/release.ts [--npm-name catty]
 *       [--server-npm-name catty-server] [--version V] [--base-url URL] [--targets linux-x64,…] [--out DIR]
 *
 * `--base-url` is where the archives will be downloaded from: install.sh and `catty update` of a
 * downloaded binary use it. The signing key (an Ed25519 private key, PEM) comes from
 * `--signing-key FILE`, `CATTY_RELEASE_SIGNING_KEY_FILE`, or `CATTY_RELEASE_SIGNING_KEY` (the PEM
 * itself, for a CI secret); it is never in the repository, and there is no release without it.
 * Its public half is built into `catty` and written into install.sh, which check the signature
 * before they install anything. Make one with `openssl genpkey -algorithm ed25519 -out key.pem`.
 */
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { TARGETS, type Target } from "../src/client/platforms.ts";
import { PACKAGE_VERSION } from "../src/lib/version.ts";
import { isReleaseVersion, releasePublicKey, signRelease } from "../src/client/release-signature.ts";

const ROOT = join(import.meta.dir, "..");
const { values } = parseArgs({
  options: {
    "npm-name": { type: "string", default: "catty" },
    "server-npm-name": { type: "string", default: "catty-server" },
    "base-url": { type: "string" },
    targets: { type: "string", default: TARGETS.join(",") },
    out: { type: "string", default: join(ROOT, "dist", "release") },
    version: { type: "string", default: PACKAGE_VERSION },
    quiet: { type: "boolean", default: false },
    "signing-key": { type: "string" },
  },
});
const out = values.out as string;
const version = values.version as string;
if (!isReleaseVersion(version)) throw new Error(`--version ${version} is not a semver version (such as 1.2.3)`);

/** The release signing key (PEM): a file, or the PEM itself in the environment. */
function signingKey(): string {
  const file = values["signing-key"] ?? process.env.CATTY_RELEASE_SIGNING_KEY_FILE;
  const pem = file ? readFileSync(file, "utf8") : process.env.CATTY_RELEASE_SIGNING_KEY;
  if (!pem) {
    throw new Error(
      "no release signing key: set CATTY_RELEASE_SIGNING_KEY_FILE (or pass --signing-key FILE, or put the PEM in CATTY_RELEASE_SIGNING_KEY). " +
        "A release is signed so that install.sh and catty update can tell it from a tampered download.",
    );
  }
  return pem;
}
const signingPem = signingKey();
const publicKey = releasePublicKey(signingPem);
const targets = (values.targets as string).split(",").map((t) => {
  if (!(TARGETS as readonly string[]).includes(t)) throw new Error(`unknown target ${t} (one of ${TARGETS.join(", ")})`);
  return t as Target;
});
const say = (line: string): void => {
  if (!values.quiet) console.log(line);
};

function run(argv: string[], cwd = ROOT): string {
  const r = Bun.spawnSync(argv, { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} failed (${r.exitCode}):\n${r.stderr.toString()}`);
  return r.stdout.toString();
}

const json = (path: string, value: unknown): void => writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);

/** One family of npm packages: the main package with its shims, and a package per platform. */
function npmFamily(name: string, description: string, exes: string[]): void {
  const dir = join(out, "npm");
  for (const t of targets) {
    const [os, cpu] = t.split("-") as [string, string];
    const pkg = join(dir, `${name}-${t}`.replace("/", "__"));
    mkdirSync(join(pkg, "bin"), { recursive: true });
    for (const exe of exes) {
      copyFileSync(join(out, "bin", t, exe), join(pkg, "bin", exe));
      chmodSync(join(pkg, "bin", exe), 0o755);
    }
    json(join(pkg, "package.json"), { name: `${name}-${t}`, version, description: `${description} (${t} binary)`, os: [os], cpu: [cpu], files: ["bin"] });
    writeFileSync(join(pkg, "README.md"), `# ${name}-${t}\n\nThe ${t} binaries of [${name}](https://www.npmjs.com/package/${name}); install that instead.\n`);
    run(["npm", "pack", "--silent", "--pack-destination", out], pkg);
  }
  const main = join(dir, name.replace("/", "__"));
  mkdirSync(join(main, "bin"), { recursive: true });
  const shim = readFileSync(join(import.meta.dir, "shim.cjs"), "utf8").replace("__PACKAGE__", name);
  for (const exe of exes) {
    writeFileSync(join(main, "bin", `${exe}.cjs`), shim.replace("__EXE__", exe));
    chmodSync(join(main, "bin", `${exe}.cjs`), 0o755);
  }
  json(join(main, "package.json"), {
    name,
    version,
    description,
    bin: Object.fromEntries(exes.map((e) => [e, `bin/${e}.cjs`])),
    files: ["bin"],
    engines: { node: ">=18" },
    optionalDependencies: Object.fromEntries(targets.map((t) => [`${name}-${t}`, version])),
  });
  writeFileSync(join(main, "README.md"), readFileSync(join(ROOT, "README.md"), "utf8"));
  run(["npm", "pack", "--silent", "--pack-destination", out], main);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
say(`Building catty ${version} for ${targets.join(", ")}…`);
run([
  process.execPath,
  join(ROOT, "build.ts"),
  "--all",
  "--release",
  "--quiet",
  "--version",
  version,
  "--npm-name",
  values["npm-name"] as string,
  ...(values["base-url"] ? ["--download-url", values["base-url"]] : []),
  "--release-key",
  publicKey,
  "--targets",
  targets.join(","),
  "--outdir",
  join(out, "bin"),
]);

say("Packing the npm packages…");
npmFamily(values["npm-name"] as string, "Persistent remote terminal sessions for Claude Code and any terminal program", ["catty"]);
npmFamily(values["server-npm-name"] as string, "The Catty server and session agent", ["catty-server", "catty-agent"]);

say("Writing the archives…");
for (const t of targets) {
  run(["tar", "czf", join(out, `catty-${version}-${t}.tar.gz`), "-C", join(out, "bin", t), "catty", "catty-server", "catty-agent"]);
}
const baseUrl = values["base-url"];
writeFileSync(
  join(out, "install.sh"),
  readFileSync(join(import.meta.dir, "install.sh"), "utf8")
    .replace("__VERSION__", version)
    .replace("__BASE_URL__", baseUrl ?? "__BASE_URL__")
    .replace("__RELEASE_KEY__", publicKey),
);
chmodSync(join(out, "install.sh"), 0o755);

const sums: string[] = [];
for (const f of readdirSync(out).sort()) {
  if (!f.endsWith(".tar.gz") && !f.endsWith(".tgz")) continue;
  sums.push(`${new Bun.CryptoHasher("sha256").update(readFileSync(join(out, f))).digest("hex")}  ${f}`);
}
const sumsText = new TextEncoder().encode(`${sums.join("\n")}\n`);
writeFileSync(join(out, "SHA256SUMS"), sumsText);
writeFileSync(join(out, "SHA256SUMS.sig"), signRelease(signingPem, sumsText));
rmSync(join(out, "npm"), { recursive: true, force: true });
rmSync(join(out, "bin"), { recursive: true, force: true });
say(`Release ${version} in ${out}:`);
for (const f of readdirSync(out).sort()) say(`  ${f}`);
