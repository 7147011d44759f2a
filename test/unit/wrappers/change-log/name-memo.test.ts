import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Fattr3, WccAttr } from '../../../../src/nfs3/types.js';
import { NameMemo } from '../../../../src/wrappers/change-log/name-memo.js';

const t = (n: number) => ({ sec: n, nsec: 0 });
const wccAttr = (n: number): WccAttr => ({ size: 0, mtime: t(n), ctime: t(n) });
const attr = (n: number) => ({ ...wccAttr(n), type: 2 }) as unknown as Fattr3;
const wcc = (from: number, to: number) => ({ before: wccAttr(from), after: attr(to) });
const D = Buffer.from('dir');
const fh = (n: number) => Buffer.from([n]);

describe('NameMemo: names kept while every change of the directory is ours', () => {
  it('a chain of our changes keeps the names; a change by someone else in between drops them', () => {
    const m = new NameMemo();
    assert.equal(m.changed(D, wcc(1, 2), [['a', fh(1)]]), false, 'not known before: nothing to confirm');
    assert.equal(m.changed(D, wcc(2, 3), [['b', fh(2)]]), true);
    assert.deepEqual([m.get(D, 'a'), m.get(D, 'b')], [fh(1), fh(2)]);
    assert.equal(m.changed(D, wcc(3, 4), [['a', undefined]]), true);
    assert.equal(m.get(D, 'a'), undefined);
    // Someone else changed it (times 4 -> 5) before our next change.
    assert.equal(m.changed(D, wcc(5, 6), [['c', fh(3)]]), false);
    assert.equal(m.get(D, 'b'), undefined, 'what was held before the unseen change is gone');
    assert.deepEqual(m.get(D, 'c'), fh(3), 'what the change itself made stands');
    assert.equal(m.size, 1);
  });

  it('a LOOKUP with the directory as known adds to it; with other times it starts afresh; none: nothing learnt', () => {
    const m = new NameMemo();
    m.changed(D, wcc(1, 2), [['a', fh(1)]]);
    m.found(D, attr(2), [['b', fh(2)]]);
    assert.deepEqual([m.get(D, 'a'), m.get(D, 'b')], [fh(1), fh(2)]);
    m.found(D, attr(7), [['c', fh(3)]]);
    assert.deepEqual([m.get(D, 'a'), m.get(D, 'c')], [undefined, fh(3)]);
    m.found(D, undefined, [['d', fh(4)]]);
    assert.equal(m.get(D, 'd'), undefined);
    assert.equal(m.changed(D, { before: wccAttr(7) }, []), true, 'confirmed, but no after: forgotten');
    assert.equal(m.stampOf(D), undefined);
  });

  it('bounded: names and directories stay within the limits under any sequence', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 1500 }), fc.integer({ min: 0, max: 40 }), fc.boolean()), { maxLength: 400 }), (ops) => {
        const m = new NameMemo();
        for (const [d, k, found] of ops) {
          const dir = Buffer.from(`d${d}`);
          const names: Array<[string, Buffer]> = Array.from({ length: k * 25 }, (_, i) => [`n${i}`, fh(i & 255)]);
          if (found) m.found(dir, attr(1), names);
          else m.changed(dir, wcc(1, 2), names);
          assert.ok(m.size <= 32_768, `names ${m.size}`);
        }
        let counted = 0;
        for (let d = 0; d <= 1500; d++) for (let i = 0; i < 1000; i++) if (m.get(Buffer.from(`d${d}`), `n${i}`)) counted++;
        assert.equal(counted, m.size, 'the count is the names held');
      }),
      { numRuns: 20 },
    );
  });
});
