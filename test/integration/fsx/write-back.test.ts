import { exerciseConfig } from './suite.js';

// See suite.ts (what is checked) and helpers.ts mountArgs (the mount options of 'write-back').
exerciseConfig('write-back');
