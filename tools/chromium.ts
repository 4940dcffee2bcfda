/**
 * Headless Chromium for the browser tests and the browser benchmark: Debian's binary (never a downloaded one),
 * driven by playwright-core, with WebGPU on SwiftShader (Chromium's CPU Vulkan) so that onnxruntime-web's WebGPU
 * backend runs on a machine without a GPU.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** Where Debian and Ubuntu install Chromium; `CHROMIUM` in the environment overrides it. */
export const CHROMIUM_PATH = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** WebGPU through SwiftShader, and nothing that would reach the network by itself. */
const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Throws, saying how to install it, when there is no Chromium at {@link CHROMIUM_PATH}. */
export function assertChromiumInstalled(): void {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is missing: ${CHROMIUM_PATH} does not exist. Install it (Debian/Ubuntu: \`apt-get install chromium\`) ` +
        'or point CHROMIUM at a Chromium binary; nothing here downloads a browser.',
    );
  }
}

/** A launched Chromium and the flags added to {@link CHROMIUM_ARGS} to bring its WebGPU adapter up. */
export interface LaunchedChromium {
  browser: Browser;
  extraArgs: readonly string[];
}

/**
 * Launches Chromium and checks, on `probeUrl` (a page of the origin under test), that WebGPU has an adapter,
 * adding `--enable-features=Vulkan` only when it does not come up without it.
 *
 * @param probeUrl - a page to ask `navigator.gpu` on
 * @param requireWebGPU - fail when no adapter comes up (otherwise the first launch is returned as is)
 */
export async function launchChromium(probeUrl: string, requireWebGPU = true): Promise<LaunchedChromium> {
  assertChromiumInstalled();
  for (const extraArgs of [[], ['--enable-features=Vulkan']]) {
    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS, ...extraArgs] });
    const page = await browser.newPage();
    await page.goto(probeUrl);
    const adapter = await page.evaluate(async () => {
      const { gpu } = navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } };
      return Boolean(await gpu?.requestAdapter());
    });
    await page.close();
    if (adapter || !requireWebGPU) return { browser, extraArgs };
    await browser.close();
  }
  throw new Error('Chromium exposes no WebGPU adapter, with or without --enable-features=Vulkan.');
}
