"""Drive a real Chroma server, directly and through brownout, with the official
`chromadb` client and explicit embeddings (so no embedding model is downloaded).

Prints one JSON object on stdout; the Rust test (tests/chroma.rs) asserts on it.
Usage: chroma_check.py MODE DIRECT_URL PROXY_URL
  seed         create collection `brownout_t` (directly) with 40 items
  query        run QUERIES single-vector queries both ways, n_results=10
  unavailable  query through the proxy (expected to raise), then add, upsert and
               delete through the proxy and count directly
"""
import json
import random
import sys
from urllib.parse import urlparse

import chromadb

DIM = 16
ITEMS = 40
QUERIES = 4
NAME = "brownout_t"


def emit(**kw):
    print(json.dumps(kw), flush=True)


def client(url):
    u = urlparse(url)
    return chromadb.HttpClient(host=u.hostname, port=u.port)


def vec(i, salt=0):
    rng = random.Random(i * 1000 + salt)
    return [rng.uniform(-1, 1) for _ in range(DIM)]


def collection(c):
    return c.get_collection(NAME, embedding_function=None)


def one(r):
    return {
        "ids": r["ids"][0],
        "distances": r["distances"][0],
        "documents": r["documents"][0],
        "metadatas": r["metadatas"][0],
    }


def main():
    mode, direct_url, proxy_url = sys.argv[1:4]
    d = client(direct_url)
    if mode == "seed":
        col = d.get_or_create_collection(NAME, metadata={"hnsw:space": "cosine"}, embedding_function=None)
        col.add(
            ids=[f"id{i}" for i in range(ITEMS)],
            embeddings=[vec(i) for i in range(ITEMS)],
            documents=[f"document {i}" for i in range(ITEMS)],
            metadatas=[{"n": i} for i in range(ITEMS)],
        )
        emit(count=col.count())
        return
    p = client(proxy_url)
    if mode == "query":
        dc, pc = collection(d), collection(p)
        out = []
        for q in range(QUERIES):
            args = dict(query_embeddings=[vec(q, salt=7)], n_results=10,
                        include=["distances", "documents", "metadatas"])
            out.append({"direct": one(dc.query(**args)), "proxied": one(pc.query(**args))})
        emit(queries=out)
        return
    if mode == "unavailable":
        pc = collection(p)
        raised = None
        try:
            pc.query(query_embeddings=[vec(0, salt=7)], n_results=10)
        except Exception as e:  # the client's own error type for a 503
            raised = {"type": type(e).__name__, "message": str(e)[:300]}
        # Writes pass through untouched and must all land.
        pc.add(ids=[f"new{i}" for i in range(10)], embeddings=[vec(100 + i) for i in range(10)],
               documents=[f"new {i}" for i in range(10)])
        pc.upsert(ids=[f"id{i}" for i in range(5)], embeddings=[vec(200 + i) for i in range(5)],
                  documents=[f"upserted {i}" for i in range(5)])
        pc.upsert(ids=["up0", "up1"], embeddings=[vec(300), vec(301)], documents=["u0", "u1"])
        pc.delete(ids=["id39", "id38", "id37"])
        dc = collection(d)
        got = dc.get(ids=["id0", "id4", "up1"], include=["documents"])
        emit(raised=raised, count=dc.count(),
             docs=dict(zip(got["ids"], got["documents"])),
             deleted_left=len(dc.get(ids=["id39", "id38", "id37"])["ids"]))
        return
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
