/** How saves and uploads are named in the database, and how a save row is shown. */
import type { SaveInfo } from "../../src/protocol/index.ts";
import type { SaveRow } from "../store/types.ts";

export const VAULT_KEY = "vault:";
/** A save's or upload's key in the database: `vault:<root>` for content-addressed ones, else the archive's blob key. */
export const vaultRoot = (key: string | null): string | null => (key?.startsWith(VAULT_KEY) ? key.slice(VAULT_KEY.length) : null);

export const toSaveInfo = (r: SaveRow): SaveInfo => ({
  id: r.id,
  createdAt: r.createdAt,
  size: r.size,
  files: r.files,
  reason: r.reason,
  added: r.added,
});
