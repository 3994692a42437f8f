import { defineCommand } from "citty";
import { readCliConfig, removeCredentials } from "../client/config.ts";
import { ui } from "../client/ui.ts";

export default defineCommand({
  meta: { name: "logout", description: "Forget the stored server and token" },
  args: {},
  run() {
    const config = readCliConfig({});
    if (removeCredentials(config)) ui.success(`Logged out (removed ${config.credentialsFile}).`);
    else ui.info("Not logged in.");
  },
});
