/**
 * `npm run test:browser`: builds the demo, serves it on 127.0.0.1 with Vite's preview server and drives Debian's
 * Chromium through playwright-core (WebGPU via SwiftShader). Prints one line per test and then `N passed, N failed`;
 * exits non-zero when anything failed.
 */
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { build, preview } from 'vite';

const browserDir = resolve(import.meta.dirname, '..');
const configFile = resolve(browserDir, 'vite.config.ts');
const screenshotPath = resolve(import.meta.dirname, 'screenshot.png');

const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const results = { passed: 0, failed: 0 };

async function test(name, body) {
  const started = performance.now();
  try {
    await body();
    results.passed++;
    console.log(`  ok   ${name} (${Math.round(performance.now() - started)} ms)`);
  } catch (error) {
    results.failed++;
    console.log(`  FAIL ${name}\n       ${String(error?.stack ?? error).replaceAll('\n', '\n       ')}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** Launches Chromium, adding Vulkan only when SwiftShader's WebGPU adapter does not come up without it. */
async function launchWithWebGPU(origin) {
  for (const extra of [[], ['--enable-features=Vulkan']]) {
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...CHROMIUM_ARGS, ...extra] });
    const page = await browser.newPage();
    await page.goto(`${origin}/runtime-check.html`);
    const adapter = await page.evaluate(async () => Boolean(await navigator.gpu?.requestAdapter()));
    await page.close();
    if (adapter) return { browser, args: extra };
    await browser.close();
  }
  throw new Error('Chromium exposes no WebGPU adapter, with or without --enable-features=Vulkan.');
}

async function openPage(browser, url) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  await page.goto(url);
  return { page, errors };
}

console.log('building examples/browser');
await build({ configFile, logLevel: 'warn' });
const server = await preview({ configFile, logLevel: 'warn', preview: { port: 0, strictPort: false } });
const origin = server.resolvedUrls.local[0].replace(/\/$/, '');
console.log(`serving on ${origin}`);

let browser;
try {
  const launched = await launchWithWebGPU(origin);
  browser = launched.browser;
  console.log(`chromium ${browser.version()} ${launched.args.join(' ')}`);

  const { page: checkPage, errors: checkErrors } = await openPage(browser, `${origin}/runtime-check.html`);
  await test('the page is cross-origin isolated, so WASM may use threads', async () => {
    assert(await checkPage.evaluate(() => crossOriginIsolated), 'crossOriginIsolated is false');
  });
  for (const device of ['webgpu', 'wasm']) {
    await test(`runtime: an ONNX session on ${device} computes sigmoid(xW + b) and its softmax`, async () => {
      const result = await checkPage.evaluate((d) => window.runtimeCheck(d), device);
      assert(result.hidden.length === 8 && result.probabilities.length === 8, `bad output sizes`);
      assert(result.maxAbsError < 1e-5, `max |error| ${result.maxAbsError} >= 1e-5: ${JSON.stringify(result)}`);
    });
  }
  await test('the runtime check page logged no errors', async () => {
    assert(checkErrors.length === 0, checkErrors.join('\n'));
  });
} finally {
  await browser?.close();
  await server.close();
}

console.log(`${results.passed} passed, ${results.failed} failed`);
process.exitCode = results.failed === 0 ? 0 : 1;
