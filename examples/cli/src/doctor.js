/**
 * `denoise doctor`: which execution providers this machine's onnxruntime-node can use, and how to enable the
 * missing ones, so a user with a GPU knows before a long run whether it will be used.
 */
import { getDeviceSupport } from '@denoise/core/runtime';

/**
 * Prints the report of `getDeviceSupport()`: one line per provider, the fix under each unusable one.
 *
 * @param {{ stdout: NodeJS.WritableStream }} io
 */
export async function printDoctor({ stdout }) {
  const report = await getDeviceSupport();
  stdout.write(`node ${process.version}, ${report.runtime}, ${report.platform}\n\n`);
  const width = Math.max(...report.providers.map((p) => p.device.length));
  for (const provider of report.providers) {
    const mark = provider.usable ? 'yes' : 'no ';
    stdout.write(`  ${provider.device.padEnd(width)}  ${mark}  ${provider.detail}\n`);
    if (provider.enable) stdout.write(`  ${' '.repeat(width)}       to enable: ${provider.enable}\n`);
  }
  stdout.write(`\n--device auto uses: ${report.autoDevices.join(', then ')}\n`);
}
