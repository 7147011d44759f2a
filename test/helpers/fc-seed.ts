import fc from 'fast-check';
import { testSeed } from './seed.js';

/**
 * Every fast-check property of the importing file runs from one seed
 * (GVFS_FC_SEED; fixed in CI). fast-check also names the seed and path of a
 * failing run in its error.
 */
export const FC_SEED = testSeed('GVFS_FC_SEED', 20261204);
fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: FC_SEED });
