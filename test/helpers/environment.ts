/**
 * Remembers the named variables of the process environment and returns what puts them back, in place: replacing
 * process.env with a copy would hide every later setting from worker threads, which copy the real environment.
 */
export function rememberEnvironment(names: string[]): () => void {
  const saved = names.map((name) => [name, process.env[name]] as const);
  return () => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}
