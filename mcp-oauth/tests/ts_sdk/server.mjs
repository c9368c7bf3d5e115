// The MCP TypeScript SDK's own server on 127.0.0.1: Streamable HTTP at /mcp and the legacy
// HTTP+SSE transport at /sse (its messages at /messages), as servers that mcp-remote's README
// configurations point at serve them. No authorization: the `headers` tool says which of the
// static headers a configuration sets arrived. Prints `BASE http://127.0.0.1:PORT` when ready;
// exits when its standard input closes.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

function tools() {
  const server = new McpServer({ name: 'ts-sdk-server', version: '1.0.0' });
  server.registerTool(
    'add',
    { description: 'Adds two numbers', inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
  );
  server.registerTool(
    'headers',
    { description: 'The static headers this request carried' },
    async (extra) => {
      const seen = extra.requestInfo?.headers ?? {};
      const picked = { authorization: seen.authorization ?? null, 'x-tenant': seen['x-tenant'] ?? null };
      return { content: [{ type: 'text', text: JSON.stringify(picked) }] };
    },
  );
  server.registerTool(
    'delete_note',
    { description: 'Deletes a note (for --ignore-tool)' },
    async () => ({ content: [{ type: 'text', text: 'deleted' }] }),
  );
  return server;
}

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

const streamable = new Map();
const sse = new Map();

const http = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/mcp') {
      const parsed = req.method === 'POST' ? await body(req) : undefined;
      const id = req.headers['mcp-session-id'];
      let transport = id ? streamable.get(id) : undefined;
      if (!transport && req.method === 'POST' && isInitializeRequest(parsed)) {
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (sessionId) => streamable.set(sessionId, transport),
        });
        transport.onclose = () => streamable.delete(transport.sessionId);
        await tools().connect(transport);
      }
      if (!transport) {
        res.writeHead(id ? 404 : 400).end();
        return;
      }
      await transport.handleRequest(req, res, parsed);
    } else if (url.pathname === '/sse' && req.method === 'GET') {
      const transport = new SSEServerTransport('/messages', res);
      sse.set(transport.sessionId, transport);
      res.on('close', () => sse.delete(transport.sessionId));
      await tools().connect(transport);
    } else if (url.pathname === '/messages' && req.method === 'POST') {
      const transport = sse.get(url.searchParams.get('sessionId'));
      if (!transport) {
        res.writeHead(404).end();
        return;
      }
      await transport.handlePostMessage(req, res, await body(req));
    } else {
      res.writeHead(404).end();
    }
  } catch (error) {
    if (!res.headersSent) res.writeHead(500);
    res.end(String(error));
  }
});

http.listen(0, '127.0.0.1', () => {
  console.log(`BASE http://127.0.0.1:${http.address().port}`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
