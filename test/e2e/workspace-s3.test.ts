/**
 * The workspace round trip with S3 storage: the real server process keeps uploads and saves in
 * an s3rver run in this process, and agents and the CLI reach it through presigned URLs. (Every
 * `catty` here runs asynchronously: a blocking spawn would stop s3rver from answering it.)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { S3Client } from "bun";
import { startS3rver, type S3Fixture } from "../helpers/s3.ts";
import type { ServerProcess } from "../helpers/server-process.ts";
import { startWorkspaceServer, type CattyUser, type WorkspaceFixture } from "../helpers/workspace.ts";
import { workspaceRoundTrip } from "../helpers/workspace-round-trip.ts";

let s3: S3Fixture;
let fixture: WorkspaceFixture;
let server: ServerProcess;
let user: CattyUser;

beforeAll(async () => {
  s3 = await startS3rver({ bucket: "catty-e2e" });
  fixture = await startWorkspaceServer({
    CATTY_SAVE_FIRST_MS: "300",
    CATTY_SAVE_INTERVAL_MS: "700",
    ...s3.serverEnv(),
  });
  ({ server, user } = fixture);
}, 60_000);

afterAll(async () => {
  await fixture?.close();
  await s3?.stop();
});

describe("round trip with S3 storage", () => {
  test("upload, change inside, stop, download (dir and tar.gz), sync --dry-run, sync", async () => {
    const { session } = await workspaceRoundTrip(user);

    // The saves are objects in the bucket, and nothing went to the data dir.
    const bucket = new S3Client({
      endpoint: s3.endpoint,
      bucket: s3.bucket,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
    });
    // Saves are encrypted packs: none holds the project's text or a file name.
    const objects = (await bucket.list({ prefix: "vault/" })).contents ?? [];
    expect(session.saves.length).toBeGreaterThan(0);
    expect(objects.length).toBeGreaterThan(0);
    for (const object of objects) {
      const bytes = Buffer.from(await bucket.file(object.key).bytes());
      expect(bytes.includes("# demo")).toBe(false);
      expect(bytes.includes("script.sh")).toBe(false);
    }
    expect((await bucket.list({ prefix: "saves/" })).contents ?? []).toEqual([]);
    expect((await bucket.list({ prefix: "uploads/" })).contents ?? []).toEqual([]);
    expect(existsSync(join(server.dataDir, "blobs"))).toBe(false);
  }, 90_000);
});
