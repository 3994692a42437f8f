/**
 * The Kubernetes manifests for running the server (deploy/kubernetes/): sessions in a namespace of
 * their own, fenced by a NetworkPolicy (the server's port, DNS and the internet only); RBAC that
 * reaches Pods in that namespace and nothing more; probes on /healthz and /readyz, a non-root
 * server, every environment variable and secret key one the server reads, no proxy trusted but the
 * Ingress controller, agents dialling the Service, and an Ingress that keeps WebSockets open.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BlockList } from "node:net";
import { readServerConfig, SERVER_SETTINGS } from "../../server/config.ts";

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
  test("RBAC: a Role on Pods in the sessions' namespace only, bound to the server's service account", () => {
    expect(docs.some((d) => d.kind === "ClusterRole" || d.kind === "ClusterRoleBinding")).toBe(false);
    expect(docs.filter((d) => d.kind === "Namespace").map((d) => d.metadata.name)).toEqual(["catty", "catty-sessions"]);
    const role = one("Role");
    expect(role.metadata.namespace).toBe("catty-sessions");
    expect(role.rules).toEqual([{ apiGroups: [""], resources: ["pods"], verbs: ["create", "get", "list", "watch", "delete"] }]);
    const binding = one("RoleBinding");
    const deployment = one("Deployment");
    expect(binding.metadata.namespace).toBe("catty-sessions");
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: deployment.spec.template.spec.serviceAccountName, namespace: "catty" }]);
    for (const d of docs) if (!["Namespace", "Role", "RoleBinding"].includes(d.kind) && d.metadata.name !== "catty-sessions") expect(d.metadata.namespace).toBe("catty");
  });

  test("sessions: a namespace of their own, where nothing reaches them and they reach the server's port, DNS and the internet only", () => {
    const deployment = one("Deployment");
    const [server] = deployment.spec.template.spec.containers;
    const env = Object.fromEntries((server.env as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]));
    expect(env.CATTY_K8S_NAMESPACE).toBe("catty-sessions");
    const policies = docs.filter((d) => d.kind === "NetworkPolicy");
    const sessions = policies.find((p) => p.metadata.namespace === "catty-sessions") as Doc;
    expect(sessions.spec.podSelector).toEqual({});
    expect(sessions.spec.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(sessions.spec.ingress).toEqual([]);
    type Peer = { namespaceSelector?: { matchLabels: Record<string, string> }; podSelector?: { matchLabels: Record<string, string> }; ipBlock?: { cidr: string; except: string[] } };
    const egress = sessions.spec.egress as Array<{ to: Peer[]; ports?: Array<{ protocol: string; port: number }> }>;
    // In the cluster: the server's Pods on its port (not the internal one), and DNS.
    const inCluster = egress.filter((r) => r.to.some((p) => p.namespaceSelector));
    expect(inCluster).toEqual([
      {
        to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "catty" } }, podSelector: { matchLabels: deployment.spec.selector.matchLabels } }],
        ports: [{ protocol: "TCP", port: server.ports.find((p: { name: string }) => p.name === "http").containerPort }],
      },
      {
        to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } }, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
        ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }],
      },
    ]);
    // Beyond: any address but the private, shared, link-local (metadata) and loopback ranges.
    const blocks = egress.flatMap((r) => r.to.flatMap((p) => (p.ipBlock ? [p.ipBlock] : [])));
    expect(egress.filter((r) => !r.to.some((p) => p.namespaceSelector)).every((r) => r.to.every((p) => p.ipBlock) && !r.ports)).toBe(true);
    const outside = new BlockList();
    for (const b of blocks) for (const c of b.except) outside.addSubnet(c.split("/")[0] as string, Number(c.split("/")[1]), c.includes(":") ? "ipv6" : "ipv4");
    for (const address of ["10.1.2.3", "172.20.0.5", "192.168.1.1", "169.254.169.254", "100.64.0.10", "127.0.0.1"]) expect({ address, refused: outside.check(address, "ipv4") }).toEqual({ address, refused: true });
    for (const address of ["fd00::1", "fe80::1", "::1"]) expect({ address, refused: outside.check(address, "ipv6") }).toEqual({ address, refused: true });
    expect(outside.check("1.1.1.1", "ipv4")).toBe(false);
    expect(blocks.map((b) => b.cidr).sort()).toEqual(["0.0.0.0/0", "::/0"]);
    // The server's internal port takes the other replicas only.
    const serverPolicy = policies.find((p) => p.metadata.namespace === "catty") as Doc;
    const internal = (serverPolicy.spec.ingress as Array<{ from: Peer[]; ports: Array<{ port: number }> }>).find((r) => r.ports.some((p) => p.port === 4816));
    expect(internal?.from).toEqual([{ podSelector: { matchLabels: deployment.spec.selector.matchLabels } }]);
  });

  test("no proxy is trusted but the Ingress controller: no address range, and the server refuses the placeholder until it is named", () => {
    const [server] = one("Deployment").spec.template.spec.containers;
    const trusted = (server.env as Array<{ name: string; value?: string }>).find((e) => e.name === "CATTY_TRUSTED_PROXIES")?.value as string;
    for (const entry of trusted.split(",")) expect(entry).not.toMatch(/\/(?!32$|128$)\d+$/);
    expect(() => readServerConfig({}, { CATTY_TRUSTED_PROXIES: trusted })).toThrow(/^CATTY_TRUSTED_PROXIES must be/);
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
