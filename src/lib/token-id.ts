/**
 * How an API token is named where the token itself must not be shown (`catty-server token list`,
 * `catty logout`): the first 12 hex digits of its SHA-256, the hash the server stores.
 */
import { createHash } from "node:crypto";

export const tokenIdOfHash = (hash: string): string => hash.slice(0, 12);

export const tokenId = (token: string): string => tokenIdOfHash(createHash("sha256").update(token).digest("hex"));
