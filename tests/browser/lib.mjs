// Shared by the browser tests: headless Chromium (Debian's /usr/bin/chromium,
// or $CHROMIUM_BIN) driven by playwright-core from tests/interop/node_modules,
// launched the same way everywhere.
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(join(root, 'tests/interop/package.json'));
const { chromium } = require('playwright-core');

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

// Resolves with the browser; `extraArgs` are added to the usual flags.
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run',
           '--disable-dev-shm-usage', ...extraArgs],
  });
}

// ---- the chat page (examples/chat/public) -----------------------------------

export const WAIT = { timeout: 15_000 };

// Resolve once the page shows `n` members / the message `text` by `author`.
export const members = (page, n) => page.locator(`#members[data-count="${n}"]`).waitFor(WAIT);
export const messageLine = (page, author, text) =>
  page.locator('#log li.msg', { has: page.locator('.author', { hasText: author }) })
    .filter({ has: page.locator('.text', { hasText: text }) }).last().waitFor(WAIT);

// Types `text` into the composer and sends it.
export async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}
