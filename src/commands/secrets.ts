/**
 * `catty secrets add|set|list|remove|test`: the user's secrets, encrypted on this machine
 * (src/client/secrets.ts); every `catty new` hands them to the session's program as environment
 * variables. `add github` is a guided setup of a GitHub token.
 */
import { defineCommand } from "citty";
import { openInBrowser } from "../client/browser.ts";
import { readCliConfig } from "../client/config.ts";
import { checkGitHubToken, NEW_TOKEN_URL } from "../client/github.ts";
import { confirm, readHidden } from "../client/hidden-input.ts";
import { checkSecretName, GITHUB_NAMES, openSecretStore, type SecretStore } from "../client/secrets.ts";
import { ui } from "../client/ui.ts";
import { createLog } from "../lib/log.ts";
import { CattyError } from "../protocol/errors.ts";

const store = () => openSecretStore(readCliConfig({}).home);
const log = () => {
  const c = readCliConfig({});
  return createLog({ scope: "cli", file: c.logFile, level: c.logLevel });
};

function checkName(name: string): void {
  const problem = checkSecretName(name);
  if (problem) throw new CattyError("bad_request", problem);
}

/** Where the values' key is, said once after saving. */
function keyNote(secrets: SecretStore): string {
  return secrets.keyPlace() === "os"
    ? "its key is in your system's credential store"
    : "no system credential store here, so its key is derived from this machine and account: as safe as your ~/.catty";
}

function noValue(): void {
  ui.error("No value provided");
  process.exitCode = 1;
}

async function addGitHub(): Promise<void> {
  const config = readCliConfig({});
  process.stderr.write(
    [
      "Catty gives your sessions a GitHub token, so Claude can clone private repositories, push",
      "commits and open pull requests (git over HTTPS and the gh CLI both use it).",
      "",
      `Create a classic personal access token with the "repo" scope:`,
      `  ${NEW_TOKEN_URL}`,
      "",
    ].join("\n"),
  );
  if ((await confirm("Open that page in your browser?", true)) && !openInBrowser(NEW_TOKEN_URL, NEW_TOKEN_URL)) ui.info(`Open this page in a browser: ${NEW_TOKEN_URL}`);
  const token = await readHidden("GitHub token: ", log());
  if (token === null) {
    process.exitCode = 130;
    return;
  }
  if (!token.trim()) return noValue();
  ui.start("Checking the token with GitHub…");
  const account = await checkGitHubToken(token.trim(), config.githubApi);
  const secrets = store();
  for (const name of GITHUB_NAMES) await secrets.set(name, token.trim());
  ui.success(`GitHub token saved for @${account.login} (as GH_TOKEN and GITHUB_TOKEN; ${keyNote(secrets)})`);
  if (account.scopes && !account.scopes.includes("repo")) {
    ui.warn(`The token has no "repo" scope (it has: ${account.scopes.join(", ") || "none"}); private repositories will not work.`);
  }
}

const add = defineCommand({
  meta: { name: "add", description: "Add a secret, typed hidden (catty secrets add github: guided GitHub setup)" },
  args: { name: { type: "positional", required: true, description: "NAME, e.g. NPM_TOKEN, or github" } },
  async run({ args }) {
    if (args.name.toLowerCase() === "github") return addGitHub();
    checkName(args.name);
    const value = await readHidden(`Value for ${args.name}: `, log());
    if (value === null) {
      process.exitCode = 130;
      return;
    }
    if (value === "") return noValue();
    const secrets = store();
    await secrets.set(args.name, value);
    ui.success(`Secret "${args.name}" saved (${keyNote(secrets)})`);
  },
});

const set = defineCommand({
  meta: { name: "set", description: "Set a secret from the command line (it stays in your shell's history)" },
  args: {
    name: { type: "positional", required: true, description: "NAME" },
    value: { type: "positional", required: false, description: "VALUE" },
  },
  async run({ args }) {
    checkName(args.name);
    if (!args.value) return noValue();
    const secrets = store();
    await secrets.set(args.name, args.value);
    ui.success(`Secret "${args.name}" saved (${keyNote(secrets)})`);
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List your secrets' names (never their values)" },
  args: {},
  async run() {
    const secrets = store();
    const names = secrets.names();
    if (names.length === 0) {
      ui.info("No secrets configured.");
      ui.info("Add one with `catty secrets add NAME`, or set up GitHub with `catty secrets add github`.");
      return;
    }
    const { failed, problem } = await secrets.open();
    for (const name of names) console.log(failed.includes(name) ? `${name}  (cannot be decrypted on this machine)` : name);
    if (problem) ui.warn(`${failed.length === 1 ? "This secret" : "These secrets"} cannot be read: ${problem}.`);
    else if (failed.length > 0) {
      ui.warn(`${failed.length === 1 ? "This secret was" : "These secrets were"} stored on another machine or account and cannot be read here: ${failed.join(", ")}. Add ${failed.length === 1 ? "it" : "them"} again.`);
    }
  },
});

const remove = defineCommand({
  meta: { name: "remove", description: "Remove a secret (GH_TOKEN and GITHUB_TOKEN go together)" },
  args: { name: { type: "positional", required: true, description: "NAME" } },
  async run({ args }) {
    const removed = await store().remove(args.name);
    if (removed.length === 0) {
      ui.error(`No secret named "${args.name}". See yours with \`catty secrets list\`.`);
      process.exitCode = 1;
      return;
    }
    ui.success(`Removed ${removed.map((n) => `"${n}"`).join(" and ")}`);
  },
});

const test = defineCommand({
  meta: { name: "test", description: "Check a stored secret with its service (catty secrets test github)" },
  args: { service: { type: "positional", required: true, description: "github" } },
  async run({ args }) {
    if (args.service.toLowerCase() !== "github") throw new CattyError("bad_request", `Cannot test "${args.service}": only github is known.`);
    const { values, failed } = await store().open();
    const token = values.GH_TOKEN ?? values.GITHUB_TOKEN;
    if (!token) {
      const unreadable = GITHUB_NAMES.filter((n) => failed.includes(n));
      throw new CattyError(
        "not_found",
        unreadable.length > 0 ? `The GitHub token (${unreadable.join(", ")}) cannot be decrypted on this machine.` : "No GitHub token configured.",
        "Set one up with `catty secrets add github`.",
      );
    }
    ui.start("Checking the token with GitHub…");
    const account = await checkGitHubToken(token, readCliConfig({}).githubApi);
    const scopes = account.scopes === null ? "fine-grained token" : `scopes: ${account.scopes.join(", ") || "none"}`;
    ui.success(`GitHub token works: signed in as @${account.login} (${scopes})`);
    if (account.scopes && !account.scopes.includes("repo")) ui.warn(`It has no "repo" scope; private repositories will not work.`);
  },
});

export default defineCommand({
  meta: { name: "secrets", description: "Secrets for your sessions, encrypted on this machine" },
  subCommands: { add, set, list, remove, test },
});
