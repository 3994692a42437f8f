/**
 * The scale-out configuration end to end: the real server process on PostgreSQL (a private
 * cluster this test starts) and S3 (s3rver), with the master key from the environment. The
 * workspace round trip runs through it; then the server is killed and another one, with an empty
 * data dir of its own, serves the same users, sessions and saves from the shared database and
 * bucket. Nothing of the database is in either data dir.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { freshDatabase } from "../helpers/postgres.ts";
import { startS3rver, type S3Fixture } from "../helpers/s3.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { CattyUser, diffTrees, SNAPSHOT_EXCLUDED, startWorkspaceServer, type WorkspaceFixture } from "../helpers/workspace.ts";
import { workspaceRoundTrip } from "../helpers/workspace-round-trip.ts";

let s3: S3Fixture;
let databaseUrl: string;
let fixture: WorkspaceFixture;
let env: Record<string, string>;

beforeAll(async () => {
  s3 = await startS3rver({ bucket: "catty-pg" });
  databaseUrl = await freshDatabase();
  env = {
    CATTY_DATABASE_URL: databaseUrl,
    CATTY_MASTER_KEY: "5a".repeat(32),
    CATTY_INTERNAL_KEY: "a5".repeat(32),
    CATTY_SAVE_FIRST_MS: "300",
    CATTY_SAVE_INTERVAL_MS: "700",
    ...s3.serverEnv(),
  };
  fixture = await startWorkspaceServer(env);
}, 60_000);

afterAll(async () => {
  await fixture?.close();
  await s3?.stop();
});

describe("a server on PostgreSQL and S3", () => {
  test("the workspace round trip, then another server with an empty data dir serves the same sessions and saves", async () => {
    const { label, session } = await workspaceRoundTrip(fixture.user);
    expect(readdirSync(fixture.server.dataDir).filter((n) => n.startsWith("catty.db"))).toEqual([]);

    const sql = new SQL(databaseUrl, { max: 1 });
    try {
      const [row] = (await sql`SELECT status, final_save FROM sessions WHERE label = ${label}`) as Array<{ status: string; final_save: string }>;
      expect(row).toEqual({ status: "stopped", final_save: session.finalSave as string });
      const [saves] = (await sql`SELECT count(*)::int AS n FROM saves`) as Array<{ n: number }>;
      expect(saves?.n).toBe(session.saves.length);
      const [blobs] = (await sql`SELECT count(*)::int AS n FROM blobs`) as Array<{ n: number }>;
      expect(blobs?.n).toBeGreaterThan(0);
    } finally {
      await sql.close();
    }

    const scratch = mkdtempSync(join(tmpdir(), "catty-pg-"));
    const first = join(scratch, "first");
    expect((await fixture.user.cli(["download", label, first])).code).toBe(0);

    // The first server goes; another, knowing nothing locally, takes over the same user.
    await fixture.server.kill9();
    const other = new ServerProcess(fixture.bins.server, env);
    await other.start();
    const user = new CattyUser(fixture.bins, other);
    try {
      expect(existsSync(join(other.dataDir, "owner-token"))).toBe(false); // the owner exists already
      const login = await user.cli(["login", "--api", other.url, "--token", fixture.server.ownerToken]);
      expect(login.code).toBe(0);
      const list = await user.cli(["list", "--plain"]);
      expect(list.stdout).toContain(label);
      const second = join(scratch, "second");
      const down = await user.cli(["download", label, second]);
      expect(down.code).toBe(0);
      expect(await diffTrees(second, first, SNAPSHOT_EXCLUDED)).toBe("");
      expect(readdirSync(other.dataDir).filter((n) => n.startsWith("catty.db"))).toEqual([]);
    } finally {
      await user.close();
      await other.stop();
      rmSync(other.dataDir, { recursive: true, force: true });
      rmSync(scratch, { recursive: true, force: true });
    }
  }, 120_000);
});
