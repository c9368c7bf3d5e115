// Runs 0.2.0-alpha.12 `server` scenarios against examples/mcp_oauth_server.rs behind
// RequireBearer. The suite cannot send a token, so this script signs in at the embedded
// authorization server (authorization code with PKCE; the server runs with --auto-approve) and
// puts a loopback proxy in front of the MCP endpoint that adds the token and changes nothing
// else (the Host header included, which the DNS-rebinding scenario depends on).
//
//   node -r ./loopback.cjs server.mjs <suite cli> <issuer> <mcp url> <output dir> <baseline>
//
// Exits non-zero when a scenario fails outside the baseline, or a baseline entry passes.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';

const [cli, issuer, mcpUrl, out, baseline] = process.argv.slice(2);
const SCENARIOS = [
  'server-stateless',
  'dns-rebinding-protection',
  'http-header-validation',
  'caching',
  'tools-list',
];

async function signIn() {
  const redirectUri = 'http://127.0.0.1:9/callback';
  const registered = await fetch(`${issuer}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'conformance server suite',
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    }),
  }).then((r) => r.json());
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const authorize = new URL(`${issuer}/authorize`);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: registered.client_id,
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: randomBytes(8).toString('hex'),
    scope: 'mcp:tools',
  });
  const approved = await fetch(authorize, { redirect: 'manual' });
  const code = new URL(approved.headers.get('location')).searchParams.get('code');
  if (!code) throw new Error(`no code: ${approved.headers.get('location')}`);
  const tokens = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: registered.client_id,
    }),
  }).then((r) => r.json());
  if (!tokens.access_token) throw new Error(`no token: ${JSON.stringify(tokens)}`);
  return tokens.access_token;
}

const token = await signIn();
const target = new URL(mcpUrl);
const proxy = http.createServer((request, response) => {
  const upstream = http.request(
    {
      host: target.hostname,
      port: target.port,
      path: request.url,
      method: request.method,
      headers: { ...request.headers, authorization: `Bearer ${token}` },
    },
    (answer) => {
      response.writeHead(answer.statusCode, answer.headers);
      answer.pipe(response);
    },
  );
  upstream.on('error', (error) => {
    response.writeHead(502);
    response.end(String(error));
  });
  request.pipe(upstream);
});
await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const proxied = `http://127.0.0.1:${proxy.address().port}${target.pathname}`;

let failed = 0;
for (const scenario of SCENARIOS) {
  const code = await new Promise((resolve) => {
    const suite = spawn(
      process.execPath,
      ['-r', new URL('./loopback.cjs', import.meta.url).pathname, cli, 'server',
        '--url', proxied, '--scenario', scenario, '--expected-failures', baseline,
        '-o', out],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let log = '';
    suite.stdout.on('data', (chunk) => { log += chunk; });
    suite.on('exit', (status) => {
      const summary = log.split('\n').filter((l) => /Passed:|Unexpected|stale|Expected failures/i.test(l));
      console.log(`${scenario}: exit ${status}; ${summary.join(' | ').replace(/\x1b\[[0-9;]*m/g, '')}`);
      resolve(status ?? 1);
    });
  });
  if (code !== 0) failed += 1;
}
proxy.close();
process.exit(failed === 0 ? 0 : 1);
