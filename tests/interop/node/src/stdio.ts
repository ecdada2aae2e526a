// Imported first by peer.ts: stdout carries the JSON-lines protocol only, so every console
// method (which livekit-client's logger binds to when it is created) is pointed at stderr.
import { Console } from 'node:console';

const toStderr = new Console({ stdout: process.stderr, stderr: process.stderr });
const methods = ['log', 'info', 'debug', 'warn', 'error', 'trace', 'dir', 'table'] as const;
for (const name of methods) {
  (console as unknown as Record<string, unknown>)[name] = toStderr[name].bind(toStderr);
}
