import { defineCommand } from "citty";
import { VERSION } from "../lib/version.ts";

export default defineCommand({
  meta: { name: "version", description: "Print catty's version (dev for a development build)" },
  run() {
    console.log(VERSION);
  },
});
