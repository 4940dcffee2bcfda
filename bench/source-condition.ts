/**
 * A module resolution hook that adds the `source` export condition, so that `@denoise/*` imports resolve to the
 * workspace packages' TypeScript sources (as vitest and tsc do) instead of their unbuilt `dist/`. Registered by
 * `bench/run.ts` before it loads any benchmark.
 */

interface ResolveContext {
  conditions: string[];
}
type NextResolve = (specifier: string, context: ResolveContext) => Promise<unknown>;

/**
 * Node's `resolve` hook: resolves every specifier with the `source` condition added.
 *
 * @param specifier - the import specifier
 * @param context - Node's resolve context
 * @param nextResolve - the next hook in the chain
 */
export function resolve(specifier: string, context: ResolveContext, nextResolve: NextResolve): Promise<unknown> {
  const conditions = context.conditions.includes('source') ? context.conditions : ['source', ...context.conditions];
  return nextResolve(specifier, { ...context, conditions });
}
