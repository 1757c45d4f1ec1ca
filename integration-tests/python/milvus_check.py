"""pymilvus's MilvusClient, used as a new user would, for integration-tests/tests/grpc_real.rs.

    milvus_check.py workflow URI [--collection NAME]
    milvus_check.py setup    URI [--collection NAME]
    milvus_check.py search   URI [--collection NAME] [--repeat N]
    milvus_check.py error    URI [--collection NAME] [--timeout S] [--no-rate-limit-retry]
    milvus_check.py cases    URI --cases JSON [--collection NAME]

URI is Milvus's, http://HOST:PORT (pymilvus speaks gRPC to it).

- workflow: create a collection (int64 primary key `id`, 8-dim float vector `vec`,
  varchar `tag`, float `score`; a FLAT COSINE index, so searches are exact), insert
  200 deterministic rows, load it, search top-10 for 5 query vectors with
  output_fields, query by a filter, get by ids, drop it. Every result is reported.
- setup: the same up to the load, and the collection is kept (for `search`, `error`).
- search: only searches the existing collection, the 5 query vectors (--repeat N
  times): ids, distances and the number of hits per query, so a test can compute
  recall@k against a run without faults.
- error: one search, timed; reports the exception pymilvus raised (type, `code`,
  `compatible_code`, `message`; for a grpc.RpcError its status code and details)
  and the Search calls it sent, so a test can see whether pymilvus retried.
- cases: several `search` and `error` runs in one process (URI is unused; each
  case names its own), each with a MilvusClient of its own. JSON is a list of
  {"name", "uri", "op": "search"|"error", "timeout": S, "queries": N,
  "repeat": N, "filter": EXPR, "no_rate_limit_retry": bool}; the document's `cases` maps each
  name to {"searches": [...]} (op search; with `search_error` when a search
  raised, and then no more repeats) or {"error": {...}} (op error), with the
  case's `grpc_calls`. `queries` (5 by default) is how many query vectors a
  search sends in its one request; the first 5 are always the same 5.

Every pymilvus call has timeout=--timeout (10 s by default; pymilvus treats it as
both each call's deadline and its retry budget), so a broken proxy cannot hang a
test. A client interceptor records each gRPC call pymilvus makes (full method path,
status code, ms) without changing what goes on the wire; each mode's document lists
them in `grpc_calls`. Prints one JSON document on one line.
"""

import argparse
import json
import random
import sys
import threading
import time

import grpc

DIM = 8
ROWS = 200
TOP_K = 10


class Tracer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Notes the method, status code and duration of every call on the channel."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def _note(self, details, call):
        entry = {"method": details.method, "code": None, "ms": None}
        if isinstance(entry["method"], bytes):
            entry["method"] = entry["method"].decode()
        with self.lock:
            self.calls.append(entry)
        start = time.monotonic()
        outcome = call()

        def done(f):
            try:
                entry["code"] = f.code().name
            except Exception:  # noqa: BLE001 - a cancelled future has no code
                entry["code"] = "UNKNOWN"
            entry["ms"] = round((time.monotonic() - start) * 1000, 1)

        try:
            outcome.add_done_callback(done)
        except Exception:  # noqa: BLE001
            pass
        return outcome

    def intercept_unary_unary(self, continuation, details, request):
        return self._note(details, lambda: continuation(details, request))

    def intercept_unary_stream(self, continuation, details, request):
        return self._note(details, lambda: continuation(details, request))

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return self._note(details, lambda: continuation(details, request_iterator))

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return self._note(details, lambda: continuation(details, request_iterator))

    def take(self):
        with self.lock:
            out, self.calls = self.calls, []
        return out


TRACER = Tracer()
_insecure_channel = grpc.insecure_channel


def _traced_channel(target, options=None, compression=None):
    return grpc.intercept_channel(_insecure_channel(target, options, compression), TRACER)


# pymilvus makes its channel with grpc.insecure_channel when it connects.
grpc.insecure_channel = _traced_channel

from pymilvus import DataType, MilvusClient, MilvusException  # noqa: E402


def rows():
    rng = random.Random(7)
    return [
        {
            "id": i,
            "vec": [round(rng.uniform(-1, 1), 4) for _ in range(DIM)],
            "tag": f"tag-{i % 7}",
            "score": round(i * 0.25, 2),
        }
        for i in range(ROWS)
    ]


def queries(n=5):
    rng = random.Random(11)
    return [[round(rng.uniform(-1, 1), 4) for _ in range(DIM)] for _ in range(n)]


def plain(v):
    """pymilvus result objects (Hits, HybridExtraList...) as plain JSON values."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if hasattr(v, "items") and callable(v.items):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if hasattr(v, "tolist"):
        return v.tolist()
    try:
        return [plain(x) for x in v]
    except TypeError:
        return str(v)


def search_hits(res):
    out = []
    for hits in res:
        q = {"ids": [], "distances": [], "entities": []}
        for h in hits:
            q["ids"].append(h["id"])
            q["distances"].append(h["distance"])
            q["entities"].append(plain(h.get("entity", {})))
        q["hits"] = len(q["ids"])
        out.append(q)
    return out


def step(doc, name, fn):
    start = time.monotonic()
    value = fn()
    doc["steps"].append(
        {
            "step": name,
            "ms": round((time.monotonic() - start) * 1000, 1),
            "result": value,
            "grpc_calls": TRACER.take(),
        }
    )
    return value


def setup(c, name, t, doc):
    def create():
        if c.has_collection(name, timeout=t):
            c.drop_collection(name, timeout=t)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        schema.add_field("tag", DataType.VARCHAR, max_length=64)
        schema.add_field("score", DataType.FLOAT)
        index = c.prepare_index_params()
        index.add_index(field_name="vec", index_type="FLAT", metric_type="COSINE")
        c.create_collection(name, schema=schema, index_params=index, timeout=t)
        return plain(c.describe_collection(name, timeout=t)["fields"])

    step(doc, "create", create)
    step(
        doc,
        "insert",
        lambda: {
            k: plain(v)
            for k, v in c.insert(name, rows(), timeout=t).items()
            if k in ("insert_count", "ids")
        },
    )

    def load():
        c.load_collection(name, timeout=t)
        return plain(c.get_load_state(name, timeout=t))

    step(doc, "load", load)


def do_search(c, name, t, n=5, filter=""):
    return search_hits(
        c.search(
            name,
            data=queries(n),
            filter=filter,
            limit=TOP_K,
            output_fields=["tag", "score"],
            search_params={"metric_type": "COSINE"},
            timeout=t,
        )
    )


def error_search(c, name, t, no_rate_limit_retry):
    """One search of one query vector, timed; what pymilvus raised, if it did."""
    kwargs = {"retry_on_rate_limit": False} if no_rate_limit_retry else {}
    TRACER.take()
    began = time.monotonic()
    err = {"raised": None}
    try:
        res = c.search(name, data=queries()[:1], limit=TOP_K, timeout=t, **kwargs)
        err["hits"] = search_hits(res)
    except MilvusException as e:
        # After retrying a gRPC error, pymilvus raises a MilvusException whose
        # `code` is the grpc.StatusCode; otherwise it is Milvus's error code.
        code = e.code.name if isinstance(e.code, grpc.StatusCode) else plain(e.code)
        err.update(
            raised=type(e).__name__,
            code=code,
            compatible_code=plain(e.compatible_code),
            message=e.message,
        )
    except grpc.RpcError as e:
        err.update(
            raised=type(e).__name__,
            code=e.code().name,
            message=e.details(),
        )
    except Exception as e:  # noqa: BLE001 - report whatever pymilvus raised
        err.update(raised=type(e).__name__, message=str(e))
    err["elapsed_ms"] = round((time.monotonic() - began) * 1000, 1)
    calls = TRACER.take()
    err["grpc_calls"] = calls
    err["attempts"] = sum(1 for x in calls if x["method"].endswith("/Search"))
    return err, calls


def run_case(case, name):
    """One case of `cases` mode, on a client of its own."""
    t = float(case.get("timeout", 10.0))
    TRACER.take()
    c = MilvusClient(uri=case["uri"], timeout=t)
    out = {"connect_calls": TRACER.take()}
    if case["op"] == "search":
        out["searches"] = []
        try:
            for _ in range(int(case.get("repeat", 1))):
                out["searches"].append(
                    do_search(c, name, t, int(case.get("queries", 5)), case.get("filter", ""))
                )
        except Exception as e:  # noqa: BLE001 - a fault may break the search: report it
            code = getattr(e, "code", None)
            code = code() if callable(code) else code
            out["search_error"] = {
                "raised": type(e).__name__,
                "code": code.name if isinstance(code, grpc.StatusCode) else plain(code),
                "message": str(e),
            }
        out["grpc_calls"] = TRACER.take()
    elif case["op"] == "error":
        out["error"], out["grpc_calls"] = error_search(
            c, name, t, bool(case.get("no_rate_limit_retry"))
        )
    else:
        raise SystemExit(f"unknown op {case['op']!r}")
    c.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["workflow", "setup", "search", "error", "cases"])
    ap.add_argument("uri")
    ap.add_argument("--collection", default="brownout_check")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-rate-limit-retry", action="store_true")
    ap.add_argument("--cases", default="[]")
    args = ap.parse_args()
    t, name = args.timeout, args.collection
    doc = {"mode": args.mode, "uri": args.uri, "collection": name, "steps": []}

    start = time.monotonic()
    if args.mode == "cases":
        doc["cases"] = {}
        for case in json.loads(args.cases):
            doc["cases"][case["name"]] = run_case(case, name)
        doc["elapsed_ms"] = round((time.monotonic() - start) * 1000, 1)
        print(json.dumps(doc))
        sys.stdout.flush()
        return
    c = step(doc, "connect", lambda: MilvusClient(uri=args.uri, timeout=t))
    doc["steps"][-1]["result"] = None
    if args.mode in ("workflow", "setup"):
        setup(c, name, t, doc)
    if args.mode == "workflow":
        step(doc, "search", lambda: do_search(c, name, t))
        step(
            doc,
            "query",
            lambda: plain(
                c.query(
                    name,
                    filter='score < 5.0 and tag == "tag-3"',
                    output_fields=["id", "tag", "score"],
                    timeout=t,
                )
            ),
        )
        step(
            doc,
            "get",
            lambda: plain(
                c.get(name, ids=[3, 5, 8, 199], output_fields=["id", "tag", "score"], timeout=t)
            ),
        )
        step(doc, "drop", lambda: c.drop_collection(name, timeout=t))
        step(doc, "has_after_drop", lambda: c.has_collection(name, timeout=t))
    elif args.mode == "search":
        doc["searches"] = []
        for _ in range(args.repeat):
            doc["searches"].append(step(doc, "search", lambda: do_search(c, name, t)))
    elif args.mode == "error":
        err, calls = error_search(c, name, t, args.no_rate_limit_retry)
        doc["error"] = err
        doc["steps"].append({"step": "error_search", "grpc_calls": calls})
    c.close()
    doc["elapsed_ms"] = round((time.monotonic() - start) * 1000, 1)
    doc["grpc_calls"] = [x for s in doc["steps"] for x in s["grpc_calls"]] + TRACER.take()
    print(json.dumps(doc))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
