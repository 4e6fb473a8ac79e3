// A scripted MCP client for Airlock's tests, on the official TypeScript MCP SDK
// (@modelcontextprotocol/sdk, pinned in package.json here; `scripts/test` installs it into
// $AIRLOCK_TEST_NODE, default /var/tmp/airlock-test-node, and this script loads the SDK from
// $AIRLOCK_TEST_NODE/node_modules wherever the script itself lives).
//
//   node mcp_client.mjs URL TOKEN MODE STEPS_JSON
//
// Same CLI and output as tests/clients/python/mcp_client.py. URL is the streamable HTTP
// endpoint, or "stdio:<command line>" to spawn a stdio server (split on whitespace, given
// this process's whole environment; TOKEN is then ignored). TOKEN is sent as
// "Authorization: Bearer TOKEN" ("none": no Authorization header). MODE is accepted and
// ignored: this SDK (1.x) only knows the initialize handshake (it negotiates 2025-11-25,
// with Mcp-Session-Id when the server issues one). TLS verification: the caller sets
// NODE_TLS_REJECT_UNAUTHORIZED=0 in this process's environment (node prints a warning about
// it on stderr). Each step may take up to 300 s unless it says otherwise (the SDK's default is 60 s).
//
// STEPS_JSON is a JSON list; each step gives one result object, in order:
//   {"op":"list_tools"}                    -> {"tools":[{"name","description","inputSchema"}...]}
//   {"op":"call","name":N,"args":{...},"progress":bool}
//                                          -> {"is_error":bool,"text":"joined text content",
//                                              "structured":{...}|null,
//                                              "progress":[{"progress","total","message"}...]}
//   {"op":"list_resources"}                -> {"resources":[uri...]}
//   {"op":"read","uri":U}                  -> {"contents":[{"uri","text","mimeType"}...]}
//   {"op":"list_prompts"}                  -> {"prompts":[name...]}
//   {"op":"prompt","name":N,"args":{...}}  -> {"messages":[text...]}
// Any step may carry "timeout": seconds (default 300) after which it fails. This SDK does not
// fail a request whose SSE stream breaks before the answer (it retries the stream, then waits
// for the answer until the timeout), so give a short timeout where the server may die.
// A step that throws gives {"error":"<ErrorType>: message","code":<JSON-RPC code, only for
// McpError>} and the script goes on with the next step (on the same connection: this SDK
// does not tear a connection down when one request fails).
//
// Prints ONE JSON object on stdout: {"protocol_version":"...","steps":[...]} and exits 0;
// when connecting fails it prints {"error":"..."} and exits 1.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const base = process.env.AIRLOCK_TEST_NODE || '/var/tmp/airlock-test-node';
const sdk = (sub) => import(pathToFileURL(join(base, 'node_modules/@modelcontextprotocol/sdk/dist/esm', sub)).href);

const [url, token, , stepsJson] = process.argv.slice(2);
if (stepsJson === undefined) {
  process.stderr.write('usage: node mcp_client.mjs URL TOKEN MODE STEPS_JSON\n');
  process.exit(2);
}
const steps = JSON.parse(stepsJson);
const { Client } = await sdk('client/index.js');
const { McpError } = await sdk('types.js');

const why = (e) => {
  const cause = e?.cause ? ` (cause: ${e.cause.code ?? e.cause.constructor?.name}: ${e.cause.message ?? e.cause})` : '';
  return `${e?.constructor?.name || typeof e}: ${e?.message ?? e}${cause}`.slice(0, 500);
};
const textOf = (b) => (b && typeof b.text === 'string' ? b.text : '');

async function step(c, s) {
  // A per-step "timeout" (seconds, default 300) bounds each request; the SDK's own default is 60 s.
  const opts = { timeout: (s.timeout ?? 300) * 1000 };
  switch (s.op) {
    case 'list_tools': {
      const r = await c.listTools(undefined, opts);
      return { tools: r.tools.map((t) => ({ name: t.name, description: t.description ?? null, inputSchema: t.inputSchema })) };
    }
    case 'call': {
      const seen = [];
      const o = { ...opts };
      if (s.progress) {
        o.onprogress = (p) => seen.push({ progress: p.progress, total: p.total ?? null, message: p.message ?? null });
      }
      const r = await c.callTool({ name: s.name, arguments: s.args || {} }, undefined, o);
      return {
        is_error: Boolean(r.isError),
        text: (r.content || []).map(textOf).join('\n'),
        structured: r.structuredContent ?? null,
        progress: seen,
      };
    }
    case 'list_resources': {
      const r = await c.listResources(undefined, opts);
      return { resources: r.resources.map((x) => x.uri) };
    }
    case 'read': {
      const r = await c.readResource({ uri: s.uri }, opts);
      return { contents: r.contents.map((x) => ({ uri: x.uri, text: x.text ?? null, mimeType: x.mimeType ?? null })) };
    }
    case 'list_prompts': {
      const r = await c.listPrompts(undefined, opts);
      return { prompts: r.prompts.map((p) => p.name) };
    }
    case 'prompt': {
      const r = await c.getPrompt({ name: s.name, arguments: s.args || {} }, opts);
      return { messages: r.messages.map((m) => textOf(m.content)) };
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(s.op)}`);
  }
}

let transport;
if (url.startsWith('stdio:')) {
  const { StdioClientTransport } = await sdk('client/stdio.js');
  const [command, ...args] = url.slice('stdio:'.length).trim().split(/\s+/);
  transport = new StdioClientTransport({ command, args, env: { ...process.env }, stderr: 'inherit' });
} else {
  const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
  const headers = token === 'none' ? {} : { Authorization: `Bearer ${token}` };
  transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
}
// The SDK hands the negotiated version to HTTP transports only; catch it for stdio too.
let version = null;
const setVersion = transport.setProtocolVersion?.bind(transport);
transport.setProtocolVersion = (v) => {
  version = v;
  setVersion?.(v);
};
const client = new Client({ name: 'airlock-test-node', version: '1.0.0' });
// Transport trouble that does not fail a request (e.g. an SSE stream that broke before its
// answer: the SDK retries it, then only reports here) goes to stderr.
client.onerror = (e) => process.stderr.write(`mcp_client.mjs: transport error: ${why(e)}\n`);
try {
  await client.connect(transport, { timeout: 300000 });
} catch (e) {
  process.stdout.write(JSON.stringify({ error: why(e) }) + '\n');
  process.exit(1);
}
const out = [];
for (const s of steps) {
  try {
    out.push(await step(client, s));
  } catch (e) {
    out.push(e instanceof McpError ? { error: why(e), code: e.code } : { error: why(e) });
  }
}
process.stdout.write(JSON.stringify({ protocol_version: version, steps: out }) + '\n');
await client.close().catch(() => {});
process.exit(0);
