// Interop: the official MCP TypeScript SDK client against examples/mcp_oauth_server.rs.
// Discovery, dynamic registration, PKCE authorization (the server auto-approves), the code
// exchange, tool calls over Streamable HTTP, a refresh after the access token is refused, and
// the same tokens over legacy HTTP+SSE.
//
//   node ts_sdk_client.mjs MCP_URL SSE_URL
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const [mcpUrl, sseUrl] = process.argv.slice(2);
const redirectUrl = 'http://127.0.0.1:9/callback';

class Provider {
  constructor() {
    this.code = undefined;
    this.savedTokens = [];
  }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: 'TypeScript SDK interop',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() { return 'ts-sdk-state'; }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.current; }
  saveTokens(tokens) { this.current = tokens; this.savedTokens.push(tokens); }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
  // The "browser": follow the authorization URL once and read the code off the redirect.
  async redirectToAuthorization(url) {
    const response = await fetch(url, { redirect: 'manual' });
    assert.equal(response.status, 302, `authorize answered ${response.status}`);
    const location = new URL(response.headers.get('location'));
    assert.equal(location.origin + location.pathname, redirectUrl);
    assert.equal(location.searchParams.get('state'), 'ts-sdk-state');
    assert.equal(location.searchParams.get('iss'), new URL(mcpUrl).origin);
    this.code = location.searchParams.get('code');
    assert.ok(this.code, 'a code in the redirect');
  }
}

function text(result) {
  return result.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
}

const provider = new Provider();
let client = new Client({ name: 'ts-sdk-interop', version: '1.0.0' });
let transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
try {
  await client.connect(transport);
  assert.fail('the first connection should need authorization');
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
}
await transport.finishAuth(provider.code);
console.log(`registered ${provider.client.client_id} and exchanged the code`);

client = new Client({ name: 'ts-sdk-interop', version: '1.0.0' });
transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
await client.connect(transport);
const tools = (await client.listTools()).tools.map((t) => t.name).sort();
assert.deepEqual(tools, ['add', 'echo', 'whoami']);
assert.equal(text(await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })), '42');
const whoami = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
assert.equal(whoami.subject, 'demo-user');
assert.equal(whoami.client_id, provider.client.client_id);
console.log('Streamable HTTP: tools listed, add and whoami called');

// A refused access token: the SDK refreshes with the refresh token and goes on.
const before = provider.current;
provider.current = { ...before, access_token: 'not-a-valid-token' };
await client.close();
client = new Client({ name: 'ts-sdk-interop', version: '1.0.0' });
transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
await client.connect(transport);
assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'refreshed' } })), 'refreshed');
assert.notEqual(provider.current.access_token, before.access_token);
assert.notEqual(provider.current.refresh_token, before.refresh_token, 'the refresh token rotated');
console.log('refresh: new access token, rotated refresh token');
await client.close();

client = new Client({ name: 'ts-sdk-interop', version: '1.0.0' });
await client.connect(new SSEClientTransport(new URL(sseUrl), { authProvider: provider }));
assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'over sse' } })), 'over sse');
console.log('HTTP+SSE: echo called with the same tokens');
await client.close();
console.log('interop: ok');
