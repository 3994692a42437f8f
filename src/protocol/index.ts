export * from "./close.ts";
export * from "./errors.ts";
export * from "./files.ts";
export * from "./frames.ts";
export * from "./machine.ts";
export * from "./messages.ts";
export * from "./secrets.ts";
export * from "./session.ts";
