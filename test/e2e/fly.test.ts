/**
 * A server with `--provider fly`, end to end against the Machines API stand-in (no Fly account is
 * reachable from here; see helpers/fly-api.ts). The stand-in runs each Machine it is asked for as
 * a real `catty-agent` process on this host, with the Machine's environment as the provider wrote
 * it (only its workspace and state directories moved into a temp dir, since /workspace is the
 * image's): so the session's agent dials the server, restores, runs the program and ends as it
 * would in a Machine. The server listens on 127.0.0.2, an address the provider accepts as one
 * Machines can reach.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ApiClient } from "../../src/client/api.ts";
import { buildBinaries, type Binaries } from "../helpers/binaries.ts";
import { startFlyStandIn, type FlyStandIn } from "../helpers/fly-api.ts";
import { agentAsMachine, serverForMachines } from "../helpers/machine-process.ts";
import { Recorder } from "../helpers/recorder.ts";
import type { ServerProcess } from "../helpers/server-process.ts";
import { waitFor } from "../helpers/wait.ts";

let bins: Binaries;
let fly: FlyStandIn;
let server: ServerProcess;
let api: ApiClient;
const machinesDir = mkdtempSync(join(tmpdir(), "catty-fly-machines-"));

beforeAll(async () => {
  bins = await buildBinaries();
  fly = startFlyStandIn({
    run: (config, id) => agentAsMachine(bins.agent, join(machinesDir, id), config.env),
  });
  ({ server, api } = await serverForMachines(bins.server, {
    CATTY_PROVIDER: "fly",
    CATTY_FLY_APP: fly.app,
    CATTY_FLY_API_TOKEN: fly.token,
    CATTY_FLY_IMAGE: "registry.fly.io/catty-session:test",
    CATTY_FLY_API: fly.url,
    CATTY_REGIONS: "us-east=iad,frankfurt=fra",
    CATTY_SAVE_FIRST_MS: "300",
  }));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  fly?.stop();
  rmSync(machinesDir, { recursive: true, force: true });
});

describe("sessions on Fly Machines (Machines API stand-in)", () => {
  test("regions listed; a session in Frankfurt runs in a Machine in fra, and its Machine goes when it is stopped", async () => {
    expect(await api.regions()).toEqual([
      { id: "us-east", name: "US East", default: true },
      { id: "frankfurt", name: "Frankfurt", default: false },
    ]);
    const home = mkdtempSync(join(machinesDir, "home-"));
    const listed = Bun.spawnSync([bins.catty, "regions"], { env: { ...process.env, CATTY_HOME: home, CATTY_API_ADDR: server.url, CATTY_TOKEN: server.ownerToken } });
    expect(listed.exitCode).toBe(0);
    expect(listed.stdout.toString()).toBe("ID         NAME\nus-east    US East  (default)\nfrankfurt  Frankfurt\n");
    const session = await api.create({ command: ["bash", "-c", "echo hello-from-$((6*7)); exec cat"], cols: 80, rows: 24, region: "frankfurt" });
    expect(session.region).toBe("frankfurt");
    const create = fly.requests.find((r) => r.method === "POST");
    expect((create?.body as { region: string }).region).toBe("fra");
    const rec = new Recorder({ url: api.attachUrl(session.label), token: server.ownerToken, offset: 0 });
    try {
      await rec.waitForText("hello-from-42", 20_000);
      rec.send("typed in fra\r");
      await rec.waitForText((t) => t.split("typed in fra").length >= 3, 10_000);
    } finally {
      rec.close();
    }
    const [machine] = [...fly.machines.values()];
    expect(machine?.state).toBe("started");
    expect((await api.stop(session.label)).status).toBe("stopped");
    await waitFor(() => machine?.state === "destroyed", { what: "the Machine destroyed" });
    const bad = await api.create({ command: ["true"], cols: 80, rows: 24, region: "tokyo" }).then(() => null, (e: Error) => e);
    expect(bad?.message).toContain('no region "tokyo"');
    expect(bad?.message).toContain("US East (us-east), Frankfurt (frankfurt)");
  }, 60_000);
});
