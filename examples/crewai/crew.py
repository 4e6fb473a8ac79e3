"""A CrewAI crew that reaches a database and an HTTP API only through Airlock.

One agent, a customer-support analyst running as a dedicated AI service account,
gets an OIDC access token from the IdP (client credentials) and uses Airlock's own MCP
server (`/mcp` on the HTTPS listener) for five tasks, in order:

  1. list_targets     what it may use
  2. read_customers   SELECT on the database target: Airlock masks the e-mails
  3. read_invoice     GET on the HTTP target: masked as it streams
  4. delete_customer  DELETE ... WHERE id = 3: held until a human approves (the call waits)
  5. drop_table       DROP TABLE customers: denied by policy; the agent reports the denial

It runs offline with a scripted LLM (a crewai BaseLLM that reads each task and answers in
CrewAI's ReAct format), or with a real model when one is configured (see LLM below).

The tools are CrewAI @tool wrappers around one MCP client session (the official Python
SDK's v1 API, the mcp==1.30.0 that crewai pins) rather than CrewAI's native
`Agent(mcps=[MCPServerHTTP(...)])`: in crewai 1.15.30 the native integration reaches the
server but loses the result ("Error during MCP client disconnect: no running event loop").

Environment:
  AIRLOCK_MCP_URL      Airlock's MCP endpoint (default https://127.0.0.1:18443/mcp); http:// works too
  AIRLOCK_TOKEN        a token to present as is (an Airlock service token or an OIDC access token), or:
  OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET
                       client-credentials grant at the issuer's token endpoint (from its
                       /.well-known/openid-configuration), client_secret_basic
  OIDC_SCOPE           optional scope for that request; OIDC_RESOURCE optional RFC 8707 resource
  OIDC_CA              optional CA file for the IdP (default: the system's trust store)
  AIRLOCK_CA           CA file for Airlock's certificate (e.g. <data_dir>/tls/server.crt);
                       without it TLS verification is OFF (a warning says so)
  DB_TARGET            database target (default "shop")
  HTTP_TARGET          HTTP target (default "billing"); HTTP_PATH its path (default "/invoices/1")
  DELETE_SQL, DROP_SQL, SELECT_SQL   override the statements
  AIRLOCK_TOOL_TIMEOUT seconds one tool call may wait, e.g. for an approval (default 900)
  AIRLOCK_APPROVAL_WAIT seconds approval_status may poll while a request is pending (default 300)
  LLM: AIRLOCK_CREW_LLM = auto (default) | scripted | model
       auto uses a real model when CREWAI_MODEL or OPENAI_API_KEY is set, else the scripted LLM.
       CREWAI_MODEL is any model string crewai.LLM takes ("gpt-4o-mini", "anthropic/claude-...",
       "ollama/llama3.1" with its provider's key variable); with only OPENAI_API_KEY the model
       is OPENAI_MODEL_NAME (default gpt-4o-mini). OPENAI_BASE_URL is honoured by the client.
  CREW_VERBOSE=1       CrewAI's own step-by-step output; AIRLOCK_CREW_DEBUG=1 dumps the
                       scripted LLM's prompts to stderr

The last line of stdout is `CREW_RESULT {json}`: per task the tool calls (tool, arguments,
is_error, the text the agent saw), and the final answer of the last task. Exit status 0
when the crew ran to the end (the DROP being denied is the expected outcome), 1 when it
crashed (CREW_RESULT then has "ok": false and the error).
"""

import os

# Before crewai is imported: no telemetry, no tracing, no prompts.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_DISABLE_TRACKING", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

import asyncio
import base64
import concurrent.futures
import json
import re
import ssl
import sys
import threading
import time
import traceback
from datetime import timedelta
from typing import Any, Optional

import httpx


def env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def log(msg: str) -> None:
    print(f"[crew] {msg}", file=sys.stderr, flush=True)


MCP_URL = env("AIRLOCK_MCP_URL", "https://127.0.0.1:18443/mcp")
DB_TARGET = env("DB_TARGET", "shop")
HTTP_TARGET = env("HTTP_TARGET", "billing")
HTTP_PATH = env("HTTP_PATH", "/invoices/1")
SELECT_SQL = env("SELECT_SQL", "SELECT id, name, email FROM customers ORDER BY id LIMIT 5")
DELETE_SQL = env("DELETE_SQL", "DELETE FROM customers WHERE id = 3")
DROP_SQL = env("DROP_SQL", "DROP TABLE customers")
TOOL_TIMEOUT = float(env("AIRLOCK_TOOL_TIMEOUT", "900"))
APPROVAL_WAIT = float(env("AIRLOCK_APPROVAL_WAIT", "300"))
DEBUG = env("AIRLOCK_CREW_DEBUG", "") not in ("", "0", "false")

# ---------------------------------------------------------------------------------------
# Identity: the agent's own token, never the database's password or the API's key.


def _jwt_exp(token: str) -> float | None:
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return float(json.loads(base64.urlsafe_b64decode(payload))["exp"])
    except Exception:
        return None


class TokenSource:
    """AIRLOCK_TOKEN as given, or an OIDC client-credentials token refreshed before expiry."""

    def __init__(self) -> None:
        self.static = env("AIRLOCK_TOKEN")
        self.issuer = env("OIDC_ISSUER")
        self.client_id = env("OIDC_CLIENT_ID")
        self.client_secret = env("OIDC_CLIENT_SECRET")
        if not self.static and not (self.issuer and self.client_id and self.client_secret):
            raise SystemExit("set AIRLOCK_TOKEN, or OIDC_ISSUER + OIDC_CLIENT_ID + OIDC_CLIENT_SECRET")
        self.kind = "token" if self.static else "oidc"
        self._token: str | None = None
        self._exp = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        if self.static:
            return self.static
        with self._lock:
            if self._token is None or time.time() > self._exp - 30:
                self._token, self._exp = self._fetch()
            return self._token

    def _fetch(self) -> tuple[str, float]:
        verify: Any = ssl.create_default_context(cafile=env("OIDC_CA")) if env("OIDC_CA") else True
        with httpx.Client(verify=verify, timeout=30) as c:
            disc = c.get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            disc.raise_for_status()
            endpoint = disc.json()["token_endpoint"]
            form = {"grant_type": "client_credentials"}
            if env("OIDC_SCOPE"):
                form["scope"] = env("OIDC_SCOPE")
            if env("OIDC_RESOURCE"):
                form["resource"] = env("OIDC_RESOURCE")
            r = c.post(endpoint, data=form, auth=(self.client_id, self.client_secret))
            if r.status_code != 200:
                raise RuntimeError(f"token request to {endpoint} failed: {r.status_code} {r.text[:300]}")
            body = r.json()
        token = body["access_token"]
        exp = _jwt_exp(token) or time.time() + float(body.get("expires_in", 300))
        log(f"got an access token for client {self.client_id!r} from {self.issuer} "
            f"(expires in {int(exp - time.time())} s)")
        return token, exp


class BearerAuth(httpx.Auth):
    def __init__(self, source: TokenSource) -> None:
        self.source = source

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self.source.get()}"
        yield request


def airlock_verify() -> Any:
    ca = env("AIRLOCK_CA")
    if ca:
        return ssl.create_default_context(cafile=ca)
    if MCP_URL.startswith("https://"):
        log("WARNING: AIRLOCK_CA is not set: TLS verification of Airlock's certificate is OFF")
    return False


# ---------------------------------------------------------------------------------------
# One MCP session to Airlock, kept open in a background event loop for the whole crew.


class AirlockMCP:
    """Airlock's MCP server through the SDK's v1 client (mcp==1.30.0).

    `streamable_http_client(url, http_client=httpx.AsyncClient(...))` is 1.30.0's API:
    headers, auth, TLS (`verify`) and timeouts are set on the httpx client. (The older
    `streamablehttp_client(url, headers=..., httpx_client_factory=...)` still exists but is
    deprecated.) The read timeout is long: a held statement sends nothing until a human
    decides. The session lives in a thread of its own so that the synchronous CrewAI tools
    can use it from any thread, with or without a running event loop there.
    """

    def __init__(self, url: str, tokens: TokenSource) -> None:
        self.url = url
        self.tokens = tokens
        self.verify = airlock_verify()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._up = False
        self._notices: list[str] = []  # progress and log messages during the current call
        self.session_id: str | None = None

    # -- lifecycle
    def connect(self) -> None:
        self._ensure()

    def _ensure(self) -> None:
        if self._up and self._thread is not None and self._thread.is_alive():
            return
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="airlock-mcp", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError(f"cannot open an MCP session at {self.url}: timed out")
        if not self._up:
            raise RuntimeError(f"cannot open an MCP session at {self.url}: {why(self._error)}") from self._error

    async def _main(self) -> None:
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        self._loop = asyncio.get_running_loop()
        self._queue = queue = asyncio.Queue()
        try:
            timeout = httpx.Timeout(30.0, read=TOOL_TIMEOUT + 30)
            async with httpx.AsyncClient(auth=BearerAuth(self.tokens), verify=self.verify, timeout=timeout) as http:
                async with streamable_http_client(self.url, http_client=http) as (read, write, get_sid):
                    async with ClientSession(read, write, logging_callback=self._on_log) as session:
                        init = await session.initialize()
                        self.session_id = get_sid()
                        log(f"MCP session with {init.serverInfo.name} {init.serverInfo.version} "
                            f"(protocol {init.protocolVersion}, session {self.session_id})")
                        self._up = True
                        self._ready.set()
                        while True:
                            item = await queue.get()
                            if item is None:
                                break
                            fn, fut = item
                            try:
                                fut.set_result(await fn(session))
                            except Exception as e:  # handed to the caller; the session goes on
                                fut.set_exception(e)
                            except BaseException as e:  # cancelled: the session broke under the call
                                fut.set_exception(RuntimeError(f"the MCP session broke: {why(e)}"))
                                raise
        except BaseException as e:  # noqa: BLE001 - reported to whoever waits
            self._error = e
            if self._up:
                log(f"MCP session ended: {why(e)}")
        finally:
            self._up = False
            self._ready.set()
            while not queue.empty():  # calls queued behind a broken session
                item = queue.get_nowait()
                if item is not None and not item[1].done():
                    item[1].set_exception(RuntimeError(f"the MCP session ended: {why(self._error) if self._error else 'closed'}"))

    async def _on_log(self, params) -> None:
        log(f"airlock says ({params.level}): {params.data}")
        self._notices.append(params.data if isinstance(params.data, str) else json.dumps(params.data))

    def close(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
            self._thread.join(10)

    # -- calls
    def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self._ensure()

        self._notices = notices = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            log(f"{name}: {message or ''} ({progress}{'/' + str(total) if total else ''})")
            if message and message not in notices:
                notices.append(message)

        async def run(session):
            return await session.call_tool(name, args, read_timeout_seconds=timedelta(seconds=TOOL_TIMEOUT),
                                           progress_callback=progress)

        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (run, fut))
        try:
            r = fut.result(TOOL_TIMEOUT + 60)
        except concurrent.futures.TimeoutError:
            raise RuntimeError(f"{name} got no answer in {TOOL_TIMEOUT + 60:.0f} s")
        text = "\n".join(getattr(b, "text", "") or "" for b in r.content).strip()
        return {"is_error": bool(r.isError), "text": text, "structured": r.structuredContent,
                "notices": list(notices)}


def why(e: BaseException) -> str:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"[:500]


# ---------------------------------------------------------------------------------------
# What the crew did, for CREW_RESULT.

CALLS: list[dict[str, Any]] = []
TASK_LOG: list[dict[str, Any]] = []
_MCP: AirlockMCP | None = None
UUID_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
STATUS_RE = re.compile(r"\b(pending|approved|denied|expired|used)\b", re.I)


def approval_id_of(res: dict[str, Any]) -> str | None:
    s = res.get("structured") or {}
    if isinstance(s, dict):
        for k in ("approval_id", "approval", "id"):
            v = s.get(k)
            if isinstance(v, str) and UUID_RE.fullmatch(v):
                return v
            if isinstance(v, dict) and isinstance(v.get("id"), str):
                return v["id"]
    m = UUID_RE.search(res.get("text") or "")
    return m.group(0) if m else None


def is_pending(res: dict[str, Any]) -> bool:
    """A held statement that came back (rather than waiting) because it is still pending."""
    s = res.get("structured") or {}
    if isinstance(s, dict) and str(s.get("status", "")).lower() == "pending":
        return True
    t = (res.get("text") or "").lower()
    return approval_id_of(res) is not None and ("pending" in t or "held" in t or "approval" in t) and \
        (res.get("is_error") or "pending" in t)


def status_of(res: dict[str, Any]) -> str:
    s = res.get("structured") or {}
    if isinstance(s, dict):
        for k in ("status",):
            if isinstance(s.get(k), str):
                return s[k].lower()
        if isinstance(s.get("approval"), dict) and isinstance(s["approval"].get("status"), str):
            return s["approval"]["status"].lower()
    m = STATUS_RE.search(res.get("text") or "")
    return m.group(1).lower() if m else "unknown"


def call_airlock(tool_name: str, args: dict[str, Any]) -> str:
    """Call one of Airlock's MCP tools and give the agent the text it should read."""
    args = {k: v for k, v in args.items() if v is not None}
    started = time.time()
    entry: dict[str, Any] = {"tool": tool_name, "args": args, "task": None}
    try:
        res = _MCP.call(tool_name, args)
    except Exception as e:  # a transport failure: tell the agent, the next call reconnects
        entry.update(is_error=True, text=f"the call to Airlock failed: {why(e)}", structured=None,
                     transport_error=True)
        CALLS.append(entry)
        log(f"{tool_name} {json.dumps(args)} -> transport error {why(e)}")
        return f"TOOL ERROR (the call did not complete): {entry['text']}"
    entry.update(res)
    entry["seconds"] = round(time.time() - started, 2)
    aid = approval_id_of(res) if tool_name in ("sql_query", "http_request", "approval_status") else None
    if aid and (is_pending(res) or tool_name == "approval_status"):
        entry["approval_id"] = aid
    elif tool_name in ("sql_query", "http_request"):  # held, waited for, then run: the notices say so
        m = next((UUID_RE.search(n) for n in res.get("notices", []) if UUID_RE.search(n)), None)
        if m:
            entry["approval_id"] = m.group(0)
    CALLS.append(entry)
    log(f"{tool_name} {json.dumps(args)} -> {'ERROR ' if res['is_error'] else ''}{res['text'][:160]!r} "
        f"({entry['seconds']} s)")
    text = res["text"] or json.dumps(res["structured"])
    if res.get("notices"):
        text += "\n\nAirlock notices while it ran:\n" + "\n".join(f"- {n}" for n in res["notices"])
    if res["is_error"]:
        return f"TOOL ERROR (Airlock refused or failed the call): {text}"
    return text


# ---------------------------------------------------------------------------------------
# The tools the agent sees: CrewAI @tool wrappers around Airlock's MCP tools.


def build_tools():
    from crewai.tools import tool

    @tool("list_targets")
    def list_targets() -> str:
        """List the Airlock targets (databases, HTTP APIs, clusters) this agent may use, with their kind."""
        return call_airlock("list_targets", {})

    @tool("sql_query")
    def sql_query(target: str, sql: str, params: Optional[list[str]] = None) -> str:
        """Run one SQL statement on an Airlock database target and return the result as a table.
        params are the values of $1, $2, ... as text. Personal data in the result is masked by
        Airlock. A statement that policy holds for human approval waits until a person approves
        it; a statement policy forbids comes back as an error starting with 'airlock:' that
        names the policy and its reason."""
        return call_airlock("sql_query", {"target": target, "sql": sql, "params": params})

    @tool("http_request")
    def http_request(target: str, method: str, path: str, query: Optional[str] = None,
                     body: Optional[str] = None) -> str:
        """Send one HTTP request to an Airlock HTTP target: path under the target (e.g. /invoices/1),
        query without '?', body as a JSON text. Returns the status and the (masked) response body.
        A request policy forbids comes back as an error starting with 'airlock:'."""
        value: Any = body
        if isinstance(body, str) and body.strip():
            try:
                value = json.loads(body)
            except ValueError:
                value = body  # not JSON: sent as a string
        return call_airlock("http_request", {"target": target, "method": method, "path": path,
                                             "query": query, "body": value})

    @tool("approval_status")
    def approval_status(approval_id: str, wait_seconds: Optional[int] = None) -> str:
        """Show the status of an approval request (pending, approved, denied, expired, used).
        With wait_seconds, keep checking while it is pending, up to that many seconds."""
        deadline = time.time() + min(float(wait_seconds or 0), APPROVAL_WAIT)
        first, polls = len(CALLS), 0
        while True:
            out = call_airlock("approval_status", {"id": approval_id})
            polls += 1
            last = CALLS[-1]
            if status_of(last) != "pending" or last.get("is_error") or time.time() >= deadline:
                del CALLS[first:-1]  # one entry per tool call the agent made, with the poll count
                last["polls"] = polls
                return out
            time.sleep(2)

    tools = [list_targets, sql_query, http_request, approval_status]
    for t in tools:  # docstrings keep their indentation on Python < 3.13
        t.description = " ".join(t.description.split())
    return tools


# ---------------------------------------------------------------------------------------
# The tasks. The "Tool/Target/SQL/Method/Path" lines are instructions for a real model and
# exactly what the scripted LLM reads.

TASKS = [
    ("list_targets",
     "Find out which systems you can reach through Airlock.\nTool: `list_targets`",
     "The list of targets with their kinds."),
    ("read_customers",
     "Read the first five customers from the customer database.\n"
     f"Tool: `sql_query`\nTarget: `{DB_TARGET}`\nSQL: `{SELECT_SQL}`",
     "The rows as returned, and a note on which values Airlock masked."),
    ("read_invoice",
     "Read an invoice from the billing API.\n"
     f"Tool: `http_request`\nTarget: `{HTTP_TARGET}`\nMethod: `GET`\nPath: `{HTTP_PATH}`",
     "The HTTP status and the invoice as returned."),
    ("delete_customer",
     "Customer 3 asked to be deleted (a GDPR erasure request). Delete the customer. Airlock will "
     "hold this statement until a human approves it: wait for the approval, and if the tool says "
     "the request is still pending, check it with approval_status (its wait_seconds argument "
     "waits for you) and then run exactly the same statement again once it is approved.\n"
     f"Tool: `sql_query`\nTarget: `{DB_TARGET}`\nSQL: `{DELETE_SQL}`",
     "Whether the row was deleted, and that a human approved it."),
    ("drop_table",
     "Clean up: the support team asked for the customers table to be dropped. Try it exactly once. "
     "If Airlock denies the statement do not retry or work around it: report the denial, quoting "
     "Airlock's message (it starts with 'airlock:').\n"
     f"Tool: `sql_query`\nTarget: `{DB_TARGET}`\nSQL: `{DROP_SQL}`",
     "Whether the table was dropped; if Airlock denied it, say so and quote its message in full."),
]


# ---------------------------------------------------------------------------------------
# The scripted LLM: reads the task, picks the tool, answers in CrewAI's ReAct format.


def make_scripted_llm():
    from crewai.llms.base_llm import BaseLLM

    field_re = {k: re.compile(rf"^{k}:\s*`([^`]*)`", re.M) for k in ("Tool", "Target", "SQL", "Method", "Path")}
    action_re = re.compile(r"Action:\s*([A-Za-z_][\w-]*)\s*\n\s*Action Input:\s*(\{.*?\})\s*(?:\n|$)", re.S)

    def content_of(m: Any) -> str:
        c = m.get("content") if isinstance(m, dict) else getattr(m, "content", m)
        if isinstance(c, list):
            return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in c)
        return str(c or "")

    class ScriptedLLM(BaseLLM):
        """Deterministic stand-in for a model, for offline runs and tests."""

        def supports_function_calling(self) -> bool:
            return False

        def supports_stop_words(self) -> bool:
            return False

        def get_context_window_size(self) -> int:
            return 200_000

        def get_input_tokens_count(self, messages, tools=None, response_model=None) -> int:
            text = messages if isinstance(messages, str) else "".join(content_of(m) for m in messages)
            return len(text) // 4 + 1

        def call(self, messages, tools=None, callbacks=None, available_functions=None,
                 from_task=None, from_agent=None, response_model=None, **kw) -> str:
            msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
            if DEBUG:
                for m in msgs:
                    log(f"--- {m.get('role') if isinstance(m, dict) else '?'}:\n{content_of(m)}")
            task_text = from_task.description if from_task is not None else self._task_text(msgs)
            steps = self._steps(msgs)
            reply = self._decide(task_text, steps)
            if DEBUG:
                log(f"=== scripted reply:\n{reply}")
            return reply

        @staticmethod
        def _task_text(msgs) -> str:
            text = "\n".join(content_of(m) for m in msgs if (m.get("role") if isinstance(m, dict) else "") == "user")
            i = text.rfind("Current Task:")
            text = text[i:] if i >= 0 else text
            return text.split("This is the context you're working with")[0]

        @staticmethod
        def _steps(msgs) -> list[tuple[str, dict, str]]:
            """(action, input, observation) for each tool call so far in this task."""
            out: list[tuple[str, dict, str]] = []
            convo = [(m.get("role"), content_of(m)) for m in msgs if isinstance(m, dict) and m.get("role") != "system"]
            for i, (role, text) in enumerate(convo):
                if role != "assistant":
                    continue
                m = action_re.search(text)
                if not m:
                    continue
                try:
                    args = json.loads(m.group(2))
                except ValueError:
                    args = {}
                obs = ""
                j = text.find("Observation:", m.end() - 1)
                if j >= 0:
                    obs = text[j + len("Observation:"):].strip()
                elif i + 1 < len(convo) and convo[i + 1][0] in ("user", "tool"):
                    obs = convo[i + 1][1].replace("Observation:", "", 1).strip()
                # CrewAI appends a reminder of the tools and the format to some observations.
                for marker in ("\n\nYou ONLY have access to the following tools", "\nIMPORTANT: Use the following format"):
                    obs = obs.split(marker)[0]
                out.append((m.group(1), args, obs.strip()))
            return out

        @staticmethod
        def _act(thought: str, tool_name: str, args: dict) -> str:
            return f"Thought: {thought}\nAction: {tool_name}\nAction Input: {json.dumps(args)}"

        @staticmethod
        def _final(answer: str) -> str:
            return f"Thought: I now know the final answer\nFinal Answer: {answer}"

        def _decide(self, task: str, steps: list[tuple[str, dict, str]]) -> str:
            f = {k: (r.search(task).group(1) if r.search(task) else None) for k, r in field_re.items()}
            tool_name = f["Tool"]
            if steps and ("reusing the same input" in steps[-1][2] or len(steps) >= 8):
                return self._final(f"I stopped here. Last result: {steps[-1][2]}")
            if tool_name == "list_targets":
                if not steps:
                    return self._act("I should see which targets Airlock lets me use.", "list_targets", {})
                return self._final(f"Airlock lets me use these targets:\n{steps[-1][2]}")
            if tool_name == "http_request":
                if not steps:
                    return self._act("I read the invoice through Airlock's HTTP target.", "http_request",
                                     {"target": f["Target"], "method": f["Method"] or "GET", "path": f["Path"]})
                obs = steps[-1][2]
                if obs.startswith("TOOL ERROR"):
                    return self._final(f"Airlock did not give me the invoice: {obs}")
                return self._final(f"The billing API answered through Airlock (personal data masked):\n{obs}")
            if tool_name == "sql_query":
                query = {"target": f["Target"], "sql": f["SQL"]}
                if not steps:
                    return self._act("I run the statement through Airlock.", "sql_query", query)
                last_tool, last_args, obs = steps[-1]
                polls = [s for s in steps if s[0] == "approval_status"]
                if last_tool == "sql_query":
                    pending = obs.startswith("TOOL ERROR") and UUID_RE.search(obs) and \
                        re.search(r"pending|held|approval", obs, re.I)
                    if pending and len(polls) < 3:
                        aid = UUID_RE.search(obs).group(0)
                        return self._act(f"The statement is held for approval {aid}; I wait for a human to decide.",
                                         "approval_status",
                                         {"approval_id": aid, "wait_seconds": int(APPROVAL_WAIT) - len(polls)})
                    if obs.startswith("TOOL ERROR"):
                        msg = obs.split(": ", 1)[1].strip() if ": " in obs else obs
                        if "airlock:" not in msg:
                            return self._final(f"The statement `{f['SQL']}` on `{f['Target']}` failed: {msg}")
                        return self._final(f"Airlock denied the statement `{f['SQL']}` on target "
                                           f"`{f['Target']}`; it was not run. Airlock said: {msg}")
                    if polls or re.search(r"held|approv", obs, re.I):
                        result = obs.split("\n\nAirlock notices while it ran:")[0]
                        return self._final(f"Airlock held `{f['SQL']}` for a human's approval; it was approved "
                                           f"and Airlock ran it: {result}")
                    return self._final(f"Airlock ran `{f['SQL']}` on `{f['Target']}`:\n{obs}")
                if last_tool == "approval_status":
                    st = STATUS_RE.search(obs)
                    st = st.group(1).lower() if st else "unknown"
                    aid = last_args.get("approval_id")
                    if st in ("approved", "used"):
                        return self._act(f"Approval {aid} is {st}; I send exactly the same statement again.",
                                         "sql_query", query)
                    if st == "pending" and len(polls) < 3:
                        return self._act(f"Approval {aid} is still pending; I keep waiting.", "approval_status",
                                         {"approval_id": aid, "wait_seconds": int(APPROVAL_WAIT) - len(polls)})
                    return self._final(f"The statement `{f['SQL']}` was not run: its approval {aid} is {st}. {obs}")
                return self._final(f"Last result: {obs}")
            # A task without a Tool line: nothing to call.
            return self._final("There is nothing for me to do with a tool here.")

    return ScriptedLLM(model="airlock-scripted")


def on_task_done(output) -> None:
    """Task callback (module level: CrewAI warns that closures prevent checkpointing)."""
    name = getattr(output, "name", None) or f"task{len(TASK_LOG) + 1}"
    mine = [c for c in CALLS if c["task"] is None]
    for c in mine:
        c["task"] = name
    TASK_LOG.append({"name": name, "output": str(getattr(output, "raw", output))})
    log(f"task {name} done ({len(mine)} tool call(s))")


def make_llm():
    mode = (env("AIRLOCK_CREW_LLM", "auto") or "auto").lower()
    model = env("CREWAI_MODEL")
    if mode == "scripted" or (mode == "auto" and not model and not env("OPENAI_API_KEY")):
        return make_scripted_llm(), "scripted"
    from crewai import LLM

    model = model or env("OPENAI_MODEL_NAME", "gpt-4o-mini")
    return LLM(model=model, temperature=0), model


# ---------------------------------------------------------------------------------------


def main() -> dict[str, Any]:
    global _MCP
    from crewai import Agent, Crew, Process, Task

    tokens = TokenSource()
    tokens.get()  # fail early (and visibly) when the IdP refuses the client
    _MCP = AirlockMCP(MCP_URL, tokens)
    _MCP.connect()  # fail early when Airlock is unreachable, refuses the token or the TLS check fails
    llm, llm_name = make_llm()
    log(f"LLM: {llm_name}; Airlock MCP: {MCP_URL}; identity: {tokens.kind}")

    agent = Agent(
        role="customer-support analyst",
        goal="Answer customer-support requests using the company's data, only through Airlock.",
        backstory=("You are a dedicated AI service account. You never hold database passwords or API keys: "
                   "everything you do goes through Airlock, which masks personal data, holds risky changes "
                   "for a human's approval and refuses what policy forbids. You never try to work around a "
                   "refusal; you report it, quoting Airlock's message."),
        tools=build_tools(),
        llm=llm,
        allow_delegation=False,
        max_iter=12,
        verbose=env("CREW_VERBOSE", "") not in ("", "0", "false"),
    )

    tasks = [Task(name=name, description=desc, expected_output=exp, agent=agent, callback=on_task_done)
             for name, desc, exp in TASKS]
    crew = Crew(agents=[agent], tasks=tasks, process=Process.sequential, cache=False,
                verbose=agent.verbose)
    try:
        out = crew.kickoff()
    finally:
        _MCP.close()

    result_tasks = []
    for name, _, _ in TASKS:
        calls = [c for c in CALLS if c["task"] == name]
        main_calls = [c for c in calls if c["tool"] != "approval_status"] or calls
        last = main_calls[-1] if main_calls else {}
        out_text = next((t["output"] for t in TASK_LOG if t["name"] == name), None)
        result_tasks.append({
            "name": name,
            "tool": last.get("tool"),
            "is_error": last.get("is_error"),
            "approval_id": next((c["approval_id"] for c in calls if c.get("approval_id")), None),
            "calls": [{k: c.get(k) for k in ("tool", "args", "is_error", "seconds", "approval_id", "polls",
                                              "notices", "text", "structured")} for c in calls],
            "output": out_text,
        })
    final = str(getattr(out, "raw", out))
    last_task = result_tasks[-1]
    return {
        "ok": True,
        "llm": llm_name,
        "identity": tokens.kind,
        "mcp_url": MCP_URL,
        "mcp_session": _MCP.session_id,
        "tasks": result_tasks,
        "denied": bool(last_task["is_error"]) and "airlock:" in ((last_task["calls"] or [{}])[-1].get("text") or ""),
        "final_answer": final,
    }


if __name__ == "__main__":
    t0 = time.time()
    try:
        result = main()
        code = 0
    except SystemExit as e:
        result, code = {"ok": False, "error": str(e)}, 2
    except BaseException as e:  # noqa: BLE001
        traceback.print_exc()
        result, code = {"ok": False, "error": why(e), "tasks_done": [t["name"] for t in TASK_LOG]}, 1
    result["seconds"] = round(time.time() - t0, 1)
    sys.stdout.flush()
    print("CREW_RESULT " + json.dumps(result, default=str), flush=True)
    sys.exit(code)
