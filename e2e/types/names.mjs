// Prints the public names of a meshbox.js module as TypeScript, one assertion per name, so
// that tsc refuses the file when meshbox.js has a name meshbox.d.ts does not declare.
// Usage: node names.mjs /path/to/meshbox.js > names.ts
import { pathToFileURL } from 'node:url';

const m = await import(pathToFileURL(process.argv[2]).href);
const pub = (names) => names.filter((n) => !n.startsWith('_') && !['constructor', 'length', 'name', 'prototype'].includes(n));
// The constructor only records what it is given: no network, no timers.
const client = new m.MeshClient('', { group: { id: 'g' }, node: { id: 'n' }, token: 't', cursor: 0 }, {});
const lists = {
  exports: Object.keys(m),
  statics: pub(Object.getOwnPropertyNames(m.MeshClient)),
  members: pub([...Object.keys(client), ...Object.getOwnPropertyNames(m.MeshClient.prototype)]),
  errorMembers: pub([...Object.keys(new m.MeshError('x', 'y')), ...Object.getOwnPropertyNames(m.MeshError.prototype)]),
};
const q = (a) => a.map((n) => JSON.stringify(n)).join(', ');
console.log(`// Generated from meshbox.js by names.mjs: every public name it has.
import * as mod from './meshbox.js';
export const exportsOf: (keyof typeof mod)[] = [${q(lists.exports)}];
export const staticsOf: (keyof typeof mod.MeshClient)[] = [${q(lists.statics)}];
export const membersOf: (keyof mod.MeshClient)[] = [${q(lists.members)}];
export const errorMembersOf: (keyof mod.MeshError)[] = [${q(lists.errorMembers)}];`);
