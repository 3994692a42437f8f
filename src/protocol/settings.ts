/**
 * How every binary declares its settings: one zod schema per setting, tagged with the flag and
 * environment variables it is read from and a line of documentation. `readSettings` parses them
 * once (flags > environment > default) into a frozen object; `settingsTable` writes them as the
 * README's tables, which are generated from these declarations
 * (`bun test/setup/readme-settings.ts --write`; test/readme.test.ts checks they are current).
 *
 * Values arrive as strings (flags, environment). A setting's schema takes the string and turns it
 * into the typed value; an empty string counts as not set.
 */
import { z } from "zod";

export interface SettingInfo {
  /** Environment variables read, first set wins. */
  env?: readonly string[];
  /** Command-line flag (without `--`), which beats the environment. */
  flag?: string;
  /** One line for the README. */
  doc: string;
  /** The default as the README shows it, when the schema's default is not self-explanatory. */
  shown?: string;
  /** How the README shows a numeric default: a duration in milliseconds, or a size in bytes. */
  unit?: "ms" | "bytes";
}

/** A setting: a schema from an optional string to the value, with where it is read from. */
export interface Setting<T> {
  readonly schema: z.ZodType<T, string | undefined>;
  readonly info: SettingInfo;
}

export type SettingsSpec = Record<string, Setting<unknown>>;
export type SettingsOf<S extends SettingsSpec> = { readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

export function setting<T>(schema: z.ZodType<T, string | undefined>, info: SettingInfo): Setting<T> {
  return { schema, info };
}

// ── value schemas (string in, typed value out) ─────────────────────────────────────────────────

/** A whole number ≥ `min`, with a default when unset. */
export const intSetting = (fallback: number, min = 0): z.ZodType<number, string | undefined> =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return fallback;
      const n = Number(v);
      if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) {
        ctx.addIssue({ code: "custom", message: `must be a whole number${min > 0 ? ` of at least ${min}` : ""}` });
        return z.NEVER;
      }
      return n;
    });

/** A string with a default when unset. */
export const stringSetting = (fallback: string): z.ZodType<string, string | undefined> =>
  z
    .string()
    .optional()
    .transform((v) => (v === undefined || v === "" ? fallback : v));

/** A string, or undefined when unset. */
export const optionalString = (): z.ZodType<string | undefined, string | undefined> =>
  z
    .string()
    .optional()
    .transform((v) => (v === undefined || v === "" ? undefined : v));

/** One of `values`, with a default when unset. */
export const enumSetting = <const V extends string>(values: readonly V[], fallback: V): z.ZodType<V, string | undefined> =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return fallback;
      if ((values as readonly string[]).includes(v)) return v as V;
      ctx.addIssue({ code: "custom", message: `must be one of ${values.join(", ")}` });
      return z.NEVER;
    });

/** `1`/`true`/`yes` or `0`/`false`/`no`, with a default when unset. */
export const boolSetting = (fallback: boolean): z.ZodType<boolean, string | undefined> =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return fallback;
      if (/^(1|true|yes|on)$/i.test(v)) return true;
      if (/^(0|false|no|off)$/i.test(v)) return false;
      ctx.addIssue({ code: "custom", message: "must be true or false" });
      return z.NEVER;
    });

// ── reading ────────────────────────────────────────────────────────────────────────────────────

/** Log levels, quietest last; every binary's `CATTY_LOG_LEVEL`. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SettingsError";
  }
}

/** Where a setting's raw value came from, for the error message. */
function rawValue(info: SettingInfo, flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): [string | undefined, string] {
  if (info.flag !== undefined) {
    const v = flags[info.flag];
    if (v !== undefined && v !== "") return [v, `--${info.flag}`];
  }
  for (const name of info.env ?? []) {
    const v = env[name];
    if (v !== undefined && v !== "") return [v, name];
  }
  return [undefined, info.flag ? `--${info.flag}` : (info.env?.[0] ?? "setting")];
}

/** Parses every setting of `spec` once: flags > environment > default. Throws `SettingsError`. */
export function readSettings<S extends SettingsSpec>(
  spec: S,
  sources: { flags?: Record<string, string | undefined>; env?: NodeJS.ProcessEnv } = {},
): SettingsOf<S> {
  const flags = sources.flags ?? {};
  const env = sources.env ?? {};
  const out: Record<string, unknown> = {};
  for (const [key, { schema, info }] of Object.entries(spec)) {
    const [raw, from] = rawValue(info, flags, env);
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      const why = parsed.error.issues[0]?.message ?? "is not valid";
      throw new SettingsError(`${from} ${why}${raw === undefined ? "" : `, got ${JSON.stringify(raw)}`}.`);
    }
    out[key] = parsed.data;
  }
  return Object.freeze(out) as SettingsOf<S>;
}

/** The settings as README table rows: `| doc | flag | environment | default |`. */
export function settingsTable(spec: SettingsSpec): string {
  const rows = ["| setting | flag | environment | default |", "|---|---|---|---|"];
  for (const { schema, info } of Object.values(spec)) {
    const parsed = schema.safeParse(undefined);
    const value = parsed.success ? parsed.data : undefined;
    const shown = info.shown ?? (value === undefined || value === "" ? "" : showDefault(value, info.unit));
    const flag = info.flag ? `\`--${info.flag}\`` : "";
    const env = (info.env ?? []).map((e) => `\`${e}\``).join(", ");
    rows.push(`| ${info.doc} | ${flag} | ${env} | ${shown} |`);
  }
  return rows.join("\n");
}

function showDefault(value: unknown, unit: SettingInfo["unit"]): string {
  if (typeof value !== "number" || !unit) return `\`${String(value)}\``;
  const steps: Array<[number, string]> =
    unit === "ms"
      ? [[3_600_000, "h"], [60_000, "min"], [1000, "s"], [1, "ms"]]
      : [[1024 ** 3, "GiB"], [1e9, "GB"], [1024 ** 2, "MiB"], [1e6, "MB"], [1024, "KiB"], [1, "bytes"]];
  const [size, name] = steps.find(([n]) => value % n === 0 && value >= n) ?? [1, unit === "ms" ? "ms" : "bytes"];
  return `${value / size} ${name}`;
}
