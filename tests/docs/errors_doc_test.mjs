// Keeps docs/errors.md a true catalogue: it must name every exception type the public API declares, every
// test it names as provoking an error must exist, and every error it describes must name at least one.
//
//   node errors_doc_test.mjs DOC ERRORS_HPP CTEST BUILD_DIR
//
// Tests are named in backquotes as `suite.test_name`, the way `ctest -N` lists them. An error is a `###`
// section, or a row of a table whose last column is `tests`. Exits 1 after reporting every problem.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const [docPath, errorsHpp, ctest, buildDir] = process.argv.slice(2);
if (!docPath || !errorsHpp || !ctest || !buildDir) {
  console.error('usage: node errors_doc_test.mjs DOC ERRORS_HPP CTEST BUILD_DIR');
  process.exit(2);
}

const doc = readFileSync(docPath, 'utf8');
const problems = [];

// Every ferry::Error type (the base included) has its place in the catalogue.
const types = [...readFileSync(errorsHpp, 'utf8').matchAll(/^class (\w+) : public (?:std::runtime_error|Error\b)/gm)]
  .map((m) => m[1]);
if (types.length < 10) problems.push(`found only ${types.length} error types in ${errorsHpp}: is the pattern stale?`);
for (const type of types) {
  if (type !== 'Error' && !doc.includes('`ferry::' + type + '`')) problems.push(`ferry::${type} is not in the catalogue`);
}

// Every test named exists.
const listed = new Set(
  execFileSync(ctest, ['-N', '--test-dir', buildDir], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.match(/Test\s+#\d+: (\S+)/)?.[1])
    .filter(Boolean),
);
const testName = /`([a-z_]+\.[A-Za-z0-9_]*_[A-Za-z0-9_]*)`/g;
const named = [...doc.matchAll(testName)].map((m) => m[1]);
if (named.length < 30) problems.push(`only ${named.length} tests named: the catalogue should back each error with one`);
for (const name of new Set(named)) {
  if (!listed.has(name)) problems.push(`names test ${name}, which ctest does not list`);
}

// Every error names a test: each ### section, and each row of a table with a `tests` column.
for (const section of doc.split(/^### /m).slice(1)) {
  const body = section.split(/^## /m)[0];
  if (!testName.test(body)) problems.push(`section "${section.split('\n')[0]}" names no test`);
  testName.lastIndex = 0;
}
let testsColumn = false;
for (const line of doc.split('\n')) {
  if (!line.startsWith('|')) {
    testsColumn = false;
    continue;
  }
  const cells = line.split('|').slice(1, -1).map((c) => c.trim());
  if (cells.at(-1) === 'tests') testsColumn = true;
  else if (testsColumn && !cells[0].startsWith('---') && !testName.test(cells.at(-1))) {
    problems.push(`row "${cells[0]}" names no test`);
  }
  testName.lastIndex = 0;
}

if (problems.length) {
  for (const p of problems) console.error('FAIL ' + p);
  process.exit(1);
}
console.log(`ok: ${types.length} error types, ${new Set(named).size} tests named, all listed by ctest`);
