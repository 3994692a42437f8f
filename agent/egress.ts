/**
 * The egress policy in a container, where the agent and the program share one network namespace
 * (the Docker provider): the agent, root there with CAP_NET_ADMIN, sets nftables rules
 * (src/lib/egress.ts) before the program starts, its own traffic exempt by its uid (it must reach
 * the server, wherever that is); the program, another uid without capabilities, cannot change
 * them. DNS goes to the resolvers of the container's /etc/resolv.conf.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { egressRules, resolveAllow } from "../src/lib/egress.ts";
import type { AgentEgress } from "../src/protocol/agent-env.ts";

/** The nameservers of a resolv.conf. */
export function nameservers(text: string): string[] {
  return text
    .split("\n")
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((a): a is string => a !== undefined && isIP(a.replace(/%.*$/, "")) !== 0)
    .map((a) => a.replace(/%.*$/, ""));
}

/** Sets the rules; throws, saying why, when they could not be set (the program must not run open). */
export async function applyEgress(egress: AgentEgress, resolvConf = "/etc/resolv.conf"): Promise<void> {
  let dns: string[] = [];
  try {
    dns = nameservers(readFileSync(resolvConf, "utf8"));
  } catch {
    // no resolver: no DNS
  }
  const rules = egressRules(egress.policy, await resolveAllow(egress.allow), { dns, exemptUid: process.getuid?.() ?? 0 });
  const nft = Bun.which("nft", { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` });
  if (!nft) throw new Error("the session image has no nft (nftables): rebuild it (npm run session-image)");
  const r = Bun.spawnSync([nft, "-f", "-"], { stdin: new TextEncoder().encode(rules), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`nft refused the egress rules: ${r.stderr.toString().trim() || `exit ${r.exitCode}`} (the container needs CAP_NET_ADMIN)`);
}
