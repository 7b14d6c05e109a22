// Runs every curl example of docs/http-api.md against a real server and checks that the replies are the
// ones the doc shows, so that the reference cannot drift from the server.
//
//   node http_api_doc_test.mjs FERRY_CLI APP_BINARY DOC
//
// Starts `ferry server --port 0`, deploys APP_BINARY (the e2e test app) as "demo", exports FERRY_URL and
// FERRY_TOKEN, then runs the doc's ```sh blocks in order in one bash process (variables set by one block
// are seen by the next) and compares each block's output with the fenced block after it:
//   ```http  a reply printed by `curl -i`: the status line, the headers shown (others may be there too),
//            a blank line, the body (compared as JSON when it starts with { or [, else as text);
//   ```json  output that is one JSON value;
//   ```text  any other output.
// Other blocks (the doc's set-up for readers is a ```bash block) are not run.
// Matching rules (the doc states them for its readers, under "Reading the examples"):
//   - "…" as a JSON value matches any value; inside a JSON string ("fc-…") any run of characters;
//   - "…" as an array element matches any number of elements (none included);
//   - an object matches when it has exactly the keys shown, or at least those when it shows "…": "…";
//   - in text, "…" inside a line matches any characters, and a line that is just "…" any number of lines;
//     a `data: {...}` line (an SSE event's data) is compared as JSON with the rules above;
//   - $NAME (upper case) in an expected block stands for the value of the shell variable NAME, read from
//     the bash session after the block ran.
// Files the examples name /tmp/ferry-doc-NAME (the gates of `hold`) become NAME in a directory of this run,
// so that runs at the same time (two build trees) do not open each other's gates.
// Needs curl and jq (scripts/setup.sh installs both). Exits 1 after reporting every mismatch.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startDeployedServer } from '../support/ferry_server.mjs';

const ELLIPSIS = '…';
const BLOCK_TIMEOUT_MS = 30_000;  // one example, e.g. an event stream that should have ended
const END_MARKER = '__ferry_doc_block_end__';

const [ferryCli, appBinary, docPath] = process.argv.slice(2);
if (!ferryCli || !appBinary || !docPath) {
  console.error('usage: node http_api_doc_test.mjs FERRY_CLI APP_BINARY DOC');
  process.exit(2);
}

class SetupFailed extends Error {}

// ---- The doc: ```sh blocks, each followed by the block of its expected output ----

/// The doc's fenced blocks: {lang, text, line} (line: 1-based, of the opening fence).
function fencedBlocks(markdown) {
  const blocks = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; ++i) {
    const open = lines[i].match(/^(`{3,})\s*([\w-]*)\s*$/);
    if (!open) continue;
    const body = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].startsWith(open[1])) body.push(lines[j++]);
    if (j >= lines.length) throw new SetupFailed(`${docPath}:${i + 1}: a code block is not closed`);
    blocks.push({ lang: open[2], text: body.join('\n'), line: i + 1 });
    i = j;
  }
  return blocks;
}

/// [{command, expected}]: every ```sh block with the block that follows it.
function examples(markdown) {
  const blocks = fencedBlocks(markdown);
  const pairs = [];
  for (let i = 0; i < blocks.length; ++i) {
    if (blocks[i].lang !== 'sh') continue;
    const next = blocks[i + 1];
    if (!next || !['http', 'json', 'text'].includes(next.lang)) {
      throw new SetupFailed(`${docPath}:${blocks[i].line}: a sh block must be followed by its output ` +
                            '(a ```http, ```json or ```text block)');
    }
    pairs.push({ command: blocks[i], expected: next });
    ++i;
  }
  return pairs;
}

// ---- Matching ----

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/// `text` against `pattern`, where … matches any run of characters.
function globMatches(pattern, text) {
  if (!pattern.includes(ELLIPSIS)) return pattern === text;
  const regex = new RegExp('^' + pattern.split(ELLIPSIS).map(escapeRegExp).join('[\\s\\S]*') + '$');
  return regex.test(text);
}

const show = (v) => (v === undefined ? 'nothing' : JSON.stringify(v));

/// Why `actual` does not match `expected` (a list of "path: reason"), or [] when it does.
function jsonMismatches(expected, actual, path = '$') {
  if (expected === ELLIPSIS) return [];
  if (typeof expected === 'string') {
    if (typeof actual === 'string' && globMatches(expected, actual)) return [];
    return [`${path}: expected ${show(expected)}, got ${show(actual)}`];
  }
  if (expected === null || typeof expected !== 'object') {
    return expected === actual ? [] : [`${path}: expected ${show(expected)}, got ${show(actual)}`];
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${path}: expected an array, got ${show(actual)}`];
    if (!expected.includes(ELLIPSIS)) {
      if (expected.length !== actual.length) {
        return [`${path}: expected ${expected.length} element(s), got ${actual.length}: ${show(actual)}`];
      }
      return expected.flatMap((e, i) => jsonMismatches(e, actual[i], `${path}[${i}]`));
    }
    return arrayMatches(expected, 0, actual, 0, new Map()) ? []
        : [`${path}: no way to match ${show(actual)} with ${show(expected)} ("…" elements: any number of elements)`];
  }
  if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) {
    return [`${path}: expected an object, got ${show(actual)}`];
  }
  const problems = [];
  for (const [key, value] of Object.entries(expected)) {
    if (key === ELLIPSIS) continue;
    if (!(key in actual)) problems.push(`${path}.${key}: missing (expected ${show(value)})`);
    else problems.push(...jsonMismatches(value, actual[key], `${path}.${key}`));
  }
  if (!(ELLIPSIS in expected)) {
    for (const key of Object.keys(actual)) {
      if (!(key in expected)) problems.push(`${path}.${key}: not in the doc (got ${show(actual[key])})`);
    }
  }
  return problems;
}

/// Arrays with "…" elements (any number of elements), by memoized backtracking.
function arrayMatches(expected, i, actual, j, memo) {
  const key = `${i},${j}`;
  if (memo.has(key)) return memo.get(key);
  let result;
  if (i === expected.length) {
    result = j === actual.length;
  } else if (expected[i] === ELLIPSIS) {
    result = arrayMatches(expected, i + 1, actual, j, memo) ||
             (j < actual.length && arrayMatches(expected, i, actual, j + 1, memo));
  } else {
    result = j < actual.length && jsonMismatches(expected[i], actual[j]).length === 0 &&
             arrayMatches(expected, i + 1, actual, j + 1, memo);
  }
  memo.set(key, result);
  return result;
}

function parseJson(text, what) {
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { error: `${what} is not JSON (${e.message})` };
  }
}

/// One line of text against one expected line: … globs, `data: {json}` compared as JSON.
function lineMatches(pattern, line) {
  if (pattern.startsWith('data: {') && line.startsWith('data: ')) {
    const expected = parseJson(pattern.slice(6), 'the expected data');
    const actual = parseJson(line.slice(6), 'the data');
    if (!expected.error) return !actual.error && jsonMismatches(expected.value, actual.value).length === 0;
  }
  return globMatches(pattern, line);
}

const trimLines = (text) => {
  const lines = text.replace(/\r/g, '').split('\n');
  while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
  while (lines.length && lines[0].trim() === '') lines.shift();
  return lines;
};

/// Text output against expected text: [] or one reason.
function textMismatches(expectedText, actualText) {
  const expected = trimLines(expectedText);
  const actual = trimLines(actualText);
  if (!expected.some((l) => l.trim() === ELLIPSIS)) {
    for (let i = 0; i < Math.max(expected.length, actual.length); ++i) {
      if (i >= expected.length) return [`line ${i + 1}: not in the doc: ${show(actual[i])}`];
      if (i >= actual.length) return [`line ${i + 1}: missing (expected ${show(expected[i])})`];
      if (!lineMatches(expected[i], actual[i])) {
        return [`line ${i + 1}: expected ${show(expected[i])}, got ${show(actual[i])}`];
      }
    }
    return [];
  }
  const memo = new Map();
  const matches = (i, j) => {
    const key = `${i},${j}`;
    if (memo.has(key)) return memo.get(key);
    let result;
    if (i === expected.length) result = j === actual.length;
    else if (expected[i].trim() === ELLIPSIS) result = matches(i + 1, j) || (j < actual.length && matches(i, j + 1));
    else result = j < actual.length && lineMatches(expected[i], actual[j]) && matches(i + 1, j + 1);
    memo.set(key, result);
    return result;
  };
  if (matches(0, 0)) return [];
  // Say which expected line could not be found (in order), to point at the difference.
  let j = 0;
  for (const pattern of expected) {
    if (pattern.trim() === ELLIPSIS) continue;
    while (j < actual.length && !lineMatches(pattern, actual[j])) ++j;
    if (j === actual.length) return [`no line of the output (in order) matches ${show(pattern)}`];
    ++j;
  }
  return ['the lines match, but not in the places the doc shows (check the lines between "…")'];
}

/// Output of `curl -i` against an ```http block.
function httpMismatches(expectedText, actualText) {
  const split = (text) => {
    const lines = text.replace(/\r/g, '').split('\n');
    while (lines.length && lines[0].trim() === '') lines.shift();
    const blank = lines.indexOf('');
    const head = blank < 0 ? lines : lines.slice(0, blank);
    return { status: head[0] ?? '', headers: head.slice(1), body: blank < 0 ? '' : lines.slice(blank + 1).join('\n') };
  };
  const expected = split(expectedText);
  const actual = split(actualText);
  const problems = [];
  if (!globMatches(expected.status, actual.status)) {
    problems.push(`status: expected ${show(expected.status)}, got ${show(actual.status)}`);
  }
  for (const header of expected.headers) {
    const [name, ...rest] = header.split(':');
    const value = rest.join(':').trim();
    const found = actual.headers.filter((h) => h.split(':')[0].toLowerCase() === name.trim().toLowerCase());
    if (!found.some((h) => globMatches(value, h.slice(h.indexOf(':') + 1).trim()))) {
      problems.push(`header ${name}: expected ${show(value)}, got ${found.length ? show(found) : 'no such header'}`);
    }
  }
  const body = expected.body.trim();
  if (body.startsWith('{') || body.startsWith('[')) {
    const e = parseJson(body, 'the expected body');
    if (e.error) return [...problems, `the doc's ${e.error}`];
    const a = parseJson(actual.body, 'the body');
    if (a.error) return [...problems, a.error];
    problems.push(...jsonMismatches(e.value, a.value));
  } else {
    problems.push(...textMismatches(expected.body, actual.body).map((p) => `body: ${p}`));
  }
  return problems;
}

function mismatches(expected, output) {
  if (expected.lang === 'http') return httpMismatches(expected.text, output);
  if (expected.lang === 'json') {
    const e = parseJson(expected.text, 'the expected block');
    if (e.error) return [`the doc's ${e.error}`];
    const a = parseJson(output, 'the output');
    return a.error ? [a.error] : jsonMismatches(e.value, a.value);
  }
  return textMismatches(expected.text, output);
}

// ---- One bash session for all the blocks ----

/// A bash process that evaluates blocks one at a time (NUL-separated on fd 3, so that commands see no
/// stdin), with stderr merged into stdout, and prints a marker line after each.
class Shell {
  constructor(cwd, env) {
    const loop = `exec 3<&0 </dev/null 2>&1
while IFS= read -r -d '' __ferry_doc_block <&3; do
  eval "$__ferry_doc_block"
  printf '\\n%s\\n' '${END_MARKER}'
done`;
    this.process = spawn('bash', ['--noprofile', '--norc', '-c', loop], { cwd, env, stdio: ['pipe', 'pipe', 'inherit'] });
    this.buffer = '';
    this.waiting = null;
    this.process.stdout.setEncoding('utf8');
    this.process.stdout.on('data', (chunk) => {
      this.buffer += chunk;
      this.deliver();
    });
    this.process.on('exit', () => {
      this.exited = true;
      this.deliver();
    });
  }

  deliver() {
    if (!this.waiting) return;
    const at = this.buffer.indexOf(`\n${END_MARKER}\n`);
    if (at >= 0) {
      const output = this.buffer.slice(0, at);
      this.buffer = this.buffer.slice(at + END_MARKER.length + 2);
      const { resolve } = this.waiting;
      this.waiting = null;
      resolve({ output });
    } else if (this.exited) {
      const { resolve } = this.waiting;
      this.waiting = null;
      resolve({ output: this.buffer, error: 'bash exited' });
    }
  }

  /// Runs `script`; resolves to {output} or {output, error} (timeout, or bash gone).
  run(script, timeoutMs = BLOCK_TIMEOUT_MS) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        resolve({ output: this.buffer, error: `no end after ${timeoutMs} ms` });
        this.process.kill('SIGKILL');
      }, timeoutMs);
      this.waiting = { resolve: (r) => { clearTimeout(timer); resolve(r); } };
      this.process.stdin.write(script + '\n\0');
      this.deliver();
    });
  }

  close() {
    if (!this.exited) this.process.kill('SIGKILL');
  }
}

/// The expected block with $NAME replaced by the shell variables' values.
async function substituteVariables(text, shell) {
  const names = [...new Set([...text.matchAll(/\$([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]))];
  for (const name of names) {
    const { output, error } = await shell.run(`printf '%s' "$${name}"`);
    if (error) throw new SetupFailed(`reading $${name} from the shell: ${error}`);
    text = text.replaceAll(`$${name}`, output);
  }
  return text;
}

// ---- Main ----

const indent = (text) => text.split('\n').map((l) => `    ${l}`).join('\n');
const clip = (text, lines = 80) => {
  const all = text.split('\n');
  return all.length <= lines ? text : [...all.slice(0, lines), `… (${all.length - lines} more lines)`].join('\n');
};

async function main() {
  for (const tool of ['curl', 'jq', 'bash']) {
    try {
      execFileSync('bash', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new SetupFailed(`${tool} is missing: run scripts/setup.sh`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'ferry-http-doc-'));
  const stateDir = join(dir, 'state');
  let server = null;
  let log = () => '';
  let shell = null;
  const cleanUp = async () => {
    shell?.close();
    if (server) await server.stop();
    rmSync(dir, { force: true, recursive: true });
  };
  process.on('SIGINT', () => cleanUp().then(() => process.exit(130)));
  process.on('SIGTERM', () => cleanUp().then(() => process.exit(143)));

  let failures = 0;
  let total = 0;
  try {
    const markdown = readFileSync(docPath, 'utf8').replaceAll('/tmp/ferry-doc-', join(dir, 'scratch-'));
    const pairs = examples(markdown);
    total = pairs.length;
    if (total === 0) throw new SetupFailed(`${docPath} has no sh examples`);
    server = await startDeployedServer({ ferryCli, appBinary, app: 'demo', stateDir, extraArgs: ['--drain-timeout', '1000'] })
      .catch((e) => { throw new SetupFailed(e.message); });
    log = server.log;
    const { address: hostPort, token } = server;
    // (No proxy for the server on loopback, whatever the environment says.)
    shell = new Shell(dir, { ...process.env, FERRY_URL: `http://${hostPort}`, FERRY_TOKEN: token,
                             no_proxy: '127.0.0.1,localhost', NO_PROXY: '127.0.0.1,localhost' });
    for (const [n, { command, expected }] of pairs.entries()) {
      const { output, error } = await shell.run(command.text);
      const problems = error ? [error] : mismatches({ ...expected, text: await substituteVariables(expected.text, shell) }, output);
      const title = `example ${n + 1} (${docPath}:${command.line})`;
      if (problems.length === 0) {
        console.log(`ok   ${title}: ${command.text.split('\n').at(-1).slice(0, 100)}`);
        continue;
      }
      ++failures;
      console.log(`FAIL ${title}\n  command:\n${indent(command.text)}\n  mismatches:\n${indent(problems.join('\n'))}\n` +
                  `  expected (${docPath}:${expected.line}):\n${indent(expected.text)}\n  got:\n${indent(clip(output))}`);
      if (error) break;  // the shell is gone
    }
    if (failures) console.log(`server log (last lines):\n${indent(clip(log().split('\n').slice(-40).join('\n')))}`);
  } catch (e) {
    if (!(e instanceof SetupFailed) && !e.stderr) throw e;
    console.error(`setup failed: ${e.message}${e.stderr ? `\n${e.stderr}` : ''}\nserver log:\n${log()}`);
    failures = failures || 1;
  } finally {
    await cleanUp();
  }
  console.log(failures ? `${failures} of ${total} example(s) do not reply as documented` :
                         `all ${total} examples reply as documented`);
  return failures ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
