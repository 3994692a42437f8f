/** `catty regions`: where the server can run sessions (`catty new --region ID`), the default marked. */
import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import { apiArg } from "./_args.ts";

export default defineCommand({
  meta: { name: "regions", description: "Where the server can run sessions (catty new --region ID)" },
  args: {
    ...apiArg,
    json: { type: "boolean", default: false, description: "Print JSON (an array) and nothing else" },
  },
  async run({ args }) {
    const ctx = await resolveContext(args, () => args.json || ui.start("Starting a local Catty server…"));
    const regions = await ctx.client.regions();
    if (args.json) {
      process.stdout.write(`${JSON.stringify(regions, null, 2)}\n`);
      return;
    }
    const width = Math.max(2, ...regions.map((r) => r.id.length));
    const lines = [`${"ID".padEnd(width)}  NAME`, ...regions.map((r) => `${r.id.padEnd(width)}  ${r.name}${r.default ? "  (default)" : ""}`)];
    process.stdout.write(`${lines.join("\n")}\n`);
  },
});
