/**
 * Checking a GitHub token the way `gh auth status` does: `GET /user` on the GitHub API (base URL
 * from `CATTY_GITHUB_API`), which names the account and, for classic tokens, lists the scopes in
 * `X-OAuth-Scopes`.
 */
import { CattyError } from "../protocol/errors.ts";

export const NEW_TOKEN_URL = "https://github.com/settings/tokens/new?scopes=repo&description=Catty";

export interface GitHubAccount {
  login: string;
  /** Scopes of a classic token; null for fine-grained tokens (GitHub does not list them). */
  scopes: string[] | null;
}

export async function checkGitHubToken(token: string, api: string): Promise<GitHubAccount> {
  let res: Response;
  try {
    res = await fetch(`${api}/user`, {
      headers: {
        Authorization: `Bearer ${token}`,
        Accept: "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "catty",
      },
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    throw new CattyError("unavailable", `Could not reach the GitHub API at ${api}: ${(err as Error).message}.`, "Check your network connection and try again.");
  }
  if (res.status === 401) {
    await res.arrayBuffer();
    throw new CattyError("unauthorized", "GitHub says this token is not valid (401): it may be mistyped, expired or revoked.", `Create a new one at ${NEW_TOKEN_URL}`);
  }
  if (!res.ok) {
    const body = await res.text().catch(() => "");
    let message = body.slice(0, 200);
    try {
      message = (JSON.parse(body) as { message?: string }).message ?? message;
    } catch {
      // not JSON
    }
    throw new CattyError("unavailable", `The GitHub API answered ${res.status}${message ? `: ${message}` : ""}.`, "Try again later.");
  }
  const user = (await res.json().catch(() => null)) as { login?: unknown } | null;
  if (!user || typeof user.login !== "string") throw new CattyError("unavailable", "The GitHub API answered without an account name.");
  const header = res.headers.get("x-oauth-scopes");
  return { login: user.login, scopes: header === null ? null : header.split(",").map((s) => s.trim()).filter(Boolean) };
}
