/**
 * The account this process runs as, read from the system rather than from the environment:
 * Bun's `os.userInfo()` reports `$USER` and `$SHELL` (and "unknown" when they are unset, as under
 * `env -i`, cron or a service manager), so it cannot say which shell a user logs in with.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import { isAbsolute } from "node:path";

export interface PasswdEntry {
  name: string;
  uid: number;
  home: string;
  shell: string;
}

/** The entry for `uid` in a passwd file's text (`name:x:uid:gid:gecos:home:shell`), if any. */
export function passwdEntry(text: string, uid: number): PasswdEntry | null {
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 7 || Number(f[2]) !== uid || f[2] === "") continue;
    return { name: f[0] as string, uid, home: f[5] as string, shell: f[6] as string };
  }
  return null;
}

/** This process's passwd entry from /etc/passwd, when it has one there (macOS keeps users elsewhere). */
export function currentAccount(): PasswdEntry | null {
  if (typeof process.getuid !== "function") return null;
  try {
    return passwdEntry(readFileSync("/etc/passwd", "utf8"), process.getuid());
  } catch {
    return null;
  }
}

const executable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** Shells that refuse a login: a program started with one would end at once. */
const NO_LOGIN = /\/(nologin|false)$/;

/**
 * The shell to start for an interactive login: `$SHELL` when it names one, else the account's
 * shell, else bash or sh. Never a shell that refuses logins.
 */
export function loginShell(env: NodeJS.ProcessEnv, account: PasswdEntry | null = currentAccount(), isExecutable = executable): string {
  const candidates = [env.SHELL, account?.shell, "/bin/bash", "/bin/sh"];
  for (const shell of candidates) {
    if (shell && isAbsolute(shell) && !NO_LOGIN.test(shell) && isExecutable(shell)) return shell;
  }
  return "/bin/sh";
}
