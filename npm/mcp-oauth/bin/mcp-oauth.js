#!/usr/bin/env node
// Runs the prebuilt mcp-oauth binary of this platform, which npm installed as one of the
// optional dependencies (each declares its os and cpu, so npm fetches only the matching one).
// The binary gets this process's standard streams as they are: nothing is copied through Node.
'use strict';

const { spawn } = require('node:child_process');

const exe = process.platform === 'win32' ? 'mcp-oauth.exe' : 'mcp-oauth';
const platform = `${process.platform}-${process.arch}`;

function binary() {
  // For a binary built by hand (cargo build --profile dist ...); said, so an inherited
  // variable does not swap the binary unseen.
  if (process.env.MCP_OAUTH_BINARY) {
    process.stderr.write(`mcp-oauth: running ${process.env.MCP_OAUTH_BINARY} (MCP_OAUTH_BINARY)\n`);
    return process.env.MCP_OAUTH_BINARY;
  }
  try {
    return require.resolve(`@tower-mcp-oauth/${platform}/bin/${exe}`);
  } catch {
    process.stderr.write(
      `mcp-oauth: no prebuilt binary for ${platform} was installed (npm skips optional ` +
        `dependencies with --no-optional or --omit=optional). Install one with ` +
        `\`cargo install --git https://github.com/tower-mcp-oauth/tower-mcp-oauth mcp-oauth\` and run mcp-oauth directly.\n`,
    );
    process.exit(1);
  }
}

const child = spawn(binary(), process.argv.slice(2), { stdio: 'inherit', windowsHide: true });

// The desktop app stops its server by signalling this process: pass it on, so the bridge
// stops in order (it stores a token being refreshed, then exits 0).
// The bridge stops in order on SIGINT and SIGTERM; a hang-up means the same here.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (child.exitCode === null) child.kill(signal === 'SIGHUP' ? 'SIGTERM' : signal);
  });
}

// npx starts this launcher through a shell, which dies of a signal without passing it on.
// Orphaned, the launcher is adopted by another parent: stop the bridge then, as the signal
// meant to.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent && child.exitCode === null) child.kill('SIGTERM');
}, 500).unref();

child.on('error', (error) => {
  process.stderr.write(`mcp-oauth: cannot start ${exe}: ${error.message}\n`);
  process.exit(1);
});

child.on('exit', (code, signal) => {
  process.exit(code ?? (signal ? 1 : 0));
});
