/**
 * A stand-in for the Kubernetes API server (none can run here), serving the core/v1 Pod paths and
 * shapes the Kubernetes provider uses, as the API reference documents them: create
 * (`POST /api/v1/namespaces/{ns}/pods`), read and delete (`…/pods/{name}`), and list with a
 * `labelSelector` (`key=value`, comma-separated); errors as `Status` objects. It checks the bearer
 * token, records every request, and keeps Pods in memory. A new Pod is scheduled and runs at once
 * unless `schedule` says otherwise; with `run`, its one container's process is started for real
 * on this host (its exit makes the Pod `Succeeded` or `Failed`). `kubeconfig()` writes a
 * kubeconfig naming it.
 */
import { writeFileSync } from "node:fs";
import type { Subprocess } from "bun";
import { serveRecorded, type RecordedApiRequest } from "./api-stand-in.ts";

export type KubeRequest = RecordedApiRequest;

interface PodRecord {
  pod: { metadata: Record<string, unknown> & { name: string; namespace: string; labels?: Record<string, string> }; spec: Record<string, unknown>; status: Record<string, unknown> };
  proc: Subprocess | null;
}

export interface KubeStandIn {
  url: string;
  token: string;
  requests: KubeRequest[];
  pods: Map<string, PodRecord>;
  /** How new Pods fare: run at once, stay pending (no node fits), or fail to pull their image. */
  schedule: "run" | "unschedulable" | "bad-image";
  /** Evicts a Pod as the kubelet does under memory pressure. */
  evict(namespace: string, name: string): void;
  /** A Pod made by someone else (another server, an earlier run). */
  addPod(namespace: string, name: string, labels: Record<string, string>): void;
  kubeconfig(file: string, namespace: string): void;
  stop(): void;
}

type Container = { name: string; image: string; env?: Array<{ name: string; value: string }> };

export function startKubeStandIn(opts: { token?: string; run?: (container: Container, pod: string) => Subprocess } = {}): KubeStandIn {
  const token = opts.token ?? `kube-token-${crypto.randomUUID()}`;
  const pods = new Map<string, PodRecord>();
  const requests: KubeRequest[] = [];
  const statusOf = (code: number, reason: string, message: string): Response =>
    Response.json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }, { status: code });
  const matches = (labels: Record<string, string> | undefined, selector: string | null): boolean =>
    !selector || selector.split(",").every((term) => {
      const [k, v] = term.split("=");
      return labels?.[k ?? ""] === v;
    });
  const state: KubeStandIn = {
    url: "",
    token,
    requests,
    pods,
    schedule: "run",
    evict(namespace, name) {
      const p = pods.get(`${namespace}/${name}`);
      if (!p) return;
      p.proc?.kill("SIGKILL");
      p.pod.status = { phase: "Failed", reason: "Evicted", message: "The node was low on resource: memory." };
    },
    addPod(namespace, name, labels) {
      pods.set(`${namespace}/${name}`, { pod: { metadata: { name, namespace, labels, uid: crypto.randomUUID() }, spec: {}, status: { phase: "Running" } }, proc: null });
    },
    kubeconfig(file, namespace) {
      writeFileSync(
        file,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          // Plain HTTP on loopback: the client takes it only with TLS checks off.
          clusters: [{ name: "stand-in", cluster: { server: state.url, "insecure-skip-tls-verify": true } }],
          users: [{ name: "catty", user: { token } }],
          contexts: [{ name: "stand-in", context: { cluster: "stand-in", user: "catty", namespace } }],
          "current-context": "stand-in",
        }),
        { mode: 0o600 },
      );
    },
    stop() {
      server.stop(true);
      for (const p of pods.values()) p.proc?.kill("SIGKILL");
    },
  };
  const server = serveRecorded(
    requests,
    (req, url, body) => {
      if (req.headers.get("authorization") !== `Bearer ${token}`) return statusOf(401, "Unauthorized", "Unauthorized");
      const m = /^\/api\/v1\/namespaces\/([a-z0-9-]+)\/pods(?:\/([a-z0-9-]+))?$/.exec(url.pathname);
      if (!m) return statusOf(404, "NotFound", `the server could not find the requested resource (${url.pathname})`);
      const [, namespace = "", name] = m;
      if (!name && req.method === "GET") {
        const items = [...pods.values()].filter((p) => p.pod.metadata.namespace === namespace && matches(p.pod.metadata.labels, url.searchParams.get("labelSelector"))).map((p) => p.pod);
        return Response.json({ kind: "PodList", apiVersion: "v1", metadata: { resourceVersion: "1" }, items });
      }
      if (!name && req.method === "POST") {
        const pod = body as PodRecord["pod"] | undefined;
        const podName = pod?.metadata?.name;
        if (!podName || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(podName)) return statusOf(422, "Invalid", "metadata.name: Invalid value");
        if (pods.has(`${namespace}/${podName}`)) return statusOf(409, "AlreadyExists", `pods "${podName}" already exists`);
        const record: PodRecord = { pod: { ...pod, metadata: { ...pod.metadata, namespace, uid: crypto.randomUUID(), creationTimestamp: new Date().toISOString() }, status: { phase: "Pending" } }, proc: null };
        pods.set(`${namespace}/${podName}`, record);
        if (state.schedule === "unschedulable") {
          record.pod.status = { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector." }] };
        } else if (state.schedule === "bad-image") {
          record.pod.status = { phase: "Pending", containerStatuses: [{ name: "session", ready: false, restartCount: 0, image: "x", imageID: "", state: { waiting: { reason: "ErrImagePull", message: "pull access denied" } } }] };
        } else {
          record.pod.status = { phase: "Running", containerStatuses: [{ name: "session", ready: true, restartCount: 0, image: "x", imageID: "", state: { running: { startedAt: new Date().toISOString() } } }] };
          const container = (record.pod.spec.containers as Container[] | undefined)?.[0];
          if (opts.run && container) {
            record.proc = opts.run(container, podName);
            void record.proc.exited.then((code) => {
              if (record.pod.status.reason === "Evicted") return;
              record.pod.status = {
                phase: code === 0 ? "Succeeded" : "Failed",
                containerStatuses: [{ name: "session", ready: false, restartCount: 0, image: "x", imageID: "", state: { terminated: { exitCode: code, reason: code === 0 ? "Completed" : "Error" } } }],
              };
            });
          }
        }
        return Response.json(record.pod, { status: 201 });
      }
      const record = pods.get(`${namespace}/${name}`);
      if (!record) return statusOf(404, "NotFound", `pods "${name}" not found`);
      if (req.method === "GET") return Response.json(record.pod);
      if (req.method === "DELETE") {
        record.proc?.kill("SIGKILL");
        pods.delete(`${namespace}/${name}`);
        return Response.json(record.pod);
      }
      return statusOf(405, "MethodNotAllowed", `${req.method} is not allowed here`);
    },
    () => statusOf(400, "BadRequest", "the body is not JSON"),
  );
  state.url = `http://127.0.0.1:${server.port}`;
  return state;
}
