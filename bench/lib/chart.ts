import fs from 'node:fs/promises';
import path from 'node:path';
import type { SuiteResult } from './report.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * One SVG per workload: a bar per system at its median, a whisker from min to
 * max, the value printed; the title says whether higher or lower is better
 * (rates: higher; times: lower).
 */
export function workloadSvg(suite: string, w: SuiteResult['workloads'][number]): string {
  const systems = Object.entries(w.systems).filter(([, s]) => Number.isFinite(s.median));
  const max = Math.max(...systems.map(([, s]) => s.max), 1e-9);
  const rowH = 34;
  const left = 110;
  const width = 640;
  const plotW = width - left - 90;
  const height = 50 + systems.length * rowH;
  const x = (v: number) => left + (v / max) * plotW;
  const bars = systems
    .map(([name, s], i) => {
      const y = 40 + i * rowH;
      return [
        `<text x="${left - 8}" y="${y + 16}" text-anchor="end">${esc(name)}</text>`,
        `<rect x="${left}" y="${y + 4}" width="${(x(s.median) - left).toFixed(1)}" height="18" fill="${name.startsWith('gvfs') ? '#2b6cb0' : '#a0aec0'}"/>`,
        `<line x1="${x(s.min).toFixed(1)}" x2="${x(s.max).toFixed(1)}" y1="${y + 13}" y2="${y + 13}" stroke="#1a202c"/>`,
        `<text x="${(x(s.max) + 6).toFixed(1)}" y="${y + 17}">${s.median.toPrecision(3)}</text>`,
      ].join('');
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-weight="bold">${esc(suite)}: ${esc(w.name)} (${esc(w.unit)}, median; whisker min–max; ${w.better === 'lower' ? 'lower' : 'higher'} is better)</text>
${bars}
</svg>
`;
}

export async function writeCharts(dir: string, stamp: string, results: SuiteResult[]): Promise<string[]> {
  const out: string[] = [];
  for (const r of results) {
    for (const [i, w] of r.workloads.entries()) {
      const f = path.join(dir, `${stamp}-${r.suite}-${i + 1}.svg`);
      await fs.writeFile(f, workloadSvg(r.suite, w));
      out.push(f);
    }
  }
  return out;
}
