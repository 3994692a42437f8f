/**
 * A server with `--provider kubernetes`, end to end against the Kubernetes API stand-in (no API
 * server can run here; see helpers/kube-api.ts), reached through a kubeconfig as an operator's
 * would be. The stand-in runs each Pod's container as a real `catty-agent` process on this host
 * (helpers/machine-process.ts): the session's agent dials the server, runs the program, and ends
 * as in a Pod. Evicting the Pod fails the session with the eviction as its reason; stopping a
 * session deletes its Pod. The server listens on 127.0.0.2 (an address the provider accepts as
 * reachable from Pods).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ApiClient } from "../../src/client/api.ts";
import { buildBinaries, type Binaries } from "../helpers/binaries.ts";
import { startKubeStandIn, type KubeStandIn } from "../helpers/kube-api.ts";
import { agentAsMachine, serverForMachines } from "../helpers/machine-process.ts";
import { Recorder } from "../helpers/recorder.ts";
import type { ServerProcess } from "../helpers/server-process.ts";
import { waitFor } from "../helpers/wait.ts";

let bins: Binaries;
let kube: KubeStandIn;
let server: ServerProcess;
let api: ApiClient;
const scratch = mkdtempSync(join(tmpdir(), "catty-kube-"));

beforeAll(async () => {
  bins = await buildBinaries();
  kube = startKubeStandIn({
    run: (container, pod) => agentAsMachine(bins.agent, join(scratch, pod), Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]))),
  });
  const kubeconfig = join(scratch, "kubeconfig");
  kube.kubeconfig(kubeconfig, "catty-sessions");
  ({ server, api } = await serverForMachines(bins.server, {
    CATTY_PROVIDER: "kubernetes",
    CATTY_K8S_IMAGE: "ghcr.io/example/catty-session:test",
    KUBECONFIG: kubeconfig,
    CATTY_REGIONS: "eu-west=europe-west1,us-east=us-east1",
    CATTY_AGENT_LOST_MS: "1000",
  }));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  kube?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("sessions on Kubernetes (API stand-in)", () => {
  test("a session runs in a Pod on the region's nodes; stopping deletes the Pod; an evicted Pod fails its session with the reason", async () => {
    const session = await api.create({ command: ["bash", "-c", "echo pod-says-$((6*7)); exec cat"], cols: 80, rows: 24, region: "us-east" });
    const rec = new Recorder({ url: api.attachUrl(session.label), token: server.ownerToken, offset: 0 });
    try {
      await rec.waitForText("pod-says-42", 20_000);
    } finally {
      rec.close();
    }
    const created = kube.requests.find((r) => r.method === "POST")?.body as { metadata: { namespace: string; name: string }; spec: { nodeSelector: Record<string, string> } };
    expect(created.metadata.namespace).toBe("catty-sessions");
    expect(created.spec.nodeSelector).toEqual({ "topology.kubernetes.io/region": "us-east1" });
    expect((await api.stop(session.label)).status).toBe("stopped");
    await waitFor(() => !kube.pods.has(`catty-sessions/${created.metadata.name}`), { what: "the Pod deleted" });

    const evicted = await api.create({ command: ["sleep", "600"], cols: 80, rows: 24 });
    const pod = await waitFor(async () => {
      const row = await api.get(evicted.label);
      return row.status === "running" ? [...kube.pods.values()].find((p) => p.pod.metadata.labels?.["catty.dev/session"] === evicted.label) : null;
    }, { timeoutMs: 20_000, what: "the second session running" });
    kube.evict("catty-sessions", pod.pod.metadata.name);
    const failed = await waitFor(async () => {
      const row = await api.get(evicted.label);
      return row.status === "failed" ? row : null;
    }, { timeoutMs: 20_000, what: "the session failed" });
    expect(failed.endReason).toBe(`the session machine went away (crash or kill): its Pod ${pod.pod.metadata.name} was evicted: The node was low on resource: memory.`);
  }, 60_000);
});
