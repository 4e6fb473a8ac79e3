-- wrk script for bench/mcp: one MCP tools/call per request (2026-07-28 protocol,
-- stateless, JSON answers), every answer checked.
--   MCP_TOOL    tool name (add)
--   MCP_ARGS    its arguments as JSON ({"a":2,"b":40})
--   MCP_TOKEN   bearer token for Authorization (unset: no header)
--   MCP_EXPECT  a string every answer's body must contain ("text":"42")
--   MCP_REJECT  a string no answer's body may contain (unset: no check)
-- done() prints one line: "MCPCHECK responses=N non200=N bad=N".
local tool = os.getenv("MCP_TOOL") or "add"
local args = os.getenv("MCP_ARGS") or '{"a":2,"b":40}'
local token = os.getenv("MCP_TOKEN")
local expect = os.getenv("MCP_EXPECT") or '"text":"42"'
local reject = os.getenv("MCP_REJECT")
if reject == "" then reject = nil end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = tool
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool ..
  '","arguments":' .. args ..
  ',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",' ..
  '"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},' ..
  '"io.modelcontextprotocol/clientCapabilities":{}}}}'

local threads = {}
function setup(thread) table.insert(threads, thread) end

responses, non200, bad, sample = 0, 0, 0, ""
function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 then non200 = non200 + 1 end
  if not string.find(body, expect, 1, true) or (reject and string.find(body, reject, 1, true)) then
    bad = bad + 1
    if sample == "" then sample = status .. " " .. string.sub(body, 1, 300) end
  end
end

function done(summary, latency, requests)
  local r, n, b, s = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    r = r + t:get("responses"); n = n + t:get("non200"); b = b + t:get("bad")
    if s == "" then s = t:get("sample") end
  end
  io.write(string.format("MCPCHECK responses=%d non200=%d bad=%d\n", r, n, b))
  if s ~= "" then io.write("MCPCHECK first bad answer: " .. s .. "\n") end
end
