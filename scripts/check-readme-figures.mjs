#!/usr/bin/env node
// Checks that every figure the README quotes comes from a committed results file.
//
// Figures live in blocks:
//   <!-- figures: bench/results/A.json bench/results/B.txt -->
//   ... prose quoting numbers ...
//   <!-- /figures -->
// Every number in a block's prose (code spans and comments left out) must be,
// to the precision the README prints it, a number in one of the named files:
// any number in a JSON results file (medians, min, max, runs, notes, settings),
// the ratio of any two systems' medians in one workload, or any number in a
// text file. Each named file must be tracked by git, and the block must name
// the commit the figures are of (its short hash): the commit the JSON recorded,
// or for older files without one, the commit that added the file; a JSON
// recorded from a dirty tree must be called "uncommitted" in the block.
// Outside the blocks, a rate (MiB/s, ops/s, files/s) or a ratio (2.5x) in prose
// is an unsourced figure and fails the check.
//
//   node scripts/check-readme-figures.mjs [--readme README.md] [--root DIR]
// Exit 0 when every figure is found; 1 with one line per problem otherwise.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : dflt;
};
const root = path.resolve(opt('--root', path.join(path.dirname(fileURLToPath(import.meta.url)), '..')));
const readmePath = path.resolve(root, opt('--readme', 'README.md'));

const git = (...a) => execFileSync('git', a, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

/** A number as prose writes it: not part of a word, a hash, a version or a name like x4; "2.5x" counts. */
const NUMBER = /(?<![\w.\-/:])(\d+(?:\.\d+)?)(?=x\b|(?![\w]))/g;

/** Prose only: code spans, fenced code and HTML comments blanked out (positions kept). */
function prose(text) {
  const blank = (m) => m.replace(/[^\n]/g, ' ');
  return text.replace(/```[\s\S]*?```/g, blank).replace(/<!--[\s\S]*?-->/g, blank).replace(/`[^`\n]*`/g, blank);
}

function numbersIn(text) {
  return [...text.matchAll(NUMBER)].map((m) => m[1]);
}

/** Every number a results file holds, as numbers. */
function factsOf(file) {
  const text = readFileSync(file, 'utf8');
  const facts = new Set(numbersIn(text).map(Number));
  if (!file.endsWith('.json')) return { facts, doc: undefined };
  const doc = JSON.parse(text);
  const walk = (v) => {
    if (typeof v === 'number') facts.add(v);
    else if (typeof v === 'string') for (const n of numbersIn(v)) facts.add(Number(n));
    else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  walk(doc);
  // The ratio columns a rendered table would show: any two systems of one workload.
  for (const r of Array.isArray(doc.results) ? doc.results : []) {
    for (const w of r.workloads ?? []) {
      const meds = Object.values(w.systems ?? {}).map((s) => s?.median).filter((m) => typeof m === 'number' && m > 0);
      for (const a of meds) for (const b of meds) if (a !== b) facts.add(a / b);
    }
  }
  return { facts, doc };
}

/** Whether a figure printed with its decimals can be a rounding of one of the facts. */
function found(figure, facts) {
  const decimals = figure.includes('.') ? figure.split('.')[1].length : 0;
  const v = Number(figure);
  const half = 0.5 * 10 ** -decimals + 1e-9;
  for (const f of facts) if (Math.abs(f - v) <= half) return true;
  return false;
}

const shallow = git('rev-parse', '--is-shallow-repository') === 'true';
const problems = [];
const readme = readFileSync(readmePath, 'utf8');
const lineOf = (i) => readme.slice(0, i).split('\n').length;
const BLOCK = /<!-- figures:([^>]*?)-->([\s\S]*?)<!-- \/figures -->/g;
let blocks = 0;
let figures = 0;
let outside = readme;
for (const m of readme.matchAll(BLOCK)) {
  blocks++;
  outside = outside.slice(0, m.index) + m[0].replace(/[^\n]/g, ' ') + outside.slice(m.index + m[0].length);
  const at = `README line ${lineOf(m.index)}`;
  const files = m[1].trim().split(/\s+/).filter(Boolean);
  if (!files.length) problems.push(`${at}: a figures block names no results file`);
  const facts = new Set();
  for (const f of files) {
    const abs = path.resolve(root, f);
    if (!existsSync(abs)) {
      problems.push(`${at}: ${f} does not exist`);
      continue;
    }
    try {
      git('ls-files', '--error-unmatch', '--', f);
    } catch {
      problems.push(`${at}: ${f} is not committed (git ls-files does not know it)`);
      continue;
    }
    const { facts: fs, doc } = factsOf(abs);
    for (const x of fs) facts.add(x);
    // The commit the figures are of, which the block must name.
    let commit = doc?.git?.commit;
    if (!commit && shallow) {
      // A shallow clone lacks the history that says which commit added an older file: warn, do not guess.
      console.error(`check-readme-figures: warning: shallow clone, the commit of ${f} (which recorded none) is not checked`);
      commit = 'unchecked';
    } else if (!commit) commit = git('log', '--diff-filter=A', '--format=%H', '--', f).split('\n').pop();
    if (commit === 'unchecked') {
      // nothing to compare
    } else if (!commit) problems.push(`${at}: no commit known for ${f}`);
    else if (!m[2].includes(commit.slice(0, 7))) problems.push(`${at}: the block does not name commit ${commit.slice(0, 7)}, which ${f} is of`);
    if (doc?.git?.dirty && !/uncommitted/i.test(m[2])) problems.push(`${at}: ${f} was measured on a tree with uncommitted changes; the block must say "uncommitted"`);
  }
  const text = prose(m[2]);
  for (const n of text.matchAll(NUMBER)) {
    figures++;
    if (!found(n[1], facts)) problems.push(`README line ${lineOf(m.index + m[0].indexOf(m[2]) + n.index)}: figure ${n[1]} is in none of ${files.join(', ')}`);
  }
}
// Outside the blocks: rates and ratios are figures that need a source.
const UNSOURCED = /(?<![\w.\-/:])\d+(?:\.\d+)?\s*(?:MiB\/s|GiB\/s|ops\/s|files\/s|x\b)/g;
for (const n of prose(outside).matchAll(UNSOURCED)) problems.push(`README line ${lineOf(n.index)}: "${n[0]}" is a figure outside a figures block (no results file named)`);

if (problems.length) {
  for (const p of problems) console.error(`check-readme-figures: ${p}`);
  process.exit(1);
}
console.log(`check-readme-figures: ${figures} figures in ${blocks} blocks, each found in its committed results file`);
