import { exerciseConfig } from './suite.js';

// See suite.ts (what is checked) and helpers.ts mountArgs (the mount options of 'two-mounts').
exerciseConfig('two-mounts');
