/** Flags shared by several commands. */
export const apiArg = {
  api: { type: "string", description: "Catty server URL (overrides CATTY_API_ADDR and the stored login)" },
} as const;

export const labelArg = {
  label: { type: "positional", required: true, description: "Session label, e.g. brave-tiger-1234" },
} as const;

/** The words after `--` on the command line (`catty new -- vim notes.md`). */
export function commandAfterDashes(rawArgs: string[]): string[] {
  const i = rawArgs.indexOf("--");
  return i === -1 ? [] : rawArgs.slice(i + 1);
}
