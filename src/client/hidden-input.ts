/**
 * Reading a secret at a prompt: on a terminal, each character is echoed as `•`, Backspace takes
 * the last one back, Enter ends, Ctrl+C gives up (null: the command exits 130); a paste works,
 * and escape sequences (arrow keys) are ignored. Not a terminal (a pipe): the first line of stdin.
 */
import { enterRawMode } from "./raw-mode.ts";
import type { Log } from "../lib/log.ts";

export async function readHidden(prompt: string, log: Log, stdin: NodeJS.ReadStream = process.stdin, out: NodeJS.WriteStream = process.stderr): Promise<string | null> {
  if (!stdin.isTTY) return readLine(stdin);
  out.write(prompt);
  const raw = enterRawMode(stdin, log);
  const chars: string[] = [];
  try {
    return await new Promise<string | null>((resolve) => {
      let escape = false;
      const onData = (chunk: Buffer): void => {
        for (const ch of chunk.toString("utf8")) {
          if (escape) {
            // CSI sequences end with a letter or ~; a lone ESC ends with the next character.
            if (/[A-Za-z~]/.test(ch)) escape = false;
            continue;
          }
          if (ch === "\x03") return finish(null);
          if (ch === "\r" || ch === "\n") return finish(chars.join(""));
          if (ch === "\x04" && chars.length === 0) return finish("");
          if (ch === "\x7f" || ch === "\b") {
            if (chars.pop() !== undefined) out.write("\b \b");
            continue;
          }
          if (ch === "\x1b") {
            escape = true;
            continue;
          }
          if (ch < " ") continue;
          chars.push(ch);
          out.write("•");
        }
      };
      const finish = (value: string | null): void => {
        stdin.off("data", onData);
        stdin.pause();
        resolve(value);
      };
      stdin.on("data", onData);
      stdin.resume();
    });
  } finally {
    raw.restore();
    out.write("\r\n");
  }
}

/** The first line of a non-terminal stdin, without its line ending. */
async function readLine(stdin: NodeJS.ReadStream): Promise<string> {
  let text = "";
  for await (const chunk of stdin) {
    text += chunk.toString();
    const nl = text.indexOf("\n");
    if (nl !== -1) return text.slice(0, nl).replace(/\r$/, "");
  }
  return text.replace(/\r?\n?$/, "");
}

/** A yes/no question on a terminal (Enter: the default); not a terminal: the default. */
export async function confirm(question: string, fallback: boolean, stdin: NodeJS.ReadStream = process.stdin, out: NodeJS.WriteStream = process.stderr): Promise<boolean> {
  if (!stdin.isTTY) return fallback;
  out.write(`${question} ${fallback ? "[Y/n]" : "[y/N]"} `);
  const answer = await new Promise<string>((resolve) => {
    const onData = (chunk: Buffer): void => {
      stdin.off("data", onData);
      stdin.pause();
      resolve(chunk.toString("utf8").trim().toLowerCase());
    };
    stdin.on("data", onData);
    stdin.resume();
  });
  if (answer === "") return fallback;
  return answer.startsWith("y");
}
