// Starts the echo example (ECHO_BIN) on 127.0.0.1, port 0, and reads the
// port from its "listening on http://HOST:PORT" line. stop() kills it
// (SIGTERM, then SIGKILL) and resolves with its exit code and stderr.
import { spawn } from 'node:child_process';

export async function startEcho({ timeoutMs = 20000 } = {}) {
  const bin = process.env.ECHO_BIN;
  if (!bin) throw new Error('ECHO_BIN is not set (path of the echo example)');
  const child = spawn(bin, ['0'], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.setEncoding('utf8');
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  // Never leave the server behind, even if the test process dies.
  const onExit = () => { try { child.kill('SIGKILL'); } catch {} };
  process.on('exit', onExit);

  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`echo did not report listening in ${timeoutMs} ms; ` +
                       `stdout=${JSON.stringify(stdout)} stderr=${JSON.stringify(stderr)}`));
    }, timeoutMs);
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /listening on http:\/\/([^\s:]+):(\d+)/.exec(stdout);
      if (m) { clearTimeout(timer); resolve(Number(m[2])); }
    });
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`echo exited early (code ${code}, signal ${signal}); stderr=${stderr}`));
    });
  }).catch((e) => { onExit(); throw e; });

  let stopped = null;
  return {
    port,
    child,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    // Whether the server is still running (a crash is a bug in its own right).
    alive: () => child.exitCode === null && child.signalCode === null,
    stderr: () => stderr,
    stop() {
      if (stopped) return stopped;
      stopped = (async () => {
        const wasAlive = child.exitCode === null && child.signalCode === null;
        if (wasAlive) child.kill('SIGTERM');
        const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch {} }, 3000);
        const r = await exited;
        clearTimeout(t);
        process.off('exit', onExit);
        return { ...r, wasAlive, stderr };
      })();
      return stopped;
    },
  };
}
