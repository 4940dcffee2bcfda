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
import { Converter } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  const katex = /** @type {{ default?: unknown }} */ (markdownItKatex).default ?? markdownItKatex;
  app.options.setValue('markdownItLoader', (/** @type {import('markdown-it').default} */ parser) => {
    parser.use(/** @type {import('markdown-it').PluginWithOptions} */ (katex), {
      output: 'mathml',
      throwOnError: true,
    });
  });

  app.converter.on(Converter.EVENT_RESOLVE_END, (context) => {
    const [first] = context.project.readme ?? [];
    const heading = `# ${context.project.name}\n`;
    if (first?.kind === 'text' && first.text.startsWith(heading)) {
      first.text = first.text.slice(heading.length).replace(/^\n+/, '');
    }
  });
}
