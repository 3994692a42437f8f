/**
 * The server's regions: where it can run sessions. Each has an id (what `catty new --region` and
 * the API take), a name for people, and where the provider puts it (`place`: a Fly region code, a
 * Kubernetes node label value; null for the local and Docker providers, which have one region).
 * The first region is the default. Configured with `CATTY_REGIONS` as `id[=place],…`.
 */
import { regionName, RegionId } from "../src/protocol/index.ts";
import { SettingsError } from "../src/protocol/settings.ts";

export interface Region {
  id: string;
  name: string;
  place: string | null;
}

/** Fly's regions for the ids the dashboard offers by default. */
export const FLY_REGIONS: Readonly<Record<string, string>> = {
  "us-east": "iad",
  "us-west": "sjc",
  london: "lhr",
  frankfurt: "fra",
  sydney: "syd",
  tokyo: "nrt",
};

/** Reads `CATTY_REGIONS` (`us-east=iad,frankfurt=fra`); throws a SettingsError naming the bad part. */
export function parseRegions(text: string): Region[] {
  const out: Region[] = [];
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [id = "", place, ...rest] = part.split("=").map((s) => s.trim());
    if (rest.length > 0 || !RegionId.safeParse(id).success || (place !== undefined && !/^[\w.\/-]{1,63}$/.test(place))) {
      throw new SettingsError(`CATTY_REGIONS: "${part}" is not a region (id[=place], the id lowercase letters, digits and dashes).`);
    }
    if (out.some((r) => r.id === id)) throw new SettingsError(`CATTY_REGIONS names the region "${id}" twice.`);
    out.push({ id, name: regionName(id), place: place ?? null });
  }
  if (out.length === 0) throw new SettingsError("CATTY_REGIONS names no region.");
  return out;
}

/** One region, for providers that have one (local, Docker). */
export const singleRegion = (id: string): Region[] => [{ id, name: regionName(id), place: null }];
