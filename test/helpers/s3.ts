/**
 * A real S3 API for tests: s3rver (a Koa app that keeps objects in a directory), run in this
 * process on a free loopback port with one bucket created up front. s3rver accepts the
 * credentials S3RVER / S3RVER; it checks V2 signatures but not V4 ones (Bun signs with V4), and it
 * does check presigned URLs' access key and expiry. Two small fixes make its paged listings
 * (ListObjectsV2 with a continuation token) work here; see `fixS3rver`.
 */
import { createRequire } from "node:module";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import type S3rverType from "s3rver";

const PATCHED = Symbol.for("catty.test.s3rverDesAlias");

export interface S3Fixture {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Where s3rver keeps the objects. */
  dir: string;
  /** The environment that points a `catty-server` at this bucket. */
  serverEnv(): Record<string, string>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startS3rver(opts: { bucket?: string } = {}): Promise<S3Fixture> {
  const S3rver = fixS3rver();
  const bucket = opts.bucket ?? "catty-test";
  const dir = mkdtempSync(join(tmpdir(), "catty-s3rver-"));
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const { port } = await server.run();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    dir,
    serverEnv: () => ({
      CATTY_S3_BUCKET: bucket,
      CATTY_S3_ENDPOINT: `http://127.0.0.1:${port}`,
      AWS_ACCESS_KEY_ID: "S3RVER",
      AWS_SECRET_ACCESS_KEY: "S3RVER",
    }),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Loads s3rver with two fixes, applied once:
 * - It encrypts list continuation tokens with `createCipheriv("des", …)`. Bun knows that cipher
 *   only by its full name, `des-cbc` (the algorithm Node's `des` alias names), so paged listings
 *   failed with "Unknown cipher". `node:crypto` learns the alias.
 * - It pages by walking its directory in `readdir` order and assumes that order is sorted (true
 *   on macOS, not on ext4 or overlayfs), so pages skipped keys. Its walk now sorts each directory.
 */
function fixS3rver(): typeof S3rverType {
  const require = createRequire(import.meta.url);
  const crypto = require("node:crypto") as typeof import("node:crypto") & { [PATCHED]?: true };
  if (!crypto[PATCHED]) {
    const alias = (name: string): string => (name.toLowerCase() === "des" ? "des-cbc" : name);
    const { createCipheriv, createDecipheriv } = crypto;
    crypto.createCipheriv = ((name: string, ...rest: unknown[]) =>
      (createCipheriv as (...args: unknown[]) => unknown)(alias(name), ...rest)) as typeof createCipheriv;
    crypto.createDecipheriv = ((name: string, ...rest: unknown[]) =>
      (createDecipheriv as (...args: unknown[]) => unknown)(alias(name), ...rest)) as typeof createDecipheriv;
    crypto[PATCHED] = true;
  }
  // Before s3rver's store module loads: it copies `walk` out of `utils` when it does.
  const utils = require("s3rver/lib/utils.js") as { walk: SortedWalk };
  utils.walk = sortedWalk;
  return require("s3rver") as typeof S3rverType;
}

type SortedWalk = (dir: string, recurseFilter?: (dir: string) => boolean) => Generator<string>;

const sortedWalk: SortedWalk = function* (dir, recurseFilter) {
  for (const name of readdirSync(dir).sort()) {
    const path = posix.join(dir, name);
    if (!statSync(path).isDirectory()) yield path;
    else if (!recurseFilter || recurseFilter(path)) yield* sortedWalk(path, recurseFilter);
  }
};
