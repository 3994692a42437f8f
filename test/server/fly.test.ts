/**
 * The Fly Machines provider against a stand-in of the Machines API (helpers/fly-api.ts): the exact
 * requests it makes (the create body, the wait, the forced delete, the metadata filter), what it
 * makes of Fly's answers (a Machine that is gone or stopped, a create Fly refuses, a Machine that
 * never starts), reconciling strays, and the configuration of regions and of Fly itself.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readServerConfig } from "../../server/config.ts";
import { createFlyProvider, flyMemoryMb, FLY_METADATA } from "../../server/providers/fly.ts";
import { parseRegions } from "../../server/regions.ts";
import { readAgentEnv } from "../../src/protocol/agent-env.ts";
import type { FlyMachine } from "../../src/protocol/index.ts";
import { startFlyStandIn, type FlyStandIn } from "../helpers/fly-api.ts";
import { keptLog } from "../helpers/log.ts";

const limits = { memoryBytes: 3 * 1024 ** 3 + 1, cpus: 2, pids: 300 };
const tuning = readServerConfig({}, {}).agentTuning;
const FRANKFURT = { id: "frankfurt", name: "Frankfurt", place: "fra" };
const spec = {
  label: "brave-tiger-1234",
  agentToken: "agt_secret",
  serverUrl: "https://catty.example.com",
  command: ["claude"],
  cols: 120,
  rows: 40,
  idleTimeoutMs: 90_000,
  region: FRANKFURT,
};

let fly: FlyStandIn;
afterEach(() => fly?.stop());

function provider(log = keptLog()) {
  return createFlyProvider({
    api: fly.url, app: fly.app, token: fly.token, image: "registry.fly.io/catty-session:1", regions: [FRANKFURT],
    limits, tuning, serverId: "0123456789abcdef", log, startTimeoutSec: 5,
  });
}

describe("Fly Machines provider", () => {
  test("creates one Machine per session: the image, the agent's environment, the guest size, auto-destroy, no restarts, metadata; then waits for it to start", async () => {
    fly = startFlyStandIn();
    const machine = (await provider().start(spec)) as FlyMachine;
    expect(machine).toEqual({ provider: "fly", app: fly.app, id: expect.stringMatching(/^[0-9a-f]{14}$/), region: "fra" });
    expect(fly.requests.map((r) => `${r.method} ${r.path}${r.search}`)).toEqual([
      `POST /v1/apps/${fly.app}/machines`,
      `GET /v1/apps/${fly.app}/machines/${machine.id}/wait?state=started&timeout=5`,
    ]);
    for (const r of fly.requests) expect(r.auth).toBe(`Bearer ${fly.token}`);
    const body = fly.requests[0]?.body as { name: string; region: string; config: { env: Record<string, string> } & Record<string, unknown> };
    expect(body.name).toMatch(/^catty-brave-tiger-1234-[0-9a-f]{8}$/);
    expect(body.region).toBe("fra");
    const { env, ...config } = body.config;
    expect(config).toEqual({
      image: "registry.fly.io/catty-session:1",
      guest: { cpu_kind: "shared", cpus: 2, memory_mb: 3328 },
      auto_destroy: true,
      restart: { policy: "no" },
      metadata: { [FLY_METADATA.session]: "brave-tiger-1234", [FLY_METADATA.server]: "0123456789abcdef" },
    });
    const agent = readAgentEnv(env);
    expect(agent).toMatchObject({ serverUrl: "https://catty.example.com", token: "agt_secret", workspace: "/workspace", command: ["claude"], cols: 120, rows: 40, idleTimeoutMs: 90_000 });
    const uid = Number(env.CATTY_PROGRAM_UID);
    expect(uid).toBeGreaterThanOrEqual(200_000);
    expect(agent.owner).toBe(`${uid}:${uid}`);
    expect(agent.wrap).toEqual(expect.arrayContaining(["--nproc=300", `--reuid=${uid}`, "--no-new-privs", "--bounding-set=-all"]));
    // Nothing of the server's own environment goes along.
    expect(Object.keys(env).every((k) => k.startsWith("CATTY_"))).toBe(true);
  });

  test("alive while started; gone once destroyed (forced), with the reason", async () => {
    fly = startFlyStandIn();
    const p = provider();
    const machine = await p.start(spec);
    expect(await p.isAlive(machine)).toBe(true);
    fly.machines.get((machine as FlyMachine).id)!.state = "stopped";
    fly.machines.get((machine as FlyMachine).id)!.exitCode = 137;
    expect(await p.isAlive(machine)).toBe(false);
    expect(await p.whyGone?.(machine)).toBe(`its Fly Machine ${(machine as FlyMachine).id} is stopped (exit code 137)`);
    fly.machines.get((machine as FlyMachine).id)!.state = "started";
    await p.destroy(machine);
    expect(fly.requests.at(-1)).toMatchObject({ method: "DELETE", path: `/v1/apps/${fly.app}/machines/${(machine as FlyMachine).id}`, search: "?force=true" });
    expect(await p.isAlive(machine)).toBe(false);
    expect(await p.whyGone?.(machine)).toBe(`its Fly Machine ${(machine as FlyMachine).id} no longer exists`);
    await p.destroy(machine); // already gone: not an error
    expect(await p.isAlive({ provider: "local", pid: 1, dir: "/x" })).toBe(false);
  });

  test("a create Fly refuses, and a Machine that never starts (destroyed again), are clear errors naming the region", async () => {
    fly = startFlyStandIn();
    const p = provider();
    fly.failNextCreate = { status: 412, error: "insufficient capacity in region fra" };
    const refused = await p.start(spec).then(() => null, (e: Error) => e);
    expect(refused?.message).toBe("Fly could not create the session's Machine in Frankfurt (fra): the Machines API answered 412: insufficient capacity in region fra.");
    fly.neverStart = true;
    const stuck = await p.start(spec).then(() => null, (e: Error) => e);
    expect(stuck?.message).toMatch(/^The session's Fly Machine did not start: the Machines API answered 408/);
    expect([...fly.machines.values()].map((m) => m.state)).toEqual(["destroyed"]);
    for (const err of [refused, stuck]) expect(err?.message).not.toContain(fly.token);
  });

  test("a bad token or an unreachable API: errors without the token, and a check that cannot tell keeps the machine", async () => {
    fly = startFlyStandIn();
    const log = keptLog();
    const wrong = createFlyProvider({ api: fly.url, app: fly.app, token: "not-it", image: "i", regions: [FRANKFURT], limits, tuning, serverId: "s", log });
    const err = await wrong.start(spec).then(() => null, (e: Error) => e);
    expect(err?.message).toContain("answered 401: unauthorized");
    const away = createFlyProvider({ api: "http://127.0.0.1:1", app: fly.app, token: fly.token, image: "i", regions: [FRANKFURT], limits, tuning, serverId: "s", log });
    expect(await away.isAlive({ provider: "fly", app: fly.app, id: "abcdef012345", region: "fra" })).toBe(true);
    expect(JSON.stringify(log.lines)).not.toContain(fly.token);
  });

  test("reconcile destroys this server's Machines that no live session owns, and nobody else's, nor one a live session is starting", async () => {
    fly = startFlyStandIn();
    const p = provider();
    const live = await p.start(spec);
    fly.addMachine({ id: "aaaa0000stray1", name: "catty-old", region: "fra", metadata: { [FLY_METADATA.server]: "0123456789abcdef", [FLY_METADATA.session]: "old-one-0001" } });
    fly.addMachine({ id: "bbbb0000other1", name: "theirs", region: "fra", metadata: { [FLY_METADATA.server]: "fedcba9876543210" } });
    // Being started by another replica: no handle stored yet, but its session is live.
    fly.addMachine({ id: "cccc0000start1", name: "catty-new", region: "fra", metadata: { [FLY_METADATA.server]: "0123456789abcdef", [FLY_METADATA.session]: "new-one-0002" } });
    await p.reconcile?.([live], new Set(["new-one-0002"]));
    expect(fly.machines.get("cccc0000start1")?.state).toBe("started");
    expect(fly.requests.find((r) => r.method === "GET" && r.search.startsWith("?metadata."))?.search).toBe(`?metadata.${FLY_METADATA.server}=0123456789abcdef`);
    expect(fly.machines.get("aaaa0000stray1")?.state).toBe("destroyed");
    expect(fly.machines.get("bbbb0000other1")?.state).toBe("started");
    expect(fly.machines.get((live as FlyMachine).id)?.state).toBe("started");
  });

  test("memory in multiples of 256 MB", () => {
    expect(flyMemoryMb(1)).toBe(256);
    expect(flyMemoryMb(4 * 1024 ** 3)).toBe(4096);
    expect(flyMemoryMb(4 * 1024 ** 3 + 1)).toBe(4352);
  });
});

describe("regions and Fly settings", () => {
  const base = { CATTY_PROVIDER: "fly", CATTY_FLY_APP: "catty-sessions", CATTY_FLY_API_TOKEN: "t", CATTY_FLY_IMAGE: "registry.fly.io/x:1" };

  test("Fly's default regions are the six the dashboard offers, US East first", () => {
    const config = readServerConfig({}, base);
    expect(config.regions.map((r) => `${r.id}=${r.place} (${r.name})`)).toEqual([
      "us-east=iad (US East)", "us-west=sjc (US West)", "london=lhr (London)", "frankfurt=fra (Frankfurt)", "sydney=syd (Sydney)", "tokyo=nrt (Tokyo)",
    ]);
    expect(config.fly).toEqual({ app: "catty-sessions", apiToken: "t", image: "registry.fly.io/x:1", api: "https://api.machines.dev" });
  });

  test("CATTY_REGIONS names them (the first the default); local and Docker have one unless told", () => {
    expect(readServerConfig({}, { ...base, CATTY_REGIONS: "eu-paris=cdg, us-east=iad" }).regions).toEqual([
      { id: "eu-paris", name: "EU Paris", place: "cdg" },
      { id: "us-east", name: "US East", place: "iad" },
    ]);
    expect(readServerConfig({}, {}).regions).toEqual([{ id: "local", name: "Local", place: null }]);
    expect(readServerConfig({ region: "eu-west" }, { CATTY_PROVIDER: "docker" }).regions).toEqual([{ id: "eu-west", name: "EU West", place: null }]);
  });

  test("bad settings are refused, naming what to set", () => {
    expect(() => readServerConfig({}, { CATTY_PROVIDER: "fly" })).toThrow("--provider fly needs CATTY_FLY_APP, CATTY_FLY_API_TOKEN, CATTY_FLY_IMAGE.");
    expect(() => readServerConfig({}, { ...base, CATTY_REGIONS: "us-east" })).toThrow('the region "us-east" needs its Fly region');
    expect(() => parseRegions("Mars=x")).toThrow('"Mars=x" is not a region');
    expect(() => parseRegions("a=b,a=c")).toThrow('names the region "a" twice');
    expect(() => parseRegions(" , ")).toThrow("names no region");
    expect(() => readServerConfig({}, { ...base, FLY_API_TOKEN: "from-flyctl", CATTY_FLY_API_TOKEN: "" })).not.toThrow();
  });
});
