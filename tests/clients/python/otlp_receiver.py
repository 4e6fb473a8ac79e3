#!/usr/bin/env python3
"""A small OTLP/HTTP trace receiver for Airlock's telemetry end-to-end tests.

usage: otlp_receiver.py PORT DIR

Listens on 127.0.0.1:PORT. Every POST to /v1/traces must be an OTLP/HTTP protobuf
`ExportTraceServiceRequest` (`Content-Type: application/x-protobuf`); it is decoded with
the official definitions (PyPI `opentelemetry-proto`), and each span is printed to
stdout and appended to DIR/spans.jsonl as one JSON object:

  {"trace_id", "span_id", "parent_span_id" (hex, "" for a root), "name", "kind",
   "start_ns", "end_ns", "attributes": {key: value}, "resource": {key: value},
   "scope", "events", "links"}

What arrived, whole, goes to DIR/received.bin (every body) and DIR/requests.jsonl (path,
headers), so a test can search everything the collector saw for what must never be
there. Anything else is answered 404; a body that does not decode, 400.
"""
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

port, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
lock = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with lock:
            with open(os.path.join(out, "received.bin"), "ab") as f:
                f.write(body)
            with open(os.path.join(out, "requests.jsonl"), "a") as f:
                f.write(json.dumps({"path": self.path, "headers": dict(self.headers.items())}) + "\n")
        if self.path != "/v1/traces":
            return self.answer(404, b"", "text/plain")
        if self.headers.get("Content-Type") != "application/x-protobuf":
            return self.answer(415, b"", "text/plain")
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception:
            return self.answer(400, b"", "text/plain")
        lines = []
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    lines.append(json.dumps({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "start_ns": s.start_time_unix_nano,
                        "end_ns": s.end_time_unix_nano,
                        "attributes": attributes(s.attributes),
                        "resource": resource,
                        "scope": ss.scope.name,
                        "events": len(s.events),
                        "links": len(s.links),
                    }))
        with lock:
            with open(os.path.join(out, "spans.jsonl"), "a") as f:
                for line in lines:
                    f.write(line + "\n")
            for line in lines:
                print(line, flush=True)
        self.answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
