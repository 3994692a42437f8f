/**
 * A stand-in for the GitHub REST API on loopback: `GET /user` answers for the tokens it knows
 * (with `X-OAuth-Scopes`, as GitHub does for classic tokens) and 401 `Bad credentials` for any
 * other; it records each request's path and Authorization header.
 */
export interface GitHubStandIn {
  url: string;
  requests: Array<{ path: string; authorization: string | null }>;
  /** Makes every answer this status (e.g. 503), or null for the normal answers. */
  failWith: number | null;
  stop(): void;
}

export function startGitHubStandIn(tokens: Record<string, { login: string; scopes: string }>): GitHubStandIn {
  const state: GitHubStandIn = {
    url: "",
    requests: [],
    failWith: null,
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req) {
      const url = new URL(req.url);
      const authorization = req.headers.get("authorization");
      state.requests.push({ path: url.pathname, authorization });
      if (state.failWith !== null) return Response.json({ message: "Service Unavailable" }, { status: state.failWith });
      if (url.pathname !== "/user") return Response.json({ message: "Not Found" }, { status: 404 });
      const token = authorization?.replace(/^(Bearer|token) /, "") ?? "";
      const known = tokens[token];
      if (!known) return Response.json({ message: "Bad credentials" }, { status: 401 });
      return Response.json({ login: known.login, id: 1 }, { headers: { "X-OAuth-Scopes": known.scopes } });
    },
  });
  state.url = `http://127.0.0.1:${server.port}`;
  return state;
}
