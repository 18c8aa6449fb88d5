// The folder layering, checked on the whole import graph of the source tree (eslint.config.js flags the same imports
// line by line): no cycle between folders, workflows/ imports no other folder (it owns the contracts, types included),
// no production folder imports test/ or bench/, and nothing imports test/ (the peers harness the tests and the
// benchmark share lives in scripts/peers/).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The source tree (the tests run from dist/test). */
const root = fileURLToPath(new URL('../../', import.meta.url));
const FOLDERS = ['workflows', 'activities', 'worker', 'signaler', 'test', 'bench', 'scripts'];
const PRODUCTION = ['workflows', 'activities', 'worker', 'signaler'];

/** An import from one folder into another: the importing file (from the top) and the import as written. */
interface Import {
  file: string;
  specifier: string;
}
/** Folder -> imported folder -> the imports that make that edge. */
type FolderGraph = Map<string, Map<string, Import[]>>;

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

function folderOf(path: string): string | undefined {
  const [first] = relative(root, path).split(sep);
  return first !== undefined && FOLDERS.includes(first) ? first : undefined;
}

/** Every import of the scanned folders that reaches another project folder. */
function folderGraph(): FolderGraph {
  const graph: FolderGraph = new Map();
  for (const folder of FOLDERS) {
    for (const path of tsFiles(join(root, folder))) {
      // The compiler's own scan: `import`, `import type`, `export ... from`, `import x = require()`, `import()`.
      const { importedFiles } = ts.preProcessFile(readFileSync(path, 'utf8'), true, true);
      for (const { fileName: specifier } of importedFiles) {
        if (!specifier.startsWith('.')) continue;
        const target = folderOf(resolve(dirname(path), specifier));
        if (target === undefined || target === folder) continue;
        const edges = graph.get(folder) ?? new Map<string, Import[]>();
        graph.set(folder, edges);
        edges.set(target, [...(edges.get(target) ?? []), { file: relative(root, path), specifier }]);
      }
    }
  }
  return graph;
}

/** A cycle of folders (the first one repeated at the end), or undefined when there is none. */
function findCycle(graph: ReadonlyMap<string, ReadonlyMap<string, unknown>>): string[] | undefined {
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    const at = path.indexOf(node);
    if (at >= 0) return [...path.slice(at), node];
    if (done.has(node)) return undefined;
    path.push(node);
    for (const next of graph.get(node)?.keys() ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    done.add(node);
    return undefined;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

function describeImports(imports: Import[]): string {
  return imports.map(({ file, specifier }) => `\n  ${file}: '${specifier}'`).join('');
}

describe('folder layering', function () {
  const graph = folderGraph();

  it('finds a cycle in a made-up graph, and none once it is broken', function () {
    const edges = (...to: string[]) => new Map(to.map((folder) => [folder, []]));
    const cyclic = new Map([['a', edges('b')], ['b', edges('c')], ['c', edges('a')], ['d', edges('a')]]);
    assert.deepEqual(findCycle(cyclic), ['a', 'b', 'c', 'a']);
    assert.equal(findCycle(new Map([...cyclic, ['c', edges()]])), undefined);
  });

  it('has imports to check (the scan reads the source tree)', function () {
    assert.ok(graph.get('worker')?.has('workflows'), 'worker/ imports workflows/');
  });

  it('has no cycle between folders', function () {
    const cycle = findCycle(graph);
    const edges = (cycle ?? []).slice(1).map((to, i) => {
      const from = cycle?.[i] ?? '';
      return `\n${from}/ -> ${to}/:${describeImports(graph.get(from)?.get(to) ?? [])}`;
    });
    if (cycle) assert.fail(`a cycle between folders: ${cycle.join(' -> ')}${edges.join('')}`);
  });

  it('workflows/ imports no other project folder, types included', function () {
    const imports = [...(graph.get('workflows')?.values() ?? [])].flat();
    if (imports.length > 0) assert.fail(`workflows/ must import only itself and packages:${describeImports(imports)}`);
  });

  it('no production folder imports test/ or bench/', function () {
    const imports = PRODUCTION.flatMap((folder) => ['test', 'bench'].flatMap((to) => graph.get(folder)?.get(to) ?? []));
    if (imports.length > 0) assert.fail(`production code (${PRODUCTION.join(', ')}) imports test or benchmark code:${describeImports(imports)}`);
  });

  it('nothing imports test/: the tests sit on top of everything else', function () {
    const imports = FOLDERS.filter((folder) => folder !== 'test').flatMap((folder) => graph.get(folder)?.get('test') ?? []);
    if (imports.length > 0) assert.fail(`test/ is imported from outside:${describeImports(imports)}`);
    assert.ok(graph.get('test')?.has('bench'), 'the scan reads test/ too (a test imports bench/)');
  });
});
