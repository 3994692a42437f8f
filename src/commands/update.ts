import { defineCommand } from "citty";
import { ui } from "../client/ui.ts";
import { checkedVersion, installCommand, installKind, isNewer, latestVersion, replaceBinaries, updateSettings, type Install } from "../client/update.ts";
import { VERSION } from "../lib/version.ts";
import { CattyError } from "../protocol/index.ts";

/** The install to update, never a development build. */
function updatableInstall(): Exclude<Install, { kind: "dev" }> {
  const install = installKind();
  if (install.kind === "dev") {
    throw new CattyError("bad_request", "Cannot update a development build.", `Install a release instead: npm install --global ${updateSettings().packageName}.`);
  }
  return install;
}

/** Installs `latest` the way catty was installed; resolves to the exit code. */
export async function updateTo(latest: string): Promise<number> {
  checkedVersion(latest, "The update check");
  const install = updatableInstall();
  const s = updateSettings();
  ui.start(`Updating catty ${VERSION} → ${latest}…`);
  if (install.kind === "binary") {
    const replaced = await replaceBinaries(install.path, s, latest);
    ui.success(`Updated to ${latest}: ${replaced.join(", ")}.`);
    return 0;
  }
  const argv = installCommand(install.manager, s, latest);
  const proc = Bun.spawn(argv, { stdio: ["inherit", "inherit", "inherit"] });
  const code = await proc.exited;
  if (code !== 0) {
    ui.error(`${argv[0]} failed (exit code ${code}).`);
    ui.info(`Run it yourself: ${argv.join(" ")}`);
    return 1;
  }
  ui.success(`Updated to ${latest}.`);
  return 0;
}

export default defineCommand({
  meta: { name: "update", description: "Update catty to the latest version, the way it was installed" },
  async run() {
    updatableInstall();
    const latest = await latestVersion(updateSettings());
    if (!isNewer(latest, VERSION)) {
      ui.success(`catty ${VERSION} is the latest version.`);
      return;
    }
    process.exitCode = await updateTo(latest);
  },
});
