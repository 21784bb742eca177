// Headless Chromium for the browser scenarios: one way to launch it, one way to fail.
//
// The executable is $CHROMIUM (the runner sets it to the one it installed), else
// /usr/bin/chromium. Each launch gets a fresh profile folder, removed by `close()`.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';

/** On any failure from now on: print what was seen so far (a PARTIAL line on stderr), then exit 1. */
export function partialOnFailure(result) {
  const fail = (e) => {
    console.error('PARTIAL ' + JSON.stringify(result));
    console.error(e);
    process.exit(1);
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
}

/** A headless browser with a fresh profile: `{ context, close }`. */
export async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'interop-chromium-'));
  const removeProfile = () => rmSync(userDataDir, { recursive: true, force: true });
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: EXECUTABLE,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
  } catch (e) {
    removeProfile();
    throw e;
  }
  return {
    context,
    async close() {
      await context.close();
      removeProfile();
    },
  };
}
