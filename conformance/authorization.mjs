// Runs the 0.2.0-alpha.12 `authorization` suite against the embedded authorization server of
// examples/mcp_oauth_server.rs, acting as the user: the suite prints an authorization URL and
// waits for its callback; this script opens the URL, approves on the consent page (cookie and
// CSRF token, as a browser would), and follows the redirect to the suite's callback.
//
//   node -r ./loopback.cjs authorization.mjs <suite cli> <issuer> <output dir>
//
// Exits with the suite's status.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

const [cli, issuer, out] = process.argv.slice(2);
// A free loopback port for the suite's callback server, known before registering the client.
const callbackPort = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});
const redirectUri = `http://127.0.0.1:${callbackPort}/callback`;

// A public client registered for the suite's callback, through dynamic registration.
const registration = await fetch(`${issuer}/register`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    client_name: 'conformance authorization suite',
    redirect_uris: [redirectUri],
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    application_type: 'native',
  }),
});
if (registration.status !== 201) {
  console.error(`registration failed: ${registration.status} ${await registration.text()}`);
  process.exit(1);
}
const { client_id: clientId } = await registration.json();

function attr(html, pattern) {
  const match = html.match(pattern);
  if (!match) throw new Error(`the consent page has no ${pattern}`);
  return match[1].replaceAll('&amp;', '&');
}

// The user's part: open the page, approve, follow the redirect to the suite's callback.
async function approve(url) {
  const page = await fetch(url, { redirect: 'manual' });
  if (page.status !== 200) throw new Error(`the authorization URL answered ${page.status}`);
  const cookie = page.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const html = await page.text();
  const action = new URL(attr(html, /<form method="post" action="([^"]+)"/), url);
  const form = new URLSearchParams({
    request: attr(html, /name="request" value="([^"]+)"/),
    csrf: attr(html, /name="csrf" value="([^"]+)"/),
    decision: 'approve',
  });
  const answer = await fetch(action, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie,
      origin: new URL(issuer).origin,
    },
    body: form,
  });
  const location = answer.headers.get('location');
  if (!location) throw new Error(`the consent form answered ${answer.status} without a redirect`);
  await fetch(location);
}

const suite = spawn(
  process.execPath,
  ['-r', new URL('./loopback.cjs', import.meta.url).pathname, cli, 'authorization',
    '--url', issuer, '--client-id', clientId, '-p', String(callbackPort), '-o', out],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
let buffered = '';
let approving = null;
suite.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buffered += chunk;
  const url = buffered.match(/^(https?:\/\/\S+\/authorize\?\S+)$/m);
  if (url && !approving) {
    approving = approve(url[1]).catch((error) => {
      console.error(`approving failed: ${error.message}`);
    });
  }
});
suite.on('exit', (code) => process.exit(code ?? 1));
