import { defineCommand } from "citty";
import { createApiClient } from "../client/api.ts";
import { readCliConfig, readCredentials, removeCredentials } from "../client/config.ts";
import { ui } from "../client/ui.ts";
import { tokenId } from "../lib/token-id.ts";
import { CattyError } from "../protocol/index.ts";

/** How long the server has to revoke the token before logout goes on without it. */
const REVOKE_TIMEOUT_MS = 10_000;

/**
 * Revokes the stored token on its server (which also signs out the browsers it signed in), then
 * forgets it. The zero-setup local server's owner token is only forgotten: the next `catty` uses
 * it again. A server that cannot be reached does not keep the token here; the message says how to
 * revoke it there.
 */
export default defineCommand({
  meta: { name: "logout", description: "Revoke the stored token on its server and forget it" },
  args: {},
  async run() {
    const config = readCliConfig({});
    const creds = readCredentials(config);
    if (!creds || creds.local) {
      if (removeCredentials(config)) ui.success(`Logged out (removed ${config.credentialsFile}).`);
      else ui.info("Not logged in.");
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${REVOKE_TIMEOUT_MS / 1000} s`)), REVOKE_TIMEOUT_MS);
    });
    try {
      await Promise.race([createApiClient(creds.api, creds.token).revokeToken(), timeout]);
      removeCredentials(config);
      ui.success(`Logged out: the token was revoked on ${creds.api} and removed from ${config.credentialsFile}.`);
    } catch (err) {
      removeCredentials(config);
      if (err instanceof CattyError && err.code === "unauthorized") {
        ui.success(`Logged out: ${creds.api} no longer accepted the token (revoked or expired); removed it from ${config.credentialsFile}.`);
        return;
      }
      ui.warn(
        `Removed the token from ${config.credentialsFile}, but could not revoke it on ${creds.api} (${(err as Error).message}). ` +
          `It still works there until revoked: on the server run \`catty-server token revoke ${tokenId(creds.token)}\`.`,
      );
    } finally {
      clearTimeout(timer);
    }
  },
});
