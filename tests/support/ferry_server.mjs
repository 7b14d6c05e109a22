// A real `ferry server` for the Node tests (tests/browser, tests/docs): started on a free port with its
// own state directory, with an app binary deployed on it, and stopped (SIGTERM, then SIGKILL) at the end.
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const START_TIMEOUT_MS = 20_000;  // for the server's "listening on" line

/// Starts `ferry server --port 0 --state-dir STATE_DIR [extraArgs]` and deploys `appBinary` as `app`.
/// Resolves to {address ("host:port"), token, log() (what the server wrote), stop()}; on failure, stops
/// the server and rejects with an Error that includes the server's log.
export async function startDeployedServer({ ferryCli, appBinary, app, stateDir, extraArgs = [] }) {
  const server = spawn(ferryCli, ['server', '--port', '0', '--state-dir', stateDir, ...extraArgs],
                       { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const stop = () => {
    if (server.exitCode !== null || server.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
      server.on('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      server.kill('SIGTERM');
    });
  };
  try {
    const address = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ferry server did not say where it listens:\n${log}`)),
                               START_TIMEOUT_MS);
      const onData = (chunk) => {
        log += chunk;
        const m = log.match(/listening on (\S+):(\d+)/);
        if (m) {
          clearTimeout(timer);
          resolve(`${m[1]}:${m[2]}`);
        }
      };
      server.stdout.on('data', onData);
      server.stderr.on('data', onData);
      server.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`ferry server exited (${signal || code}) before listening:\n${log}`));
      });
    });
    await promisify(execFile)(ferryCli, ['deploy', '--name', app, appBinary, '--server', address, '--state-dir', stateDir])
      .catch((e) => { throw new Error(`ferry deploy failed: ${e.stderr || e.message}`); });
    const token = readFileSync(join(stateDir, 'token'), 'utf8').trim();
    return { address, token, log: () => log, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
