/**
 * A local npm registry for the tests: Verdaccio (6.8.0, the version that installs here, with
 * node-fetch held at 2.7.0), installed once into the image cache and started on a free loopback
 * port with its own storage, no uplinks, and a user whose token publishes.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { defaultCacheDir } from "../../image/build.ts";
import { freePort } from "./ports.ts";
import { waitFor } from "./wait.ts";

const VERSION = "6.8.0";

async function installed(): Promise<string> {
  const dir = join(defaultCacheDir(), `verdaccio-${VERSION}`);
  const bin = join(dir, "node_modules", "verdaccio", "bin", "verdaccio");
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "catty-test-verdaccio", private: true, dependencies: { verdaccio: VERSION }, overrides: { "node-fetch": "2.7.0" } }));
  console.error(`[verdaccio] installing verdaccio@${VERSION} into ${dir} (once)…`);
  const npm = Bun.spawn(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if ((await npm.exited) !== 0 || !existsSync(bin)) throw new Error(`npm install of verdaccio failed:\n${await new Response(npm.stderr).text()}`);
  return bin;
}

export interface Registry {
  url: string;
  /** A HOME whose .npmrc points npm at this registry with a token that may publish. */
  home: string;
  publish(tarball: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startRegistry(): Promise<Registry> {
  const bin = await installed();
  const dir = mkdtempSync(join(tmpdir(), "catty-verdaccio-"));
  const port = freePort();
  const url = `http://127.0.0.1:${port}/`;
  writeFileSync(
    join(dir, "config.yaml"),
    [
      `storage: ${join(dir, "storage")}`,
      "auth:",
      "  htpasswd:",
      `    file: ${join(dir, "htpasswd")}`,
      "    max_users: 10",
      "uplinks: {}",
      "packages:",
      "  '**':",
      "    access: $all",
      "    publish: $authenticated",
      "max_body_size: 1000mb",
      "log: { type: stdout, format: pretty, level: error }",
    ].join("\n"),
  );
  const proc: Subprocess = Bun.spawn(["node", bin, "--config", join(dir, "config.yaml"), "--listen", `127.0.0.1:${port}`], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  await waitFor(async () => (await fetch(`${url}-/ping`).catch(() => null))?.ok, { timeoutMs: 60_000, what: "verdaccio" });
  const res = await fetch(`${url}-/user/org.couchdb.user:catty`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "catty", password: "catty-test-password" }),
  });
  const token = ((await res.json()) as { token?: string }).token;
  if (!token) throw new Error(`verdaccio gave no token (${res.status})`);
  const home = join(dir, "home");
  mkdirSync(home);
  writeFileSync(join(home, ".npmrc"), `registry=${url}\n//127.0.0.1:${port}/:_authToken=${token}\n`);
  return {
    url,
    home,
    async publish(tarball) {
      const npm = Bun.spawn(["npm", "publish", tarball, "--registry", url], { cwd: home, env: { ...process.env, HOME: home, npm_config_userconfig: join(home, ".npmrc") }, stdout: "pipe", stderr: "pipe" });
      if ((await npm.exited) !== 0) throw new Error(`npm publish ${tarball} failed:\n${await new Response(npm.stderr).text()}`);
    },
    async stop() {
      proc.kill();
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
