import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { startForward, type ForwardSpec } from "../client/forward.ts";
import { ui } from "../client/ui.ts";
import { createLog } from "../lib/log.ts";
import { parseDuration } from "../lib/duration.ts";
import { CattyError, isLive } from "../protocol/index.ts";
import { apiArg, labelArg } from "./_args.ts";

const PORT = /^\d{1,5}$/;

function port(text: string, what: string): number {
  const n = Number(text);
  if (!PORT.test(text) || n < 1 || n > 65535) throw new CattyError("bad_request", `${what} ${JSON.stringify(text)} is not a port (1 to 65535).`);
  return n;
}

/** `3000` or `8080:3000` (LOCAL:REMOTE); `--local` sets the first one's local port. */
export function parseSpecs(words: string[], local: string | undefined, bind: string): ForwardSpec[] {
  if (words.length === 0) throw new CattyError("bad_request", "Which port of the session? catty forward LABEL 3000.", "Run `catty list` to see the ports each session listens on.");
  if (words.length > 64) throw new CattyError("bad_request", "At most 64 ports per forward.");
  const specs = words.map((w, i) => {
    const m = /^(\d+):(\d+)$/.exec(w);
    const remote = port(m ? (m[2] as string) : w, "The session's port");
    const localPort = m ? port(m[1] as string, "The local port") : i === 0 && local !== undefined ? port(local, "--local") : remote;
    return { remote, local: localPort, bind };
  });
  const seen = new Set<number>();
  for (const s of specs) {
    if (seen.has(s.local)) throw new CattyError("bad_request", `Local port ${s.local} is named twice.`, "Give each port its own local port: LOCAL:REMOTE.");
    seen.add(s.local);
  }
  return specs;
}

export default defineCommand({
  meta: { name: "forward", description: "Forward local ports to a session's ports, like ssh -L (catty forward LABEL 3000 [LOCAL:REMOTE …])" },
  args: {
    ...apiArg,
    ...labelArg,
    local: { type: "string", description: "Local port for the first session port (default: the same number)" },
    bind: { type: "string", default: "127.0.0.1", description: "Local address to listen on (default 127.0.0.1: this machine only)" },
    share: { type: "boolean", default: false, description: "Print a link to the port that works without signing in (until --expires, or --revoke)" },
    expires: { type: "string", description: "With --share: how long the link works, e.g. 2h, 30m, 7d (default 1d, at most 30d)" },
    revoke: { type: "boolean", default: false, description: "Revoke the session's share links (of the ports given, or all)" },
  },
  async run({ args }) {
    const words = args._.slice(1).map(String);
    if (args.revoke) {
      const ctx = await resolveContext(args, () => ui.start("Starting a local Catty server…"));
      const ports = words.length === 0 ? [null] : parseSpecs(words, undefined, args.bind).map((s) => s.remote);
      let revoked = 0;
      for (const p of ports) revoked += (await ctx.client.revokeShares(args.label, p)).revoked;
      ui.success(`Revoked ${revoked} link${revoked === 1 ? "" : "s"} of ${args.label}${words.length ? ` (port ${words.join(", ")})` : ""}.`);
      return;
    }
    const specs = parseSpecs(words, args.local, args.bind);
    if (args.expires !== undefined && !args.share) throw new CattyError("bad_request", "--expires goes with --share.");
    const ctx = await resolveContext(args, () => ui.start("Starting a local Catty server…"));
    if (args.share) {
      const expiresInMs = args.expires === undefined ? undefined : parseDuration(args.expires, "--expires");
      for (const s of specs) {
        const made = await ctx.client.share(args.label, { port: s.remote, ...(expiresInMs === undefined ? {} : { expiresInMs }) });
        process.stdout.write(`${made.url}\n`);
        ui.info(`Port ${s.remote}: works without signing in until ${new Date(made.expiresAt).toLocaleString()}; \`catty forward ${args.label} ${s.remote} --revoke\` ends it.`);
      }
      return;
    }
    const session = await ctx.client.get(args.label);
    if (!isLive(session.status)) {
      throw new CattyError("session_ended", `Session ${session.label} has ended (${session.status}); its ports are gone.`, "Start a new one with `catty new`.");
    }
    const log = createLog({ scope: "cli", file: ctx.config.logFile, level: ctx.config.logLevel });
    const fwd = await startForward(
      { api: ctx.client.api, token: ctx.client.token, label: session.label, specs, log },
      {
        up: (first) => (first ? ui.success(`Connected to ${session.label}. Ctrl+C to stop.`) : ui.success("Link back; open connections carry on.")),
        down: (info) => ui.warn(`Link to the server lost (${info.reason || info.code}); dialling again — open connections wait.`),
        refused: (p, reason) => ui.warn(`A connection to ${session.label}:${p} ended: ${reason}.`),
        error: (message) => ui.warn(`Server: ${message}`),
      },
    );
    for (const s of fwd.listening) {
      const listens = session.ports.find((p) => p.port === s.remote);
      const what = listens ? `${s.remote}${listens.name ? ` · ${listens.name}` : ""}` : `${s.remote} (nothing listens there yet)`;
      process.stdout.write(`Forwarding ${s.bind.includes(":") ? `[${s.bind}]` : s.bind}:${s.local} → ${session.label}:${what}\n`);
    }
    const stop = new Promise<"stopped">((resolve) => {
      process.once("SIGINT", () => resolve("stopped"));
      process.once("SIGTERM", () => resolve("stopped"));
    });
    const why = await Promise.race([stop, fwd.ended]);
    await fwd.close();
    if (why === "stopped") {
      ui.info("Forward stopped.");
      return;
    }
    throw new CattyError("session_ended", `The forward to ${session.label} ended: ${why}.`);
  },
});
