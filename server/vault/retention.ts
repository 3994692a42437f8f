/**
 * Which saves a session keeps: every save of the last hour, then the newest of each hour for a
 * day, then the newest of each day for the retention period. The latest save is always kept.
 */
const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;

export interface Dated {
  id: string;
  createdAt: string;
}

/** The ids of `saves` to keep at `now`. */
export function savesToKeep(saves: readonly Dated[], now: number, retentionDays: number): Set<string> {
  const newestFirst = [...saves].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
  const keep = new Set<string>();
  if (newestFirst[0]) keep.add(newestFirst[0].id);
  const buckets = new Set<string>();
  for (const s of newestFirst) {
    const t = Date.parse(s.createdAt);
    const age = now - t;
    if (age < HOUR) keep.add(s.id);
    else if (age < DAY) {
      const bucket = `h${Math.floor(t / HOUR)}`;
      if (!buckets.has(bucket)) keep.add(s.id);
      buckets.add(bucket);
    } else if (age < retentionDays * DAY) {
      const bucket = `d${Math.floor(t / DAY)}`;
      if (!buckets.has(bucket)) keep.add(s.id);
      buckets.add(bucket);
    }
  }
  return keep;
}
