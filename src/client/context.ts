/**
 * Turns the CLI configuration into an API client: an explicit server, the stored login, or the
 * zero-setup local server.
 */
import { CattyError } from "../protocol/errors.ts";
import { createApiClient, type ApiClient } from "./api.ts";
import { readCliConfig, readCredentials, writeCredentials, type CliConfig, type CliFlags } from "./config.ts";
import { ensureLocalServer } from "./local-server.ts";
import { checkTransport } from "./transport.ts";

export interface Context {
  config: CliConfig;
  client: ApiClient;
}

/** A command other than login allows an http:// server where the login did. */
const INSECURE_HOW = "`catty login --insecure`";

export async function resolveContext(flags: CliFlags, onStarting: () => void = () => {}): Promise<Context> {
  const config = readCliConfig(flags);
  const creds = readCredentials(config);
  if (config.apiOverride) {
    const token = config.tokenOverride ?? (creds && creds.api === config.apiOverride ? creds.token : undefined);
    if (!token) {
      throw new CattyError(
        "unauthorized",
        `Not logged in to ${config.apiOverride}.`,
        `Run \`catty login --api ${config.apiOverride}\` (or set CATTY_TOKEN).`,
      );
    }
    checkTransport(config.apiOverride, creds?.api === config.apiOverride && creds.insecure === true, INSECURE_HOW);
    return { config, client: createApiClient(config.apiOverride, token) };
  }
  if (creds && !creds.local) {
    checkTransport(creds.api, creds.insecure === true, INSECURE_HOW);
    return { config, client: createApiClient(creds.api, config.tokenOverride ?? creds.token) };
  }
  const local = await ensureLocalServer(config, onStarting);
  if (!creds || creds.api !== local.api || creds.token !== local.token) writeCredentials(config, local);
  return { config, client: createApiClient(local.api, local.token) };
}
