/**
 * `npm run test:browser`: builds the demo, serves it on 127.0.0.1 with Vite's preview server and drives Debian's
 * Chromium through playwright-core (WebGPU via SwiftShader). Prints one line per test and then `N passed, N failed`;
 * exits non-zero when anything failed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { tsImport } from 'tsx/esm/api';
import { build, preview } from 'vite';

const browserDir = resolve(import.meta.dirname, '..');
const configFile = resolve(browserDir, 'vite.config.ts');
const screenshotPath = resolve(import.meta.dirname, 'screenshot.png');

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

/** Opens `url`, recording page errors and every request that leaves the page's origin (there must be none). */
async function openPage(browser, url, initScript) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 620 } });
  if (initScript) await page.addInitScript(initScript);
  const errors = [];
  const foreignRequests = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    // ONNX Runtime's native log writes its warnings ("[W:onnxruntime:...]", e.g. which nodes WebGPU leaves to the
    // CPU) through console.error; they are not errors.
    if (message.type() === 'error' && !message.text().includes('[W:onnxruntime:')) errors.push(message.text());
  });
  page.on('request', (request) => {
    if (!request.url().startsWith(new URL(url).origin) && !request.url().startsWith('data:')) {
      foreignRequests.push(request.url());
    }
  });
  await page.goto(url);
  return { page, errors, foreignRequests };
}

const { launchChromium } = await tsImport('../../../tools/chromium.ts', import.meta.url);

/** The reference world's data set, to know what each label's picture is. */
const world = await tsImport('../../../tools/reference-world/world.ts', import.meta.url);
/** The benchmark page's server (`bench/browser`), whose page reports where the UNet's feeds live. */
const { startBenchServer } = await tsImport('../../../bench/browser/server.ts', import.meta.url);
const referenceWorldDir = resolve(browserDir, '..', '..', 'models', 'reference-world');
/** The SDXL layout of the reference world, written for this run (`tools/reference-world/sdxl.ts`). */
const { buildSdxlReferenceWorld } = await tsImport('../../../tools/reference-world/sdxl.ts', import.meta.url);
const sdxlWorldDir = mkdtempSync(join(tmpdir(), 'denoise-sdxl-world-'));
buildSdxlReferenceWorld(sdxlWorldDir);

/** The RGBA bytes of a label's data picture, as the pipeline turns [-1, 1] into bytes. */
function labelPicture(label) {
  const point = world.worldPoints.find((p) => p.label === label);
  const pixels = world.paintLatent(point.latent);
  const plane = pixels.length / 3;
  const rgba = new Uint8ClampedArray(plane * 4);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) rgba[p * 4 + c] = Math.min(Math.max(pixels[c * plane + p] / 2 + 0.5, 0), 1) * 255;
    rgba[p * 4 + 3] = 255;
  }
  return rgba;
}

/** Mean absolute difference over the RGB bytes of two RGBA pictures of the same size. */
function meanAbsError(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i++) if (i % 4 !== 3) sum += Math.abs(a[i] - b[i]);
  return sum / ((a.length / 4) * 3);
}

/** Checks that `rgba` is the picture of `label`: close to it, and closer to it than to any other label's. */
function assertPictureOf(rgba, label) {
  const errors = world.worldPoints.map((p) => [p.label, meanAbsError(rgba, labelPicture(p.label))]);
  errors.sort((x, y) => x[1] - y[1]);
  const own = errors.find(([l]) => l === label)[1];
  assert(
    errors[0][0] === label,
    `the picture is nearest to "${errors[0][0]}" (${errors[0][1].toFixed(2)}), not "${label}" (${own.toFixed(2)})`,
  );
  assert(own < 4, `mean |error| to "${label}" is ${own.toFixed(2)} of 255, expected < 4`);
  return own;
}

/** Fills the demo's form, clicks Generate and waits for the run to end; returns the status and the canvas pixels. */
async function generateInDemo(page, { prompt, scheduler = '', steps, guidance = 7.5, seed, device }) {
  await page.fill('#prompt', prompt);
  await page.selectOption('#scheduler', scheduler);
  await page.fill('#steps', String(steps));
  await page.fill('#guidance', String(guidance));
  await page.fill('#seed', String(seed));
  await page.selectOption('#device', device);
  await page.click('#generate');
  await page.waitForSelector('#status:is([data-state="done"], [data-state="error"], [data-state="cancelled"])', {
    timeout: 180_000,
  });
  return page.evaluate(() => {
    const canvas = document.querySelector('#preview');
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const status = document.querySelector('#status');
    return {
      state: status.dataset.state,
      text: status.textContent,
      width: canvas.width,
      height: canvas.height,
      rgba: Array.from(pixels.data),
    };
  });
}

let server;
let benchServer;
let browser;
try {
  console.log('building examples/browser');
  await build({ configFile, logLevel: 'warn' });
  server = await preview({ configFile, logLevel: 'warn', preview: { port: 0, strictPort: false } });
  const origin = server.resolvedUrls.local[0].replace(/\/$/, '');
  console.log(`serving on ${origin}`);

  const launched = await launchChromium(`${origin}/runtime-check.html`);
  browser = launched.browser;
  console.log(`chromium ${browser.version()} ${launched.extraArgs.join(' ')}`);

  const check = await openPage(browser, `${origin}/runtime-check.html`);
  const checkPage = check.page;
  await test('the page is cross-origin isolated, so WASM may use threads', async () => {
    assert(await checkPage.evaluate(() => crossOriginIsolated), 'crossOriginIsolated is false');
  });
  for (const device of ['webgpu', 'wasm']) {
    await test(`runtime: an ONNX session on ${device} computes sigmoid(xW + b) and its softmax`, async () => {
      const result = await checkPage.evaluate((d) => window.runtimeCheck(d), device);
      assert(result.executionProviders.join() === device, `ran on ${result.executionProviders}, not ${device}`);
      assert(result.hidden.length === 8 && result.probabilities.length === 8, `bad output sizes`);
      assert(result.maxAbsError < 1e-5, `max |error| ${result.maxAbsError} >= 1e-5: ${JSON.stringify(result)}`);
    });
  }
  for (const device of ['webgpu', 'wasm']) {
    await test(`runtime: the embedded model loads from the page's Hub and its VAE decoder paints a label on ${device}`, async () => {
      const point = world.worldPoints.find((p) => p.label === 'a green triangle on a gray background');
      const result = await checkPage.evaluate(
        ([d, latent]) => window.decodeWithEmbeddedModel(d, latent),
        [device, Array.from(point.latent)],
      );
      assert(result.executionProviders.join() === device, `ran on ${result.executionProviders}, not ${device}`);
      assert(result.dims.join() === '1,3,128,128', `decoded dims ${result.dims}`);
      const expected = world.paintLatent(point.latent);
      const maxError = Math.max(...result.pixels.map((v, i) => Math.abs(v - expected[i])));
      assert(maxError < 1e-5, `max |decoded - picture| = ${maxError}`);
      assert(result.events.at(-1) === 'ready', `progress events: ${result.events.join(' ')}`);
    });
  }
  await test('webgpu: inpainting repaints the masked red circle as a blue square and keeps the white around it', async () => {
    const image = labelPicture('a red circle on a white background');
    // The shape's cells, pixels 16 to 111 on both axes.
    const mask = Array.from({ length: 128 * 128 }, (_, p) => {
      const [y, x] = [Math.floor(p / 128), p % 128];
      return y >= 16 && y < 112 && x >= 16 && x < 112 ? 255 : 0;
    });
    const result = await checkPage.evaluate((run) => window.inpaintWithEmbeddedModel(run), {
      device: 'webgpu',
      prompt: 'a blue square',
      image: Array.from(image),
      mask,
      steps: 20,
      seed: 0,
    });
    assert(result.executionProviders.join() === 'webgpu', `ran on ${result.executionProviders}, not webgpu`);
    assert(result.unetChannels === 4, `the UNet takes ${result.unetChannels} channels`);
    const error = assertPictureOf(result.rgba, 'a blue square on a white background');
    // Outside the mask the legacy blend ends on the image's own latents: the source to one 8-bit level.
    let outside = 0;
    for (let p = 0; p < mask.length; p++) {
      if (mask[p] !== 0) continue;
      for (let c = 0; c < 3; c++) outside = Math.max(outside, Math.abs(result.rgba[p * 4 + c] - image[p * 4 + c]));
    }
    assert(outside <= 1, `pixels outside the mask moved by up to ${outside} levels`);
    console.log(`       mean |error| ${error.toFixed(3)} of 255; outside the mask at most ${outside} level(s) off`);
  });
  await test('the runtime check page logged no errors and fetched nothing from another origin', async () => {
    assert(check.errors.length === 0, check.errors.join('\n'));
    assert(check.foreignRequests.length === 0, `requests left the origin: ${check.foreignRequests.join(', ')}`);
  });
  await checkPage.close();

  // Every picture the demo paints on its canvas, in order: one preview per step, then the final image.
  const recordPaints = () => {
    window.demoPaints = [];
    const put = CanvasRenderingContext2D.prototype.putImageData;
    CanvasRenderingContext2D.prototype.putImageData = function (image, ...rest) {
      if (this.canvas.id === 'preview') window.demoPaints.push(Array.from(image.data));
      return put.call(this, image, ...rest);
    };
  };
  const demo = await openPage(browser, `${origin}/`, recordPaints);
  await demo.page.waitForSelector('#status[data-state="idle"]');
  const runs = [
    {
      device: 'webgpu',
      prompt: 'a blue square on a black background',
      scheduler: 'DPM++ 2M Karras',
      steps: 20,
      seed: 7,
    },
    { device: 'wasm', prompt: 'a red circle on a white background', scheduler: '', steps: 25, seed: 42 },
  ];
  for (const [index, run] of runs.entries()) {
    await test(`demo on ${run.device}: "${run.prompt}" (${run.scheduler || 'DDIM'}, ${run.steps} steps) is that picture`, async () => {
      const result = await generateInDemo(demo.page, run);
      assert(result.state === 'done', `the run ended "${result.state}": ${result.text}`);
      assert(result.text.includes(run.device), `the status does not name ${run.device}: ${result.text}`);
      assert(result.width === 128 && result.height === 128, `canvas is ${result.width}x${result.height}`);
      const error = assertPictureOf(result.rgba, run.prompt);
      console.log(`       mean |error| ${error.toFixed(3)} of 255; ${result.text}`);
    });
    if (index === 0) {
      await test('demo: the live preview is the decoded x̂₀, so the picture forms while it denoises', async () => {
        const paints = await demo.page.evaluate(() => window.demoPaints);
        assert(paints.length === run.steps + 1, `${paints.length} paints for ${run.steps} steps and the final image`);
        assert(
          paints.every((p) => p.length === 128 * 128 * 4),
          'a preview is not a 128x128 image',
        );
        const final = paints.at(-1);
        const middle = paints[run.steps / 2 - 1];
        // Noise: uniformly random pixels, from a fixed Park–Miller sequence.
        let state = 12345;
        const nextByte = () => {
          state = (state * 48271) % 2147483647;
          return state & 255;
        };
        const noise = final.map((_, i) => (i % 4 === 3 ? 255 : nextByte()));
        const toFinal = meanAbsError(middle, final);
        const toNoise = meanAbsError(middle, noise);
        const firstToFinal = meanAbsError(paints[0], final);
        assert(
          toFinal < toNoise,
          `step ${run.steps / 2}: ${toFinal.toFixed(1)} from the final image, ${toNoise.toFixed(1)} from noise`,
        );
        assert(
          toFinal < firstToFinal,
          `step ${run.steps / 2} is no nearer the final image than step 1 (${toFinal.toFixed(1)} vs ${firstToFinal.toFixed(1)})`,
        );
        console.log(
          `       step ${run.steps / 2}/${run.steps}: mean |error| ${toFinal.toFixed(2)} to the final image, ` +
            `${toNoise.toFixed(2)} to noise; step 1: ${firstToFinal.toFixed(2)}`,
        );
      });
      await test('demo: "auto" runs on the one device it picked and says which', async () => {
        const result = await generateInDemo(demo.page, { ...run, device: 'auto' });
        assert(result.state === 'done', `the run ended "${result.state}": ${result.text}`);
        assert(/ on webgpu \(auto\) /.test(result.text), `the status does not name one device: ${result.text}`);
      });
    }
    if (index === 0) {
      await test('demo: Cancel stops a long run between steps and the page stays usable', async () => {
        await demo.page.fill('#steps', '200');
        await demo.page.click('#generate');
        await demo.page.waitForFunction(() => /^Step [3-9]/.test(document.querySelector('#status').textContent));
        await demo.page.click('#cancel');
        await demo.page.waitForSelector('#status[data-state="cancelled"]', { timeout: 30_000 });
        const stoppedAt = await demo.page.evaluate(() => document.querySelector('#status').textContent);
        assert(stoppedAt === 'Cancelled.', `status after cancel: ${stoppedAt}`);
        // The canvas keeps the last step's live preview, the decoded x̂₀ at the image's size.
        const preview = await demo.page.evaluate(() => [
          document.querySelector('#preview').width,
          document.querySelector('#preview').height,
        ]);
        assert(preview.join() === '128,128', `the canvas is ${preview.join('x')}, not the 128x128 x̂₀ preview`);
        assert(await demo.page.isEnabled('#generate'), 'Generate stays disabled after cancelling');
        assert(await demo.page.isDisabled('#cancel'), 'Cancel stays enabled after cancelling');
      });
    }
  }
  await demo.page.screenshot({ path: screenshotPath });
  console.log(`  screenshot: ${screenshotPath}`);
  await test('the demo logged no errors and fetched nothing from another origin', async () => {
    assert(demo.errors.length === 0, demo.errors.join('\n'));
    assert(demo.foreignRequests.length === 0, `requests left the origin: ${demo.foreignRequests.join(', ')}`);
  });

  benchServer = await startBenchServer(
    { 'denoise/reference-world': referenceWorldDir, 'denoise/sdxl-reference-world': sdxlWorldDir },
    'test',
  );
  const bench = await openPage(browser, `${benchServer.origin}/`);
  await bench.page.waitForFunction(() => 'denoiseBench' in window);
  const residencyRun = {
    repo: 'denoise/reference-world',
    prompt: 'a green triangle on a gray background',
    steps: 12,
    seed: 3,
  };
  await test('webgpu: every UNet step takes encoder_hidden_states as a GPU tensor, freed after the run; the picture is the label, byte for byte the CPU-fed one', async () => {
    const result = await bench.page.evaluate((run) => window.denoiseBench.residency(run), {
      ...residencyRun,
      backend: 'webgpu',
    });
    assert(result.executionProviders.join() === 'webgpu', `ran on ${result.executionProviders}`);
    assert(result.keepTextEmbeddingsOnDevice, 'the pipeline does not keep the text embeddings on the device');
    // One batched classifier-free-guidance call per step, each fed the same GPU buffer.
    assert(
      result.during.length === residencyRun.steps && result.during.every((l) => l === 'gpu-buffer'),
      `encoder_hidden_states locations per UNet call: ${result.during.join(', ')}`,
    );
    assert(result.after.join() === 'none', `after the run the embeddings are at: ${result.after.join(', ')}`);
    // The picture does not depend on where the embeddings were: the same bytes as with them fed from CPU memory.
    assert(
      result.maxDifferenceFromUploaded === 0,
      `differs from the CPU-fed run by up to ${result.maxDifferenceFromUploaded}`,
    );
    assert(result.width === 128 && result.height === 128, `image is ${result.width}x${result.height}`);
    const error = assertPictureOf(result.rgba, residencyRun.prompt);
    console.log(`       mean |error| ${error.toFixed(3)} of 255`);
  });
  await test('wasm: the same run feeds the embeddings from CPU memory and draws the same label', async () => {
    const result = await bench.page.evaluate((run) => window.denoiseBench.residency(run), {
      ...residencyRun,
      backend: 'wasm',
    });
    assert(!result.keepTextEmbeddingsOnDevice, 'a WASM pipeline claims to keep the embeddings on a device');
    assert(
      result.during.every((l) => l === 'cpu'),
      `encoder_hidden_states locations: ${result.during.join(', ')}`,
    );
    assertPictureOf(result.rgba, residencyRun.prompt);
  });
  for (const backend of ['webgpu', 'wasm']) {
    await test(`sdxl on ${backend}: both text encoders, text_embeds and time_ids (${backend === 'webgpu' ? 'uploaded once, GPU buffers on every UNet call, freed after' : 'fed from CPU memory'}) draw "a red circle" "on a white background"`, async () => {
      const result = await bench.page.evaluate((run) => window.denoiseBench.sdxl(run), {
        repo: 'denoise/sdxl-reference-world',
        backend,
        prompt: 'a red circle',
        prompt2: 'on a white background',
        steps: 25,
        seed: 0,
      });
      assert(result.kind === 'StableDiffusionXLPipeline', `loaded a ${result.kind}`);
      assert(result.executionProviders.join() === backend, `ran on ${result.executionProviders}`);
      // WebGPU: the conditioning is uploaded once and every batched UNet call (one per step) takes the same GPU
      // buffers, freed after the run; WASM feeds it from CPU memory.
      const where = backend === 'webgpu' ? 'gpu-buffer' : 'cpu';
      const expected = ['encoder_hidden_states', 'text_embeds', 'time_ids'].map((name) => `${name}:${where}`).join();
      assert(
        result.during.length === 25 && result.during.every((call) => call.join() === expected),
        `conditioning per UNet call (want ${expected}): ${result.during.map((call) => call.join(' ')).join(', ')}`,
      );
      if (backend === 'webgpu') {
        assert(result.after.length === 3, `${result.after.length} distinct device tensors fed, want 3`);
        assert(
          result.after.every((l) => l === 'none'),
          `after the run the conditioning is at: ${result.after.join(', ')}`,
        );
      }
      assert(result.width === 128 && result.height === 128, `image is ${result.width}x${result.height}`);
      const error = assertPictureOf(result.rgba, 'a red circle on a white background');
      console.log(`       mean |error| ${error.toFixed(3)} of 255`);
    });
  }
  await test('the benchmark page logged no errors and fetched nothing from another origin', async () => {
    assert(bench.errors.length === 0, bench.errors.join('\n'));
    assert(bench.foreignRequests.length === 0, `requests left the origin: ${bench.foreignRequests.join(', ')}`);
  });
} catch (error) {
  // The harness itself broke (build, server, browser launch): report it as a failure, never as silence.
  results.failed++;
  console.log(`  FAIL the harness: ${String(error?.stack ?? error).replaceAll('\n', '\n       ')}`);
} finally {
  await browser?.close();
  await server?.close();
  await benchServer?.close();
  rmSync(sdxlWorldDir, { recursive: true, force: true });
}

console.log(`${results.passed} passed, ${results.failed} failed`);
process.exitCode = results.failed === 0 ? 0 : 1;
