"""The current qdrant-client through brownout to a Qdrant-shaped upstream, with
`drop_results` on searches (integration-tests/tests/real_stack.rs).

Usage: qdrant_proxy_check.py DIRECT_URL PROXY_URL

Through the proxy, with qdrant-client 1.20 (Query API only): create a collection,
upsert 200 seeded points, count, retrieve, scroll, and run 12 `query_points` calls
and one `query_batch_points`; every search is also sent straight to the upstream.
Prints one JSON object per search with the hits seen each way; the raw JSON text of
every hit (from a plain HTTP POST, both ways) is compared byte for byte, so a score
rewritten in its last digit shows.
"""
import json
import random
import sys

import httpx
from qdrant_client import QdrantClient, models

DIM = 16
N = 200
LIMIT = 25
COLL = "brownout-real"


def hits_text(body):
    """The raw text of each hit in a Query API answer, by id, without parsing floats."""
    # The answer is {"result": {"points": [ {...}, ... ]}, ...}: split on the
    # objects of the points array with a small scanner that keeps the bytes.
    start = body.index("[", body.index('"points"'))
    out, depth, i0, in_str, esc = [], 0, None, False, False
    for i in range(start + 1, len(body)):
        ch = body[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            if depth == 0:
                i0 = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                out.append(body[i0:i + 1])
        elif ch == "]" and depth == 0:
            break
    return out


def main():
    direct_url, proxy_url = sys.argv[1], sys.argv[2]
    rng = random.Random(7)
    proxied = QdrantClient(url=proxy_url, timeout=30)
    direct = QdrantClient(url=direct_url, timeout=30)
    if proxied.collection_exists(COLL):
        proxied.delete_collection(COLL)
    proxied.create_collection(COLL, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    points = [models.PointStruct(id=i, vector=[rng.uniform(-1, 1) for _ in range(DIM)],
                                 payload={"doc": f"document {i}", "n": i, "note": "caf\u00e9"})
              for i in range(N)]
    proxied.upsert(COLL, points=points, wait=True)
    info = proxied.get_collection(COLL)
    print(json.dumps({"check": "setup", "exists": proxied.collection_exists(COLL),
                      "count": proxied.count(COLL).count, "points_count": info.points_count,
                      "retrieved": [p.id for p in proxied.retrieve(COLL, ids=[3, 5, 8])],
                      "scrolled": len(proxied.scroll(COLL, limit=50)[0])}), flush=True)
    http = httpx.Client(timeout=30)
    for q in range(12):
        vec = [rng.uniform(-1, 1) for _ in range(DIM)]
        got = proxied.query_points(COLL, query=vec, limit=LIMIT, with_payload=True).points
        want = direct.query_points(COLL, query=vec, limit=LIMIT, with_payload=True).points
        body = {"query": vec, "limit": LIMIT, "with_payload": True}
        url = f"/collections/{COLL}/points/query"
        raw_direct = http.post(direct_url + url, json=body).text
        raw_proxied = http.post(proxy_url + url, json=body).text
        print(json.dumps({
            "check": "query", "q": q,
            "direct": [[p.id, p.score] for p in want],
            "proxied": [[p.id, p.score] for p in got],
            "payloads_equal": all(p.payload == next(w.payload for w in want if w.id == p.id) for p in got),
            "raw_direct_hits": hits_text(raw_direct),
            "raw_proxied_hits": hits_text(raw_proxied),
        }), flush=True)
    vecs = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(3)]
    batch = proxied.query_batch_points(COLL, requests=[models.QueryRequest(query=v, limit=LIMIT) for v in vecs])
    print(json.dumps({"check": "batch", "hits": [len(r.points) for r in batch]}), flush=True)
    proxied.delete_collection(COLL)


if __name__ == "__main__":
    main()
