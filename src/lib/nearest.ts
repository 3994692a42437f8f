/**
 * The nearest of some names to a mistyped one, for "did you mean --s3-bucket?": by edit distance
 * (a swap of two neighbours counts as one edit), and only when close enough to be a typo.
 */

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidate nearest to `word` (case-insensitive), or null when none is within a third of its
 * length (at least 2 edits), or one starts with the other (`--json` for `--js`).
 */
export function nearest(word: string, candidates: Iterable<string>): string | null {
  const w = word.toLowerCase();
  let best: string | null = null;
  let bestScore = Infinity;
  for (const c of candidates) {
    const lc = c.toLowerCase();
    const distance = editDistance(w, lc);
    const score = lc.startsWith(w) || w.startsWith(lc) ? Math.min(distance, 1) : distance;
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best !== null && bestScore <= Math.max(2, Math.floor(w.length / 3)) ? best : null;
}
