/**
 * Kubernetes provider: one Pod per session, from the session image, created, read, listed and
 * deleted through the Kubernetes API with `@kubernetes/client-node` (in-cluster service account
 * or kubeconfig, as the client finds them). A region's `place` is the value of a node label
 * (`topology.kubernetes.io/region` unless configured) the Pod selects.
 *
 * The Pod runs as the image's unprivileged `catty` user (uid 1000): non-root, no privilege
 * escalation, every capability dropped, the runtime's seccomp profile, no service account token,
 * no service links. Agent and program therefore share that user; the Pod, which holds nothing but
 * this one session, is the boundary (the Docker provider, whose agent keeps root, gives the
 * program a user of its own instead). The agent's state is an `emptyDir`; saves are the
 * persistence, so no volume claim is needed. Resource requests and limits come from the session
 * limits. A Pod deleted or evicted under a running session fails it with the reason (`whyGone`);
 * a starting server deletes Pods of its own that no live session owns.
 */
import { readFileSync } from "node:fs";
import * as k8s from "@kubernetes/client-node";
import type { Log } from "../../src/lib/log.ts";
import type { AgentTuning } from "../../src/protocol/agent-env.ts";
import { CattyError, type KubernetesMachine, type MachineHandle } from "../../src/protocol/index.ts";
import type { Region } from "../regions.ts";
import { AGENT_STATE, imageAgentEnv } from "./docker.ts";
import type { SessionLimits } from "./sandbox.ts";
import type { MachineSpec, Provider } from "./types.ts";

export interface KubernetesProviderOptions {
  /** The API client (tests build one on a kubeconfig naming the stand-in). */
  kubeConfig: k8s.KubeConfig;
  namespace: string;
  image: string;
  regions: readonly Region[];
  /** The node label a region's place is a value of. */
  regionLabel: string;
  pullSecret: string | null;
  limits: SessionLimits;
  /** Ephemeral storage of a Pod (workspace included); undefined: not limited. */
  diskBytes?: number;
  tuning: AgentTuning;
  serverId: string;
  log: Log;
  /** How long a new Pod may take to run (scheduling and the image pull included; default 180 s). */
  startTimeoutMs?: number;
  /** How often a starting Pod is read (default 500 ms). */
  pollMs?: number;
}

/** Labels on every session Pod. */
export const POD_LABELS = { app: "app.kubernetes.io/name", managedBy: "app.kubernetes.io/managed-by", session: "catty.dev/session", server: "catty.dev/server" } as const;
/** The image's `catty` user. */
const CATTY_UID = 1000;

const kube = (machine: MachineHandle): KubernetesMachine | null => (machine.provider === "kubernetes" ? machine : null);
const status = (err: unknown): number | null => (err instanceof k8s.ApiException ? err.code : null);
/** What the API said, without the request (whose headers hold the token). */
function describe(err: unknown): string {
  if (err instanceof k8s.ApiException) {
    const body = typeof err.body === "string" ? err.body : err.body ? JSON.stringify(err.body) : "";
    let message = body.slice(0, 300) || ({ 401: "Unauthorized", 403: "Forbidden" } as Record<number, string>)[err.code] || "";
    try {
      const parsed = JSON.parse(body) as { message?: unknown };
      if (typeof parsed.message === "string") message = parsed.message;
    } catch {
      // not JSON
    }
    return `the Kubernetes API answered ${err.code}${message ? `: ${message}` : ""}`;
  }
  return `the Kubernetes API cannot be reached (${(err as Error).message})`;
}

/** The Pod a session runs in, as sent to the API. */
export function sessionPod(spec: MachineSpec, opts: Omit<KubernetesProviderOptions, "kubeConfig" | "log">, name: string): k8s.V1Pod {
  // Non-root: the program runs as the agent's user.
  const env = imageAgentEnv(spec, opts.tuning, null);
  const memory = String(opts.limits.memoryBytes);
  const cpus = String(opts.limits.cpus);
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: opts.namespace,
      labels: { [POD_LABELS.app]: "catty-session", [POD_LABELS.managedBy]: "catty", [POD_LABELS.session]: spec.label, [POD_LABELS.server]: opts.serverId },
    },
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      hostname: "catty",
      terminationGracePeriodSeconds: 30,
      securityContext: { runAsNonRoot: true, runAsUser: CATTY_UID, runAsGroup: CATTY_UID, fsGroup: CATTY_UID, seccompProfile: { type: "RuntimeDefault" } },
      ...(spec.region.place ? { nodeSelector: { [opts.regionLabel]: spec.region.place } } : {}),
      ...(opts.pullSecret ? { imagePullSecrets: [{ name: opts.pullSecret }] } : {}),
      containers: [
        {
          name: "session",
          image: opts.image,
          env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
          resources: {
            // Memory is held for the session (no eviction for using what it may); CPU is shared
            // until it is needed.
            requests: { cpu: `${Math.max(100, Math.round(opts.limits.cpus * 250))}m`, memory },
            limits: { cpu: cpus, memory, ...(opts.diskBytes ? { "ephemeral-storage": String(opts.diskBytes) } : {}) },
          },
          securityContext: { allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ["ALL"] } },
          volumeMounts: [{ name: "agent-state", mountPath: AGENT_STATE }],
        },
      ],
      volumes: [{ name: "agent-state", emptyDir: {} }],
    },
  };
}

export function createKubernetesProvider(opts: KubernetesProviderOptions): Provider {
  const { log, namespace } = opts;
  const api = opts.kubeConfig.makeApiClient(k8s.CoreV1Api);
  const read = async (m: KubernetesMachine): Promise<k8s.V1Pod | null> => {
    try {
      return await api.readNamespacedPod({ name: m.name, namespace: m.namespace });
    } catch (err) {
      if (status(err) === 404) return null;
      throw err;
    }
  };
  const remove = async (m: { name: string; namespace: string }): Promise<void> => {
    try {
      await api.deleteNamespacedPod({ name: m.name, namespace: m.namespace, gracePeriodSeconds: 0 });
    } catch (err) {
      if (status(err) !== 404) throw new Error(describe(err));
    }
  };
  /** Why a Pod will never run, from its status; null while it may still. */
  const wontRun = (pod: k8s.V1Pod): string | null => {
    const s = pod.status;
    if (s?.phase === "Failed" || s?.phase === "Succeeded") return `it ${s.phase === "Failed" ? "failed" : "ended"}${s.reason ? ` (${s.reason}${s.message ? `: ${s.message}` : ""})` : ""}`;
    const waiting = s?.containerStatuses?.[0]?.state?.waiting;
    if (waiting && ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"].includes(waiting.reason ?? "")) {
      return `its image cannot be used (${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""})`;
    }
    return null;
  };

  return {
    name: "kubernetes",
    regions: opts.regions,
    isolated: true,
    async start(spec: MachineSpec) {
      const name = `catty-${spec.label}-${crypto.randomUUID().slice(0, 8)}`;
      const machine: KubernetesMachine = { provider: "kubernetes", namespace, name };
      try {
        await api.createNamespacedPod({ namespace, body: sessionPod(spec, opts, name) });
      } catch (err) {
        throw new CattyError("unavailable", `Kubernetes did not take the session's Pod: ${describe(err)}.`, "Check the server's RBAC (create Pods in its namespace) and try again.");
      }
      const deadline = Date.now() + (opts.startTimeoutMs ?? 180_000);
      let last = "it was not scheduled";
      for (;;) {
        const pod = await read(machine).catch(() => undefined);
        if (pod === null) throw new CattyError("unavailable", `The session's Pod ${name} was deleted while it started.`);
        if (pod?.status?.phase === "Running") break;
        const why = pod ? wontRun(pod) : null;
        const unschedulable = pod?.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
        if (unschedulable?.message) last = `it cannot be scheduled: ${unschedulable.message}`;
        if (why || Date.now() > deadline) {
          await remove(machine).catch((err: unknown) => log.warn("could not delete a Pod that did not start", { pod: name, err: (err as Error).message }));
          throw new CattyError("unavailable", `The session's Pod did not start: ${(why ?? last).replace(/\.+$/, "")}.`, spec.region.place ? `Nodes labelled ${opts.regionLabel}=${spec.region.place} may be full or missing; try another region (catty regions).` : "Try again.");
        }
        await Bun.sleep(opts.pollMs ?? 500);
      }
      log.info("session Pod running", { label: spec.label, pod: name, namespace });
      return machine;
    },
    async isAlive(machine) {
      const m = kube(machine);
      if (!m) return false;
      try {
        const pod = await read(m);
        return pod !== null && !pod.metadata?.deletionTimestamp && (pod.status?.phase === "Running" || pod.status?.phase === "Pending");
      } catch (err) {
        // The API cannot say right now: the Pod may well run; ask again later.
        log.warn("could not read a session Pod", { pod: m.name, err: describe(err) });
        return true;
      }
    },
    async whyGone(machine) {
      const m = kube(machine);
      if (!m) return null;
      const pod = await read(m).catch(() => undefined);
      if (pod === undefined) return null;
      if (pod === null) return `its Pod ${m.name} was deleted`;
      const s = pod.status;
      if (s?.reason === "Evicted") return `its Pod ${m.name} was evicted${s.message ? `: ${s.message}` : ""}`;
      const ended = s?.containerStatuses?.[0]?.state?.terminated;
      if (ended?.reason === "OOMKilled") return `its Pod ${m.name} ran out of memory`;
      if (pod.metadata?.deletionTimestamp) return `its Pod ${m.name} is being deleted`;
      return `its Pod ${m.name} is ${s?.phase ?? "in an unknown state"}${ended ? ` (exit code ${ended.exitCode}${ended.reason ? `, ${ended.reason}` : ""})` : ""}`;
    },
    async destroy(machine) {
      const m = kube(machine);
      if (m) await remove(m);
    },
    async release(machine) {
      const m = kube(machine);
      if (m) await remove(m);
    },
    async reconcile(live, liveLabels) {
      const keep = new Set(live.flatMap((m) => (m.provider === "kubernetes" ? [`${m.namespace}/${m.name}`] : [])));
      const pods = await api.listNamespacedPod({ namespace, labelSelector: `${POD_LABELS.server}=${opts.serverId}` });
      for (const pod of pods.items) {
        const name = pod.metadata?.name;
        if (!name || keep.has(`${namespace}/${name}`) || pod.metadata?.labels?.[POD_LABELS.server] !== opts.serverId) continue;
        if (liveLabels.has(pod.metadata?.labels?.[POD_LABELS.session] ?? "")) continue;
        log.warn("deleting a session Pod with no live session", { pod: name });
        await remove({ name, namespace }).catch((err: unknown) => log.warn("could not delete a Pod", { pod: name, err: (err as Error).message }));
      }
    },
  };
}

/** The client's configuration: in the cluster its service account, else the kubeconfig (`KUBECONFIG`, `~/.kube/config`). */
export function loadKubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error("no Kubernetes cluster configured: run the server in the cluster, or set KUBECONFIG");
  return kc;
}

/** The server's own namespace when it runs in the cluster; null otherwise. */
export function ownNamespace(): string | null {
  try {
    return readFileSync("/var/run/secrets/kubernetes.io/serviceaccount/namespace", "utf8").trim() || null;
  } catch {
    return null; // not in a cluster
  }
}

/**
 * The namespace session Pods go in: the setting; in the cluster `<the server's namespace>-sessions`;
 * else the kubeconfig context's, or `default`. Never the server's own: a session (code an AI wrote)
 * shares nothing with the server, its Secret or its Service account, and the sessions' network
 * policy covers their whole namespace.
 */
export function kubeNamespace(kc: k8s.KubeConfig, configured: string | null, own: string | null = ownNamespace()): string {
  const namespace = configured ?? (own ? `${own}-sessions` : (kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default"));
  if (namespace === own) {
    throw new Error(
      `session Pods may not run in the server's own namespace (${own}): set CATTY_K8S_NAMESPACE to a namespace of their own (${own}-sessions), with the server's Role on Pods there`,
    );
  }
  return namespace;
}
