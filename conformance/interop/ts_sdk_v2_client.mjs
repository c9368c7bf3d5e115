// Interop at MCP 2026-07-28: the official TypeScript SDK v2 client (@modelcontextprotocol/client)
// against examples/mcp_oauth_server.rs. Authorization as with v1, then tool calls with the
// revision pinned at 2026-07-28 (no initialize, _meta on every request), negotiated by probing
// ('auto', which must find 2026-07-28), a refresh after the access token is refused, and the
// 2025-11-25 handshake ('legacy') against the same server.
//
//   node ts_sdk_v2_client.mjs MCP_URL
import assert from 'node:assert/strict';
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import { Provider, text } from './provider.mjs';

const [mcpUrl] = process.argv.slice(2);
const provider = new Provider(mcpUrl, 'TypeScript SDK v2 interop');

function connect(mode) {
  const client = new Client(
    { name: 'ts-sdk-v2-interop', version: '1.0.0' },
    { versionNegotiation: { mode } },
  );
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  return { client, transport, connected: client.connect(transport) };
}

const pinned = { pin: '2026-07-28' };
let { client, transport, connected } = connect(pinned);
try {
  await connected;
  assert.fail('the first connection should need authorization');
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
}
await transport.finishAuth(provider.callbackParams);
console.log(`registered ${provider.client.client_id} and exchanged the code`);

({ client, connected } = connect(pinned));
await connected;
assert.equal(client.getNegotiatedProtocolVersion(), '2026-07-28');
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
await client.close();
console.log('2026-07-28 (pinned): tools listed, add and whoami called');

({ client, connected } = connect('auto'));
await connected;
assert.equal(client.getNegotiatedProtocolVersion(), '2026-07-28', 'the probe finds 2026-07-28');
const before = provider.current;
provider.current = { ...before, access_token: 'not-a-valid-token' };
assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'refreshed' } })), 'refreshed');
assert.notEqual(provider.current.access_token, before.access_token);
assert.notEqual(provider.current.refresh_token, before.refresh_token, 'the refresh token rotated');
await client.close();
console.log('2026-07-28 (negotiated): a refused token refreshed, the refresh token rotated');

({ client, connected } = connect('legacy'));
await connected;
assert.equal(client.getNegotiatedProtocolVersion(), '2025-11-25');
assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'legacy' } })), 'legacy');
await client.close();
console.log('2025-11-25 (initialize): echo called');
console.log('interop v2: ok');
