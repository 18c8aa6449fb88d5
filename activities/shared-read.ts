// One read shared by every caller within a short period: in a wave hundreds of activities ask the same question of
// AWS or Kubernetes at once, and one answer a second old serves them all. A failed read is not kept.
export function sharedRead<V>(periodMs: number, load: (key: string) => Promise<V>): (key: string) => Promise<V> {
  const reads = new Map<string, { at: number; value: Promise<V> }>();
  return (key) => {
    const cached = reads.get(key);
    if (cached && Date.now() - cached.at < periodMs) return cached.value;
    const entry = { at: Date.now(), value: load(key) };
    reads.set(key, entry);
    entry.value.catch(() => {
      if (reads.get(key) === entry) reads.delete(key);
    });
    return entry.value;
  };
}
