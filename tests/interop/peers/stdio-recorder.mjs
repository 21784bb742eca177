// Runs a stdio MCP server unchanged and records every line it receives on stdin, so the runner
// can see what reached the server behind `mcp-oauth gateway` (and what never did):
//
//   node peers/stdio-recorder.mjs RECORD_FILE CMD ARGS…
//
// RECORD_FILE gets {"event":"start","pid":…} (the server's pid) and then one
// {"event":"message","message":{…}} per JSON-RPC message, appended before the line is passed
// on. stdout and stderr are the server's own. Exits with the server's status; when stdin closes,
// the server's stdin is closed too. The gateway stops the recorder and the server together (one
// process group).
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const [recordFile, command, ...args] = process.argv.slice(2);
if (!recordFile || !command) {
  console.error('usage: node stdio-recorder.mjs RECORD_FILE CMD ARGS…');
  process.exit(2);
}
const child = spawn(command, args, { stdio: ['pipe', 'inherit', 'inherit'] });
appendFileSync(recordFile, JSON.stringify({ event: 'start', pid: child.pid, command }) + '\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  let message;
  try { message = JSON.parse(line); } catch { message = { unparsed: line }; }
  appendFileSync(recordFile, JSON.stringify({ event: 'message', message }) + '\n');
  child.stdin.write(line + '\n');
}).on('close', () => child.stdin.end());
child.stdin.on('error', () => {}); // the server exited: its exit status ends us below
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
