/**
 * Checks a command line against a citty command tree before it runs, so a typo is an error and
 * not a silently ignored flag (citty keeps unknown flags as extra arguments): an unknown
 * subcommand or flag gives a message with the nearest valid name ("did you mean --s3-bucket?").
 * Both binaries print it and exit 2.
 */
import type { ArgsDef, CommandDef } from "citty";
import { nearest } from "./nearest.ts";

type Resolvable<T> = T | Promise<T> | (() => T | Promise<T>);
const resolve = async <T>(v: Resolvable<T> | undefined): Promise<T | undefined> => (typeof v === "function" ? (v as () => T | Promise<T>)() : v);

/** Flags every command takes. */
const ALWAYS = ["help", "h", "version", "v"];

const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** The flag names a command takes (without dashes), and those of them that take a value. */
function flagsOf(args: ArgsDef): { names: Set<string>; valued: Set<string>; positional: boolean } {
  const names = new Set(ALWAYS);
  const valued = new Set<string>();
  let positional = false;
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") {
      positional = true;
      continue;
    }
    const aliases = "alias" in def && def.alias !== undefined ? (Array.isArray(def.alias) ? def.alias : [def.alias]) : [];
    for (const n of [name, kebab(name), ...aliases]) {
      names.add(n);
      if (def.type === "boolean" || def.type === undefined) names.add(`no-${n}`);
      else valued.add(n);
    }
  }
  return { names, valued, positional };
}

/**
 * Null when `rawArgs` (the words after the program's name) name known subcommands and flags only;
 * else one line saying which word is wrong and what was probably meant. Words after `--` are not
 * looked at.
 */
export async function checkCommandLine(root: CommandDef<any>, rawArgs: readonly string[], program: string): Promise<string | null> {
  let cmd = root;
  const path = [program];
  let i = 0;
  // One pass per command level: its flags, then its subcommand if it has some.
  for (;;) {
    const args = ((await resolve(cmd.args as Resolvable<ArgsDef>)) ?? {}) as ArgsDef;
    const subs = (await resolve(cmd.subCommands as Resolvable<Record<string, Resolvable<CommandDef<any>>>>)) ?? {};
    const { names, valued, positional } = flagsOf(args);
    const help = `Run \`${path.join(" ")} --help\` to see ${Object.keys(subs).length > 0 ? "its commands" : "its flags"}.`;
    let next: CommandDef<any> | null = null;
    for (; i < rawArgs.length; i++) {
      const word = rawArgs[i] as string;
      if (word === "--") return null;
      if (word.startsWith("-") && word !== "-") {
        const name = word.replace(/^--?/, "").split("=")[0] as string;
        if (!names.has(name)) {
          const guess = nearest(name, [...names].filter((n) => n.length > 1));
          return `unknown flag ${word.split("=")[0]} for \`${path.join(" ")}\`${guess ? `: did you mean --${guess}?` : "."} ${help}`;
        }
        if (valued.has(name) && !word.includes("=")) i++;
        continue;
      }
      if (Object.keys(subs).length === 0 || (positional && !(word in subs))) continue;
      const sub = subs[word];
      if (sub === undefined) {
        const guess = nearest(word, Object.keys(subs));
        return `unknown command "${word}" for \`${path.join(" ")}\`${guess ? `: did you mean \`${path.join(" ")} ${guess}\`?` : "."} ${help}`;
      }
      next = (await resolve(sub)) as CommandDef<any>;
      path.push(word);
      i++;
      break;
    }
    if (!next) return null;
    cmd = next;
  }
}
