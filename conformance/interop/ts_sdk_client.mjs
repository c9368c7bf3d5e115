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
import { Provider, text } from './provider.mjs';

const [mcpUrl, sseUrl] = process.argv.slice(2);
const provider = new Provider(mcpUrl, 'TypeScript SDK interop');
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
assert.deepEqual(tools, ['add', 'crm_contacts', 'demo_github_login', 'echo', 'server_stats', 'whoami']);
assert.equal(text(await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })), '42');
const whoami = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
assert.equal(whoami.subject, 'demo-user');
assert.equal(whoami.client_id, provider.client.client_id);
// The demo CRM, called by the server as this user (token exchange): the TypeScript client
// needs nothing of its own for it.
const crm = JSON.parse(text(await client.callTool({ name: 'crm_contacts', arguments: {} })));
assert.equal(crm.owner, 'demo-user');
assert.deepEqual(crm.scopes, ['crm:read']);
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
