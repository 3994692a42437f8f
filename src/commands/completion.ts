/**
 * `catty completion bash|zsh|fish`: a completion script generated from the command tree (the
 * commands, their subcommands and flags, booleans with their `--no-` form); session labels are
 * completed from `catty list --plain`.
 */
import { defineCommand, type ArgsDef, type CommandDef } from "citty";
import { CattyError } from "../protocol/index.ts";
import { shellQuote } from "../lib/format.ts";
import { COMMANDS } from "./index.ts";

interface Flag {
  name: string;
  description: string;
}

interface Cmd {
  name: string;
  description: string;
  flags: Flag[];
  /** Completes a session label at its first positional argument. */
  label: boolean;
  subs: Cmd[];
}

// The tree holds commands of every argument shape.
type AnyCommand = CommandDef<any>;

async function resolve<T>(v: T | (() => T | Promise<T>) | Promise<T>): Promise<T> {
  return typeof v === "function" ? await (v as () => T | Promise<T>)() : await v;
}

async function describe(name: string, def: AnyCommand): Promise<Cmd> {
  const meta = (await resolve(def.meta)) ?? {};
  const args = ((await resolve(def.args)) ?? {}) as ArgsDef;
  const flags: Flag[] = [];
  let label = false;
  for (const [key, a] of Object.entries(args)) {
    if (a.type === "positional") {
      label ||= key === "label";
      continue;
    }
    const description = (a.description ?? "").replace(/\s+/g, " ");
    flags.push({ name: key, description });
    if (a.type === "boolean" && a.default === true) flags.push({ name: `no-${key}`, description });
  }
  flags.push({ name: "help", description: "Show help" });
  const subs: Cmd[] = [];
  for (const [sub, d] of Object.entries((await resolve(def.subCommands)) ?? {})) subs.push(await describe(sub, (await resolve(d)) as AnyCommand));
  return { name, description: meta.description ?? "", flags, label, subs };
}

const LABELS = "catty list --plain 2>/dev/null | awk 'NR>1 {print $1}'";

export function bashScript(cmds: Cmd[]): string {
  const cases = cmds
    .map((c) => {
      const words = [...c.subs.map((s) => s.name), ...c.flags.map((f) => `--${f.name}`)].join(" ");
      const labels = c.label ? ` $(${LABELS})` : "";
      return `    ${c.name}) COMPREPLY=($(compgen -W "${words}${labels}" -- "$cur")) ;;`;
    })
    .join("\n");
  return `# catty completion for bash: eval "$(catty completion bash)" (e.g. in ~/.bashrc)
_catty() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${cmds.map((c) => c.name).join(" ")} --help --version" -- "$cur"))
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
  esac
}
complete -F _catty catty
`;
}

export function zshScript(cmds: Cmd[]): string {
  const cases = cmds
    .map((c) => {
      const words = [...c.subs.map((s) => s.name), ...c.flags.map((f) => `--${f.name}`)].map(shellQuote).join(" ");
      const labels = c.label ? `; compadd -- \${(f)"$(${LABELS})"}` : "";
      return `    ${c.name}) compadd -- ${words}${labels} ;;`;
    })
    .join("\n");
  return `#compdef catty
# catty completion for zsh: eval "$(catty completion zsh)" (e.g. in ~/.zshrc, after compinit)
_catty() {
  if (( CURRENT == 2 )); then
    local -a cmds=(${cmds.map((c) => shellQuote(`${c.name}:${c.description.replaceAll(":", "\\:")}`)).join(" ")})
    _describe 'command' cmds
    return
  fi
  case "$words[2]" in
${cases}
  esac
}
compdef _catty catty
`;
}

export function fishScript(cmds: Cmd[]): string {
  const lines = [
    "# catty completion for fish: catty completion fish | source (e.g. in ~/.config/fish/config.fish)",
    "complete -c catty -f",
  ];
  for (const c of cmds) {
    lines.push(`complete -c catty -n __fish_use_subcommand -a ${c.name} -d ${shellQuote(c.description)}`);
    const when = `'__fish_seen_subcommand_from ${c.name}'`;
    for (const s of c.subs) lines.push(`complete -c catty -n ${when} -a ${s.name} -d ${shellQuote(s.description)}`);
    for (const f of c.flags) lines.push(`complete -c catty -n ${when} -l ${f.name} -d ${shellQuote(f.description)}`);
    if (c.label) lines.push(`complete -c catty -n ${when} -a '(${LABELS})'`);
  }
  return `${lines.join("\n")}\n`;
}

export default defineCommand({
  meta: { name: "completion", description: "Print a shell completion script: bash, zsh or fish" },
  args: { shell: { type: "positional", required: true, description: "bash, zsh or fish" } },
  async run({ args }) {
    const make = { bash: bashScript, zsh: zshScript, fish: fishScript }[args.shell as string];
    if (!make) throw new CattyError("bad_request", `No completion for ${JSON.stringify(args.shell)}.`, "Use bash, zsh or fish.");
    const cmds: Cmd[] = [];
    for (const [name, load] of Object.entries(COMMANDS)) cmds.push(await describe(name, await load()));
    process.stdout.write(make(cmds));
  },
});
