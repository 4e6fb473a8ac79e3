"""A scripted MCP client for Airlock's tests, on the official Python MCP SDK 2.3.0.

  python mcp_client.py URL TOKEN MODE STEPS_JSON

URL is the streamable HTTP endpoint (e.g. https://127.0.0.1:P/mcp), or "stdio:<command line>"
to spawn a stdio server instead (shlex-split, given this process's whole environment;
TOKEN is then ignored). TOKEN is sent as "Authorization: Bearer TOKEN"; "none" sends no
Authorization header. TLS verification is off. MODE is "auto" (probes server/discover, negotiates 2026-07-28 when offered, else falls
back to initialize) or "legacy" (initialize + Mcp-Session-Id, 2025-11-25). The SDK's
response cache is off, so every step reaches the server.

STEPS_JSON is a JSON list; each step gives one result object, in order:
  {"op":"list_tools"}                      -> {"tools":[{"name","description","inputSchema"}...]}
  {"op":"call","name":N,"args":{...},"progress":bool}
                                           -> {"is_error":bool,"text":"joined text content",
                                               "structured":{...}|null,
                                               "progress":[{"progress","total","message"}...]}
  {"op":"list_resources"}                  -> {"resources":[uri...]}
  {"op":"read","uri":U}                    -> {"contents":[{"uri","text","mimeType"}...]}
  {"op":"list_prompts"}                    -> {"prompts":[name...]}
  {"op":"prompt","name":N,"args":{...}}    -> {"messages":[text...]}
Any step may carry "timeout": seconds (default 300) after which it fails with TimeoutError.
A step that raises gives {"error":"<ExceptionType>: message","code":<JSON-RPC code, only
for MCPError>} and the script goes on with the next step. When a step breaks the connection
itself (e.g. the server dies mid-call), that step gets {"error":...} and the remaining steps
run on a fresh connection (a new session in legacy mode); if reconnecting fails, the next
step gets the connect error and reconnecting is tried again for the one after it.

Prints ONE JSON object on stdout: {"protocol_version":"...","steps":[...]} and exits 0; when
connecting fails it prints {"error":"..."} and exits 1.
"""
import asyncio, json, os, shlex, sys
from contextlib import AsyncExitStack


def why(e):
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"[:500]


def text_of(block):
    return getattr(block, "text", None) or ""


async def step(c, s):
    op = s.get("op")
    if op == "list_tools":
        r = await c.list_tools()
        return {"tools": [{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in r.tools]}
    if op == "call":
        seen = []

        async def on_progress(progress, total, message):
            seen.append({"progress": progress, "total": total, "message": message})

        r = await c.call_tool(s["name"], s.get("args") or {}, progress_callback=on_progress if s.get("progress") else None)
        return {
            "is_error": bool(r.is_error),
            "text": "\n".join(text_of(b) for b in r.content),
            "structured": r.structured_content,
            "progress": seen,
        }
    if op == "list_resources":
        r = await c.list_resources()
        return {"resources": [str(x.uri) for x in r.resources]}
    if op == "read":
        r = await c.read_resource(s["uri"])
        return {"contents": [{"uri": str(x.uri), "text": getattr(x, "text", None), "mimeType": x.mime_type} for x in r.contents]}
    if op == "list_prompts":
        r = await c.list_prompts()
        return {"prompts": [p.name for p in r.prompts]}
    if op == "prompt":
        r = await c.get_prompt(s["name"], s.get("args") or {})
        return {"messages": [text_of(m.content) for m in r.messages]}
    raise ValueError(f"unknown op {op!r}")


async def run(url, token, mode, steps):
    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    out, version = [], None

    async def session():
        # One connection; runs steps until done. A failure that tears the connection down
        # (the SDK cancels the session's task group) escapes from here.
        nonlocal version
        hdr = {} if token == "none" else {"Authorization": f"Bearer {token}"}
        async with AsyncExitStack() as stack:
            if url.startswith("stdio:"):
                argv = shlex.split(url[len("stdio:") :])
                target = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
            else:
                hc = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=hdr, verify=False, timeout=httpx2.Timeout(30, read=300))
                )
                target = streamable_http_client(url, http_client=hc)
            c = await stack.enter_async_context(Client(target, mode=mode, cache=None))
            version = version or c.protocol_version
            while len(out) < len(steps):
                try:
                    s = steps[len(out)]
                    out.append(await asyncio.wait_for(step(c, s), s.get("timeout", 300)))
                except TimeoutError:
                    out.append({"error": f"TimeoutError: no answer within {s.get('timeout', 300)} s"})
                except MCPError as e:
                    out.append({"error": why(e), "code": e.code})
                except Exception as e:
                    out.append({"error": why(e)})

    while len(out) < len(steps):
        try:
            await session()
        except Exception as e:
            if version is None:  # the first connection failed
                raise
            # The connection broke mid-step (e.g. the server died) or reconnecting failed:
            # that step failed, and the remaining ones run on a fresh connection.
            if len(out) < len(steps):
                out.append({"error": why(e)})
    return {"protocol_version": version, "steps": out}


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url, token, mode, steps = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    try:
        out = asyncio.run(run(url, token, mode, steps))
    except BaseException as e:  # connecting failed (steps catch their own errors)
        print(json.dumps({"error": why(e)}))
        sys.exit(1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
