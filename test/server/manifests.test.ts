/**
 * The Kubernetes manifests for running the server (deploy/kubernetes/): RBAC that reaches Pods in
 * one namespace and nothing more, probes on /healthz and /readyz, a non-root server, every
 * environment variable and secret key one the server reads, agents dialling the Service, and an
 * Ingress that keeps WebSockets open.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SERVER_SETTINGS } from "../../server/config.ts";

type Doc = { kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> } } & Record<string, any>;
const dir = join(import.meta.dir, "..", "..", "deploy", "kubernetes");
const docs = Bun.YAML.parse(readFileSync(join(dir, "catty.yaml"), "utf8")) as Doc[];
const secret = Bun.YAML.parse(readFileSync(join(dir, "secret.example.yaml"), "utf8")) as Doc;
const one = (kind: string): Doc => {
  const found = docs.filter((d) => d.kind === kind);
  expect(found).toHaveLength(1);
  return found[0] as Doc;
};
const known = new Set(Object.values(SERVER_SETTINGS).flatMap((s) => (s.info.env ?? []) as string[]));

describe("Kubernetes manifests", () => {
  test("RBAC: a namespaced Role on Pods only, bound to the server's service account", () => {
    expect(docs.some((d) => d.kind === "ClusterRole" || d.kind === "ClusterRoleBinding")).toBe(false);
    const role = one("Role");
    expect(role.rules).toEqual([{ apiGroups: [""], resources: ["pods"], verbs: ["create", "get", "list", "watch", "delete"] }]);
    const binding = one("RoleBinding");
    const deployment = one("Deployment");
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: deployment.spec.template.spec.serviceAccountName, namespace: "catty" }]);
    for (const d of docs) if (d.kind !== "Namespace") expect(d.metadata.namespace).toBe("catty");
  });

  test("the server: probes, non-root, graceful stop, settings it reads, agents dialling its Service", () => {
    const deployment = one("Deployment");
    const pod = deployment.spec.template.spec;
    const [server] = pod.containers;
    expect(server.livenessProbe.httpGet.path).toBe("/healthz");
    expect(server.readinessProbe.httpGet.path).toBe("/readyz");
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(server.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(10);
    type Var = { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } };
    // Variables taken from the Pod (its address) only feed the settings after them.
    const fromPod = (server.env as Var[]).filter((e) => e.valueFrom?.fieldRef);
    expect(fromPod).toEqual([{ name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } }]);
    const env = Object.fromEntries((server.env as Var[]).filter((e) => !e.valueFrom).map((e) => [e.name, e.value]));
    for (const name of [...Object.keys(env), ...Object.keys(secret.stringData)]) expect({ name, known: known.has(name) }).toEqual({ name, known: true });
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    const names = (server.env as Var[]).map((e) => e.name);
    expect(names.indexOf("POD_IP")).toBeLessThan(names.indexOf("CATTY_INTERNAL_URL"));
    // The replicas' calls to each other go to a port of their own, which the Service does not expose.
    const internalPort = (server.ports as Array<{ name: string; containerPort: number }>).find((p) => p.name === "internal")?.containerPort;
    expect(env.CATTY_INTERNAL_PORT).toBe(String(internalPort));
    expect(env.CATTY_INTERNAL_URL).toBe(`http://$(POD_IP):${internalPort}`);
    expect(secret.stringData.CATTY_MASTER_KEY).toBeDefined();
    expect(secret.stringData.CATTY_INTERNAL_KEY).toBeDefined();
    expect(secret.stringData.CATTY_DATABASE_URL).toMatch(/^postgres/);
    expect(env.CATTY_PROVIDER).toBe("kubernetes");
    const service = one("Service");
    expect(env.CATTY_PUBLIC_URL).toBe(`http://${service.metadata.name}.catty.svc:${service.spec.ports[0].port}`);
    expect(server.envFrom).toEqual([{ secretRef: { name: secret.metadata.name } }]);
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
  });

  test("the Ingress keeps terminals' WebSockets open for an hour and routes to the Service", () => {
    const ingress = one("Ingress");
    expect(Number(ingress.metadata.annotations?.["nginx.ingress.kubernetes.io/proxy-read-timeout"])).toBeGreaterThanOrEqual(3600);
    expect(Number(ingress.metadata.annotations?.["nginx.ingress.kubernetes.io/proxy-send-timeout"])).toBeGreaterThanOrEqual(3600);
    expect(ingress.spec.rules[0].http.paths[0].backend.service.name).toBe(one("Service").metadata.name);
  });
});
