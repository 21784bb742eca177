// Lets the conformance runner start on Node.js 20, the machine's Node.js.
//
// @modelcontextprotocol/conformance 0.1.16 imports `globSync` from `fs` at load time (Node.js
// 22 has it); only its `tier-check` command calls it. On a Node.js without `fs.globSync` this
// hook hands the runner an `fs` that adds a `globSync` saying so, and changes nothing else.
// On Node.js 22 and later it does nothing.
//
//   node --import ./node-compat.mjs node_modules/@modelcontextprotocol/conformance/dist/index.js
import fs from 'node:fs';
import { register } from 'node:module';

if (typeof fs.globSync !== 'function') {
  register('./node-compat-hooks.mjs', import.meta.url);
}
