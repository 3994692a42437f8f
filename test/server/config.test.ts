/** The server's configuration: read once, flags > environment > defaults, bad values named. */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { readServerConfig, SERVER_SETTINGS } from "../../server/config.ts";
import { settingsTable } from "../../src/protocol/settings.ts";

describe("server configuration", () => {
  test("defaults", () => {
    const c = readServerConfig({}, { HOME: "/home/u" });
    expect(c.port).toBe(4815);
    expect(c.host).toBe("127.0.0.1");
    expect(c.dataDir).toBe(join("/home/u", ".catty", "server"));
    expect(c.timeouts).toEqual({ idleTimeoutMs: 7_200_000, minDurationMs: 3_600_000, maxDurationMs: 28_800_000, tickMs: 5_000 });
    expect(c.s3).toBeNull();
    expect(c.logLevel).toBe("info");
    expect(c.agentTuning.saveIntervalMs).toBe(30_000);
    expect(readServerConfig({}, { HOME: "/home/u", CATTY_HOME: "/elsewhere" }).dataDir).toBe("/elsewhere/server");
  });

  test("flags beat the environment", () => {
    const env = { CATTY_PORT: "1234", CATTY_HOST: "0.0.0.0", CATTY_DATA_DIR: "/env" };
    expect(readServerConfig({}, env)).toMatchObject({ port: 1234, host: "0.0.0.0", dataDir: "/env" });
    expect(readServerConfig({ port: "0", host: "::1", "data-dir": "/flag" }, env)).toMatchObject({ port: 0, host: "::1", dataDir: "/flag" });
  });

  test("every setting is read from its variable", () => {
    const c = readServerConfig(
      {},
      {
        CATTY_AGENT_LOST_MS: "1000",
        CATTY_STOP_TIMEOUT_MS: "2000",
        CATTY_MAX_UPLOAD_BYTES: "10",
        CATTY_MAX_SAVE_BYTES: "20",
        CATTY_SAVE_RETENTION_DAYS: "2",
        CATTY_IDLE_TIMEOUT_MS: "5000",
        CATTY_MIN_DURATION_MS: "1000",
        CATTY_MAX_DURATION_MS: "9000",
        CATTY_LIFECYCLE_TICK_MS: "100",
        CATTY_PUBLIC_URL: "https://catty.example/",
        CATTY_AGENT_BIN: "/bin/agent",
        CATTY_LOG_LEVEL: "warn",
        CATTY_SAVE_INTERVAL_MS: "700",
      },
    );
    expect(c).toMatchObject({
      agentLostMs: 1000,
      stopTimeoutMs: 2000,
      maxUploadBytes: 10,
      maxSaveBytes: 20,
      retentionDays: 2,
      timeouts: { idleTimeoutMs: 5000, minDurationMs: 1000, maxDurationMs: 9000, tickMs: 100 },
      publicUrl: "https://catty.example",
      agentBin: "/bin/agent",
      logLevel: "warn",
    });
    expect(c.agentTuning.saveIntervalMs).toBe(700);
  });

  test("a bad value is an error naming the variable or flag", () => {
    const bad: Array<[Record<string, string>, Record<string, string>, RegExp]> = [
      [{}, { CATTY_PORT: "http" }, /^CATTY_PORT must be a whole number, got "http"/],
      [{ port: "70000" }, {}, /^--port must be a port number/],
      [{}, { CATTY_SAVE_RETENTION_DAYS: "0" }, /^CATTY_SAVE_RETENTION_DAYS must be a whole number of at least 1/],
      [{}, { CATTY_LIFECYCLE_TICK_MS: "5" }, /^CATTY_LIFECYCLE_TICK_MS/],
      [{}, { CATTY_LOG_LEVEL: "loud" }, /^CATTY_LOG_LEVEL must be one of debug, info, warn, error/],
      [{}, { CATTY_PUBLIC_URL: "catty.example" }, /^CATTY_PUBLIC_URL must be an http/],
      [{}, { CATTY_MIN_DURATION_MS: "9000", CATTY_MAX_DURATION_MS: "5000" }, /CATTY_MIN_DURATION_MS .* larger than CATTY_MAX_DURATION_MS/],
      [{}, { CATTY_RING_BYTES: "lots" }, /^CATTY_RING_BYTES/],
      [{}, { CATTY_S3_BUCKET: "b", AWS_ACCESS_KEY_ID: "k" }, /AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not/],
    ];
    for (const [flags, env, message] of bad) expect(() => readServerConfig(flags, env)).toThrow(message);
  });

  test("replicas (on PostgreSQL) need an internal key of their own, and may serve their calls on a port of their own", () => {
    const pg = { CATTY_DATABASE_URL: "postgres://catty@db:5432/catty" };
    expect(() => readServerConfig({}, pg)).toThrow(/^CATTY_DATABASE_URL is set, .*CATTY_INTERNAL_KEY: set it to a key of its own \(`openssl rand -hex 32`\), the same on every replica\.$/);
    expect(() => readServerConfig({}, { ...pg, CATTY_INTERNAL_KEY: "short" })).toThrow(/^CATTY_INTERNAL_KEY must be 32 bytes/);
    expect(() => readServerConfig({}, { ...pg, CATTY_INTERNAL_KEY: "ab".repeat(32), CATTY_MASTER_KEY: "ab".repeat(32) })).toThrow(/CATTY_INTERNAL_KEY is the master key/);
    const c = readServerConfig({}, { ...pg, CATTY_INTERNAL_KEY: "ab".repeat(32), CATTY_MASTER_KEY: "cd".repeat(32), CATTY_INTERNAL_PORT: "4816" });
    expect(c).toMatchObject({ internalKey: "ab".repeat(32), internalPort: 4816 });
    expect(readServerConfig({}, {}).internalPort).toBeNull();
  });

  test("catty-server on PostgreSQL without CATTY_INTERNAL_KEY refuses to start and says what to set", async () => {
    const proc = Bun.spawn([process.execPath, join(import.meta.dir, "../../server/main.ts")], {
      env: { ...process.env, CATTY_DATABASE_URL: "postgres://catty@127.0.0.1:1/catty", CATTY_INTERNAL_KEY: undefined },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    expect(code).toBe(1);
    expect(stderr.trim()).toStartWith("catty-server: CATTY_DATABASE_URL is set,");
    expect(stderr).toContain("set it to a key of its own (`openssl rand -hex 32`), the same on every replica.");
  });

  test("the result is frozen, nested parts too", () => {
    const c = readServerConfig({}, { CATTY_S3_BUCKET: "b" });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.timeouts)).toBe(true);
    expect(Object.isFrozen(c.s3)).toBe(true);
  });

  test("every setting documents its variable, and the README table lists them all", () => {
    const table = settingsTable(SERVER_SETTINGS);
    for (const { info } of Object.values(SERVER_SETTINGS)) {
      expect(info.env?.length).toBeGreaterThan(0);
      expect(table).toContain(`\`${info.env?.[0]}\``);
    }
  });

  test("catty-server exits 1 with the message on a bad setting", async () => {
    const proc = Bun.spawn([process.execPath, join(import.meta.dir, "../../server/main.ts"), "--port", "nope"], {
      env: { ...process.env },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    expect(code).toBe(1);
    expect(stderr.trim()).toBe('catty-server: --port must be a whole number, got "nope".');
  });
});

describe("S3 settings", () => {
  const s3 = (env: Record<string, string | undefined>, flags: Record<string, string> = {}) => readServerConfig(flags, env).s3;

  test("none without a bucket", () => {
    expect(s3({ AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s" })).toBeNull();
    expect(s3({ CATTY_S3_BUCKET: "" })).toBeNull();
  });

  test("reads the AWS variables, with us-east-1 as the default region", () => {
    expect(s3({ CATTY_S3_BUCKET: "b", AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s", AWS_ENDPOINT_URL: "http://generic" })).toEqual({
      bucket: "b",
      region: "us-east-1",
      accessKeyId: "k",
      secretAccessKey: "s",
      endpoint: "http://generic",
    });
    expect(s3({ CATTY_S3_BUCKET: "b", AWS_DEFAULT_REGION: "eu-west-1" })?.region).toBe("eu-west-1");
    expect(s3({ CATTY_S3_BUCKET: "b", AWS_DEFAULT_REGION: "eu-west-1", AWS_REGION: "eu-north-1" })?.region).toBe("eu-north-1");
  });

  test("flags beat Catty's variables, which beat the AWS ones; a key pair is never mixed", () => {
    const env = {
      CATTY_S3_BUCKET: "env-bucket",
      CATTY_S3_ENDPOINT: "http://catty",
      AWS_ENDPOINT_URL_S3: "http://aws-s3",
      AWS_ENDPOINT_URL: "http://aws",
      CATTY_S3_REGION: "auto",
      AWS_REGION: "eu-north-1",
      CATTY_S3_ACCESS_KEY_ID: "ck",
      CATTY_S3_SECRET_ACCESS_KEY: "cs",
      AWS_ACCESS_KEY_ID: "ak",
      AWS_SECRET_ACCESS_KEY: "as",
      AWS_SESSION_TOKEN: "at",
    };
    expect(s3(env, { "s3-bucket": "flag-bucket", "s3-endpoint": "http://flag" })).toEqual({
      bucket: "flag-bucket",
      endpoint: "http://flag",
      region: "auto",
      accessKeyId: "ck",
      secretAccessKey: "cs",
    });
    expect(s3(env)?.endpoint).toBe("http://catty");
    expect(s3({ ...env, CATTY_S3_ENDPOINT: undefined })?.endpoint).toBe("http://aws-s3");
    expect(s3({ ...env, CATTY_S3_ACCESS_KEY_ID: undefined, CATTY_S3_SECRET_ACCESS_KEY: undefined })).toMatchObject({
      accessKeyId: "ak",
      secretAccessKey: "as",
      sessionToken: "at",
    });
  });
});
