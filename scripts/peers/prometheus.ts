// Samples of one metric in a Prometheus text exposition (what /metrics serves), with their labels.

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export function samplesOf(text: string, metric: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    // With labels (`metric{a="b"} 1`) or without (`metric 1`).
    if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
    const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1] ?? '', m[2] ?? '']));
    samples.push({ labels, value: Number(line.slice(line.lastIndexOf(' ') + 1)) });
  }
  return samples;
}
