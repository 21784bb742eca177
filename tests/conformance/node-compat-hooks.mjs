// Module hooks of node-compat.mjs: inside @modelcontextprotocol/conformance, `fs` resolves to
// the real `fs` plus a `globSync` that throws (only `tier-check` calls it).
const FS_WITH_GLOBSYNC =
  'data:text/javascript,' +
  encodeURIComponent(`
    import fs from 'node:fs';
    export * from 'node:fs';
    export default fs;
    export function globSync() {
      throw new Error('fs.globSync needs Node.js 22 or later (the conformance tier-check command uses it)');
    }
  `);

export async function resolve(specifier, context, nextResolve) {
  if (
    (specifier === 'fs' || specifier === 'node:fs') &&
    context.parentURL?.includes('/node_modules/@modelcontextprotocol/conformance/')
  ) {
    return { url: FS_WITH_GLOBSYNC, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
