export { XdrReader, pad } from './reader.js';
export { XdrWriter } from './writer.js';
export { XdrError } from './errors.js';
