// Top self-time entries of a .cpuprofile: node top.mjs FILE [N]
import fs from 'node:fs';
const p = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const n = Number(process.argv[3] ?? 12);
const byId = new Map(p.nodes.map((x) => [x.id, x]));
const self = new Map();
const dt = p.timeDeltas;
let total = 0;
for (let i = 0; i < p.samples.length; i++) {
  const node = byId.get(p.samples[i]);
  const d = (dt[i + 1] ?? 0) / 1000;
  total += d;
  const cf = node.callFrame;
  const url = cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:');
  const k = `${cf.functionName || '(anonymous)'} ${url ? url + ':' + (cf.lineNumber + 1) : ''}`.trim();
  self.set(k, (self.get(k) ?? 0) + d);
}
const idle = self.get('(idle)') ?? 0;
console.log(`sampled ${total.toFixed(0)} ms, of which (idle) ${idle.toFixed(0)} ms, busy ${(total - idle).toFixed(0)} ms`);
for (const [k, v] of [...self].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${v.toFixed(0).padStart(7)} ms ${((100 * v) / (total - idle)).toFixed(1).padStart(5)} %  ${k}`);
