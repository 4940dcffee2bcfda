// @ts-check
/**
 * The API reference's additions to TypeDoc (`"plugin"` in typedoc.json):
 *
 * - TeX between `$…$` (inline) or `$$…$$` (display) in TSDoc comments and guides is typeset by KaTeX as MathML,
 *   which browsers render without KaTeX's style sheet or fonts;
 * - the front page, whose title is already the project name, does not repeat the `# denoise` heading that opens
 *   docs/index.md (GitHub shows that heading; TypeDoc would show it twice).
 */
import markdownItKatex from '@vscode/markdown-it-katex';
import { Application, RendererEvent } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  const katex = /** @type {{ default?: unknown }} */ (markdownItKatex).default ?? markdownItKatex;
  // Set once the options are read: TypeDoc reads them again after loading plugins.
  app.on(Application.EVENT_BOOTSTRAP_END, () => {
    app.options.setValue('markdownItLoader', (/** @type {import('markdown-it').default} */ parser) => {
      parser.use(/** @type {import('markdown-it').PluginWithOptions} */ (katex), {
        output: 'mathml',
        throwOnError: true,
      });
    });
  });

  // On the merged project: in the "packages" strategy each package is converted on its own.
  app.renderer.on(RendererEvent.BEGIN, (event) => {
    const [first] = event.project.readme ?? [];
    const heading = `# ${event.project.name}\n`;
    if (first?.kind === 'text' && first.text.startsWith(heading)) {
      first.text = first.text.slice(heading.length).replace(/^\n+/, '');
    }
  });
}
