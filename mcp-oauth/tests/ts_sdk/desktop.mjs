// The MCP TypeScript SDK's client as a desktop host runs it: over stdio, at 2025-11-25, to
// `mcp-oauth URL --protocol auto` (started with the environment this process has). It lists and
// calls tools, confirms the elicitation a call asks for, and waits for a tool-list change. Prints
// one line per step; exits 0 when every step held.
//
//   node desktop.mjs MCP_OAUTH_BINARY URL
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  ElicitRequestSchema,
  LATEST_PROTOCOL_VERSION,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const [binary, url] = process.argv.slice(2);
const transport = new StdioClientTransport({
  command: binary,
  args: [url, '--protocol', 'auto'],
  env: process.env,
  stderr: 'inherit',
});
const client = new Client(
  { name: 'ts-sdk-desktop', version: '1.0.0' },
  { capabilities: { elicitation: { form: {} } } },
);
const asked = [];
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  asked.push(request.params.message);
  return { action: 'accept', content: { confirmed: true } };
});
let listChanged;
const changed = new Promise((resolve) => {
  listChanged = resolve;
});
client.setNotificationHandler(ToolListChangedNotificationSchema, () => listChanged());

// The revision agreed on, as the client tells its transport (not the SDK's constant).
let agreed;
transport.setProtocolVersion = (version) => {
  agreed = version;
};
await client.connect(transport);
assert.equal(LATEST_PROTOCOL_VERSION, '2025-11-25', 'the SDK asks for 2025-11-25');
const server = client.getServerVersion();
console.log(`connected to ${server.name} at ${agreed}`);

const names = (await client.listTools()).tools.map((tool) => tool.name).sort();
assert.deepEqual(names, ['answer', 'change', 'delete']);
console.log(`tools ${names.join(' ')}`);

const text = (result) => result.content.map((block) => block.text).join('');
assert.equal(text(await client.callTool({ name: 'answer', arguments: {} })), '42');
console.log('answer 42');

assert.equal(text(await client.callTool({ name: 'delete', arguments: {} })), 'deleted');
assert.deepEqual(asked, ['Delete it?']);
console.log('elicitation answered');

await client.callTool({ name: 'change', arguments: {} });
let timer;
await Promise.race([
  changed,
  new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('no list change in 10 s')), 10_000);
  }),
]);
clearTimeout(timer);
console.log('list change heard');
await client.close();
