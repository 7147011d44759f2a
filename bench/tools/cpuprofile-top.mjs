// Top entries of a .cpuprofile: node top.mjs FILE [N] [--files]
// Self time per function; with --files, inclusive time per source file (a sample counts once for every
// file on its stack: which module's calls, with all they call, take the time).
import fs from 'node:fs';
const args = process.argv.slice(2);
const byFiles = args.includes('--files');
const [file, nArg] = args.filter((a) => a !== '--files');
const p = JSON.parse(fs.readFileSync(file, 'utf8'));
const n = Number(nArg ?? 12);
const byId = new Map(p.nodes.map((x) => [x.id, x]));
const parent = new Map();
for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x);
const self = new Map();
const dt = p.timeDeltas;
let total = 0;
let idle = 0;
const short = (url) => url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:');
for (let i = 0; i < p.samples.length; i++) {
  const node = byId.get(p.samples[i]);
  const d = (dt[i + 1] ?? 0) / 1000;
  total += d;
  if (node.callFrame.functionName === '(idle)') {
    idle += d;
    continue;
  }
  if (byFiles) {
    const seen = new Set();
    for (let x = node; x; x = parent.get(x.id)) {
      const url = short(x.callFrame.url);
      if (url && !seen.has(url)) seen.add(url);
    }
    if (!seen.size) seen.add(node.callFrame.functionName);
    for (const k of seen) self.set(k, (self.get(k) ?? 0) + d);
    continue;
  }
  const cf = node.callFrame;
  const url = short(cf.url);
  const k = `${cf.functionName || '(anonymous)'} ${url ? url + ':' + (cf.lineNumber + 1) : ''}`.trim();
  self.set(k, (self.get(k) ?? 0) + d);
}
console.log(`sampled ${total.toFixed(0)} ms, of which (idle) ${idle.toFixed(0)} ms, busy ${(total - idle).toFixed(0)} ms${byFiles ? ' (inclusive per file)' : ''}`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${v.toFixed(0).padStart(7)} ms ${((100 * v) / (total - idle)).toFixed(1).padStart(5)} %  ${k}`);
