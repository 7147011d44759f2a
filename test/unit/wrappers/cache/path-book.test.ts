import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PathBook } from '../../../../src/wrappers/cache/path-book.js';

const fh = (n: number) => Buffer.from([n, 0xaa, n]);

/** Handle → path for log lines: walks what replies named, never the server. */
describe('cache PathBook', { timeout: 10_000 }, () => {
  test('paths from the export root, from a mounted subdirectory, after a rename, and partial ones', () => {
    const b = new PathBook();
    b.root(fh(1), '/');
    b.note(fh(1), 'projects', fh(2));
    b.note(fh(2), 'run 1', fh(3));
    b.note(fh(3), 'out.bin', fh(4));
    assert.equal(b.pathOf(fh(4)), '/projects/run 1/out.bin');
    assert.equal(b.pathOf(fh(1)), '/');
    // A subdirectory mounted on its own (MOUNT /projects): its files are still named from the export.
    b.root(fh(9), '/projects/');
    b.note(fh(9), 'x.txt', fh(10));
    assert.equal(b.pathOf(fh(10)), '/projects/x.txt');
    // Renamed: the last name seen wins.
    b.note(fh(2), 'moved.bin', fh(4));
    assert.equal(b.pathOf(fh(4)), '/projects/moved.bin');
    // A chain that does not reach a root (a handle from before a restart): what is known, marked partial.
    b.note(fh(20), 'leaf', fh(21));
    assert.equal(b.pathOf(fh(21)), '…/leaf');
    assert.equal(b.pathOf(fh(99)), undefined);
    // . and .. name nothing.
    b.note(fh(3), '..', fh(2));
    assert.equal(b.pathOf(fh(2)), '/projects');
  });

  test('bounded: the oldest entries go first; a cycle cannot hang the walk', () => {
    const b = new PathBook(3);
    b.root(fh(1));
    for (let i = 2; i <= 6; i++) b.note(fh(1), `f${i}`, fh(i));
    assert.equal(b.pathOf(fh(2)), undefined);
    assert.equal(b.pathOf(fh(6)), '/f6');
    b.note(fh(30), 'a', fh(31));
    b.note(fh(31), 'b', fh(30));
    assert.match(b.pathOf(fh(31)) ?? '', /^…\//);
  });
});
