/**
 * A smart-HTTP git server on loopback that requires a token, as GitHub does for a private
 * repository: `git http-backend` (git's own CGI) behind HTTP Basic auth whose password must be
 * `token`. Serves the bare repositories under `root`; records the user names it was given.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface GitServer {
  url: string;
  /** Basic-auth user names of the requests that carried the right token. */
  users: string[];
  /** Requests refused for want of the token. */
  refused: number;
  stop(): void;
}

export function startGitServer(root: string, token: string): GitServer {
  const state: GitServer = { url: "", users: [], refused: 0, stop: () => server.stop(true) };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const url = new URL(req.url);
      const auth = req.headers.get("authorization");
      const [user, password] = auth?.startsWith("Basic ") ? Buffer.from(auth.slice(6), "base64").toString().split(":") : [];
      if (password !== token) {
        state.refused++;
        return new Response("authentication required\n", { status: 401, headers: { "WWW-Authenticate": 'Basic realm="git"' } });
      }
      state.users.push(user ?? "");
      const proc = Bun.spawn(["git", "http-backend"], {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          GIT_PROJECT_ROOT: root,
          GIT_HTTP_EXPORT_ALL: "1",
          PATH_INFO: url.pathname,
          QUERY_STRING: url.search.slice(1),
          REQUEST_METHOD: req.method,
          CONTENT_TYPE: req.headers.get("content-type") ?? "",
          REMOTE_USER: user ?? "",
          REMOTE_ADDR: "127.0.0.1",
          GIT_CONFIG_COUNT: "1",
          GIT_CONFIG_KEY_0: "http.receivepack",
          GIT_CONFIG_VALUE_0: "true",
        },
        stdin: req.body ? new Uint8Array(await req.arrayBuffer()) : "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      const out = new Uint8Array(await new Response(proc.stdout).arrayBuffer());
      await proc.exited;
      // CGI: headers, a blank line, the body.
      const text = new TextDecoder("latin1").decode(out.subarray(0, Math.min(out.length, 4096)));
      const end = text.indexOf("\r\n\r\n");
      const headerText = end === -1 ? "" : text.slice(0, end);
      const headers = new Headers();
      let status = 200;
      for (const line of headerText.split("\r\n")) {
        const i = line.indexOf(":");
        if (i === -1) continue;
        const [k, v] = [line.slice(0, i).trim(), line.slice(i + 1).trim()];
        if (k.toLowerCase() === "status") status = Number.parseInt(v, 10);
        else headers.append(k, v);
      }
      return new Response(out.subarray(end === -1 ? 0 : end + 4), { status, headers });
    },
  });
  state.url = `http://127.0.0.1:${server.port}`;
  return state;
}

/** A bare repository `name.git` under `root` with one commit holding `files`. */
export function makeRepo(root: string, name: string, files: Record<string, string>): void {
  const work = join(root, `${name}-work`);
  const run = (args: string[], cwd: string): void => {
    const r = Bun.spawnSync(["git", ...args], { cwd, env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" } });
    if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr.toString()}`);
  };
  mkdirSync(work, { recursive: true });
  run(["init", "-q", "-b", "main"], work);
  for (const [path, text] of Object.entries(files)) writeFileSync(join(work, path), text);
  run(["add", "-A"], work);
  run(["commit", "-qm", "initial"], work);
  run(["clone", "-q", "--bare", work, join(root, `${name}.git`)], root);
}
