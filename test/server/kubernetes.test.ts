/**
 * The Kubernetes provider, through `@kubernetes/client-node`, against a stand-in of the API
 * server (helpers/kube-api.ts): the exact Pod manifest and requests, Pods that cannot be scheduled
 * or pulled, eviction and deletion as reasons, reconciling strays, and API errors without the
 * token.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { readServerConfig } from "../../server/config.ts";
import { createKubernetesProvider, kubeNamespace, POD_LABELS } from "../../server/providers/kubernetes.ts";
import { readAgentEnv } from "../../src/protocol/agent-env.ts";
import type { KubernetesMachine } from "../../src/protocol/index.ts";
import { startKubeStandIn, type KubeStandIn } from "../helpers/kube-api.ts";
import { keptLog } from "../helpers/log.ts";
import { removeAfterRun } from "../helpers/fs.ts";

const limits = { memoryBytes: 2 * 1024 ** 3, cpus: 2, pids: 300 };
const tuning = readServerConfig({}, {}).agentTuning;
const EU = { id: "eu-west", name: "EU West", place: "europe-west1" };
const spec = {
  label: "brave-tiger-1234",
  agentToken: "agt_secret",
  serverUrl: "http://catty.catty.svc:4815",
  command: ["claude"],
  cols: 120,
  rows: 40,
  idleTimeoutMs: 90_000,
  region: EU,
};

let kube: KubeStandIn;
afterEach(() => kube?.stop());

function kubeConfig(token = kube.token): k8s.KubeConfig {
  const file = join(removeAfterRun(mkdtempSync(join(tmpdir(), "catty-kubeconfig-"))), "config");
  kube.kubeconfig(file, "sessions");
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(file);
  if (token !== kube.token) kc.users[0] = { name: "catty", token };
  return kc;
}

function provider(opts: { token?: string; log?: ReturnType<typeof keptLog> } = {}) {
  return createKubernetesProvider({
    kubeConfig: kubeConfig(opts.token), namespace: "sessions", image: "ghcr.io/example/catty-session:1", regions: [EU],
    regionLabel: "topology.kubernetes.io/region", pullSecret: "registry-cred", limits, diskBytes: 10 * 1024 ** 3,
    tuning, serverId: "0123456789abcdef", log: opts.log ?? keptLog(), startTimeoutMs: 1500, pollMs: 20,
  });
}

describe("Kubernetes provider", () => {
  test("creates a Pod per session with the exact manifest: non-root, no token, resources, the region's nodes; waits for it to run", async () => {
    kube = startKubeStandIn();
    const machine = (await provider().start(spec)) as KubernetesMachine;
    expect(machine).toEqual({ provider: "kubernetes", namespace: "sessions", name: expect.stringMatching(/^catty-brave-tiger-1234-[0-9a-f]{8}$/) });
    expect(kube.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "POST /api/v1/namespaces/sessions/pods",
      `GET /api/v1/namespaces/sessions/pods/${machine.name}`,
    ]);
    for (const r of kube.requests) expect(r.auth).toBe(`Bearer ${kube.token}`);
    const pod = kube.requests[0]?.body as { spec: { containers: Array<{ env: Array<{ name: string; value: string }> } & Record<string, unknown>> } & Record<string, unknown> } & Record<string, unknown>;
    const [{ env, ...container }] = pod.spec.containers as [{ env: Array<{ name: string; value: string }> } & Record<string, unknown>];
    const { containers: _, ...podSpec } = pod.spec;
    expect(pod.metadata).toEqual({
      name: machine.name,
      namespace: "sessions",
      labels: { [POD_LABELS.app]: "catty-session", [POD_LABELS.managedBy]: "catty", [POD_LABELS.session]: "brave-tiger-1234", [POD_LABELS.server]: "0123456789abcdef" },
    });
    expect(podSpec).toEqual({
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      hostname: "catty",
      terminationGracePeriodSeconds: 30,
      securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: "RuntimeDefault" } },
      nodeSelector: { "topology.kubernetes.io/region": "europe-west1" },
      imagePullSecrets: [{ name: "registry-cred" }],
      volumes: [{ name: "agent-state", emptyDir: {} }],
    });
    expect(container).toEqual({
      name: "session",
      image: "ghcr.io/example/catty-session:1",
      resources: {
        requests: { cpu: "500m", memory: String(2 * 1024 ** 3) },
        limits: { cpu: "2", memory: String(2 * 1024 ** 3), "ephemeral-storage": String(10 * 1024 ** 3) },
      },
      securityContext: { allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ["ALL"] } },
      volumeMounts: [{ name: "agent-state", mountPath: "/var/lib/catty-agent" }],
    });
    const agent = readAgentEnv(Object.fromEntries(env.map((e) => [e.name, e.value])));
    expect(agent).toMatchObject({ serverUrl: "http://catty.catty.svc:4815", token: "agt_secret", workspace: "/workspace", stateDir: "/var/lib/catty-agent", command: ["claude"], wrap: [], owner: undefined });
    expect(env.every((e) => e.name.startsWith("CATTY_"))).toBe(true);
  });

  test("a Pod no node takes, or whose image cannot be pulled, fails the start with the reason and is deleted", async () => {
    kube = startKubeStandIn();
    const p = provider();
    kube.schedule = "unschedulable";
    const stuck = await p.start(spec).then(() => null, (e: Error & { hint?: string }) => e);
    expect(stuck?.message).toBe("The session's Pod did not start: it cannot be scheduled: 0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.");
    expect(stuck?.hint).toContain("topology.kubernetes.io/region=europe-west1");
    kube.schedule = "bad-image";
    const pull = await p.start(spec).then(() => null, (e: Error) => e);
    expect(pull?.message).toBe("The session's Pod did not start: its image cannot be used (ErrImagePull: pull access denied).");
    expect(kube.pods.size).toBe(0);
    expect(kube.requests.filter((r) => r.method === "DELETE").map((r) => r.search)).toEqual(["?gracePeriodSeconds=0", "?gracePeriodSeconds=0"]);
  });

  test("alive while running; evicted or deleted: gone, with the reason; destroy deletes at once", async () => {
    kube = startKubeStandIn();
    const p = provider();
    const machine = (await p.start(spec)) as KubernetesMachine;
    expect(await p.isAlive(machine)).toBe(true);
    kube.evict("sessions", machine.name);
    expect(await p.isAlive(machine)).toBe(false);
    expect(await p.whyGone?.(machine)).toBe(`its Pod ${machine.name} was evicted: The node was low on resource: memory.`);
    await p.destroy(machine);
    expect(kube.requests.at(-1)).toMatchObject({ method: "DELETE", path: `/api/v1/namespaces/sessions/pods/${machine.name}`, search: "?gracePeriodSeconds=0" });
    expect(await p.isAlive(machine)).toBe(false);
    expect(await p.whyGone?.(machine)).toBe(`its Pod ${machine.name} was deleted`);
    await p.destroy(machine); // already gone: not an error
    expect(await p.isAlive({ provider: "local", pid: 1, dir: "/x" })).toBe(false);
  });

  test("reconcile deletes this server's Pods no live session owns, and nobody else's", async () => {
    kube = startKubeStandIn();
    const p = provider();
    const live = await p.start(spec);
    kube.addPod("sessions", "catty-old-one-0001-aaaaaaaa", { [POD_LABELS.server]: "0123456789abcdef" });
    kube.addPod("sessions", "theirs", { [POD_LABELS.server]: "fedcba9876543210" });
    kube.addPod("sessions", "catty-new-one-0002-bbbbbbbb", { [POD_LABELS.server]: "0123456789abcdef", [POD_LABELS.session]: "new-one-0002" });
    await p.reconcile?.([live], new Set(["new-one-0002"]));
    expect(kube.requests.find((r) => r.method === "GET" && r.search.includes("labelSelector"))?.search).toBe(`?labelSelector=${encodeURIComponent(`${POD_LABELS.server}=0123456789abcdef`)}`);
    expect([...kube.pods.keys()].sort()).toEqual(["sessions/catty-new-one-0002-bbbbbbbb", `sessions/${(live as KubernetesMachine).name}`, "sessions/theirs"].sort());
  });

  test("an API that refuses (RBAC) is a clear error naming what to check, without the token", async () => {
    kube = startKubeStandIn();
    const log = keptLog();
    const err = await provider({ token: "not-the-token", log }).start(spec).then(() => null, (e: Error & { hint?: string }) => e);
    expect(err?.message).toBe("Kubernetes did not take the session's Pod: the Kubernetes API answered 401: Unauthorized.");
    expect(err?.hint).toContain("RBAC");
    expect(JSON.stringify(err)).not.toContain(kube.token);
  });
});

describe("the sessions' namespace", () => {
  test("in the cluster, sessions go to a namespace of their own, never the server's, and the provider creates their Pods there", async () => {
    kube = startKubeStandIn();
    const kc = kubeConfig();
    expect(kubeNamespace(kc, null, "catty")).toBe("catty-sessions");
    expect(kubeNamespace(kc, "team-sessions", "catty")).toBe("team-sessions");
    expect(() => kubeNamespace(kc, "catty", "catty")).toThrow(
      "session Pods may not run in the server's own namespace (catty): set CATTY_K8S_NAMESPACE to a namespace of their own (catty-sessions)",
    );
    // Outside the cluster the server has no namespace: the kubeconfig context's.
    expect(kubeNamespace(kc, null, null)).toBe("sessions");
    const inCluster = createKubernetesProvider({
      kubeConfig: kc, namespace: kubeNamespace(kc, null, "catty"), image: "ghcr.io/example/catty-session:1", regions: [EU],
      regionLabel: "topology.kubernetes.io/region", pullSecret: null, limits, tuning, serverId: "0123456789abcdef", log: keptLog(), startTimeoutMs: 1500, pollMs: 20,
    });
    const machine = (await inCluster.start(spec)) as KubernetesMachine;
    expect(machine.namespace).toBe("catty-sessions");
    const created = kube.requests.find((r) => r.method === "POST");
    expect(created?.path).toBe("/api/v1/namespaces/catty-sessions/pods");
    expect((created?.body as { metadata: { namespace: string } }).metadata.namespace).toBe("catty-sessions");
    expect(kube.requests.some((r) => r.path.startsWith("/api/v1/namespaces/catty/"))).toBe(false);
  });
});

describe("Kubernetes settings", () => {
  test("the image is required; regions name node label values", () => {
    expect(() => readServerConfig({}, { CATTY_PROVIDER: "kubernetes" })).toThrow("--provider kubernetes needs CATTY_K8S_IMAGE");
    const config = readServerConfig({}, { CATTY_PROVIDER: "kubernetes", CATTY_K8S_IMAGE: "i:1", CATTY_REGIONS: "eu-west=europe-west1,us-east=us-east1" });
    expect(config.kubernetes).toEqual({ image: "i:1", namespace: null, regionLabel: "topology.kubernetes.io/region", pullSecret: null });
    expect(config.regions.map((r) => r.place)).toEqual(["europe-west1", "us-east1"]);
  });
});
