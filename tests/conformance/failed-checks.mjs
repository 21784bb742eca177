// Prints every failed check of a runner's --output-dir: scenario, check id and message.
//
//   node failed-checks.mjs logs/results-TARGET
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []) {
  const file = path.join(dir, entry, 'checks.json');
  if (!fs.existsSync(file)) continue;
  for (const check of JSON.parse(fs.readFileSync(file, 'utf8'))) {
    if (check.status === 'FAILURE') {
      console.log(`  ✗ ${entry}: ${check.id}: ${check.errorMessage ?? check.description}`);
    }
  }
}
