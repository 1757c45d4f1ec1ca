"""Drive `brownout sim --api qdrant` with the official clients, as an application
would: qdrant-client 1.20 (which has only the Query API; its `search` is gone)
for the database, openai for the query embeddings the sim serves on the same port.

Every call goes through the client's own request building and pydantic response
models, so a shape the real server would not send fails here. The script asserts
what it can on its own and prints one line `RESULT <json>` with what the Rust test
(sim/tests/qdrant_client.rs) checks against the sim's ground truth.

Usage: qdrant_sim_check.py SIM_URL
"""
import json
import sys
import threading
import time
import warnings

import httpx
import openai
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

URL = sys.argv[1]
out = {}


def hits(points):
    return {"ids": [p.id for p in points], "scores": [p.score for p in points]}


# --- construction: the version check runs on a thread and warns on any failure ---
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    before = set(threading.enumerate())
    c = QdrantClient(url=URL, check_compatibility=True, timeout=30)
    for t in set(threading.enumerate()) - before:
        t.join(10)
    out["warnings"] = [str(w.message) for w in caught]
out["version"] = c.info().version

# --- health endpoints (plain text, as the real server) ---
out["health"] = {p: [r.status_code, r.text] for p in ("/healthz", "/livez", "/readyz")
                 for r in [httpx.get(URL + p)]}

# --- the seeded collection ---
out["collections"] = sorted(d.name for d in c.get_collections().collections)
out["exists"] = [c.collection_exists("docs"), c.collection_exists("no_such_collection")]
info = c.get_collection("docs")
assert isinstance(info, models.CollectionInfo)
out["info"] = {
    "status": str(info.status),
    "points_count": info.points_count,
    "size": info.config.params.vectors.size,
    "distance": str(info.config.params.vectors.distance.value),
    "hnsw_m": info.config.hnsw_config.m,
}

oc = openai.OpenAI(base_url=URL + "/v1", api_key="sk-test", max_retries=0)


def embed(text):
    r = oc.embeddings.create(model="sim-embed", input=text, dimensions=64, encoding_format="float")
    return r.data[0].embedding


q42 = embed("document 42")
top = c.query_points("docs", query=q42, limit=5, with_payload=True)
out["docs_top5"] = hits(top.points)
out["docs_top5_texts"] = [p.payload["text"] for p in top.points]
nearest = c.query_points("docs", query=models.NearestQuery(nearest=q42), limit=5)
assert hits(nearest.points) == out["docs_top5"], "plain list and NearestQuery differ"
# The Search API: gone from qdrant-client, still served by Qdrant 1.19 and the sim.
r = httpx.post(URL + "/collections/docs/points/search", json={"vector": q42, "limit": 5})
r.raise_for_status()
old = r.json()["result"]
out["docs_search_top5"] = {"ids": [h["id"] for h in old], "scores": [h["score"] for h in old]}

qa, qb = embed("alpha"), embed("beta")
batch = c.query_batch_points("docs", requests=[
    models.QueryRequest(query=qa, limit=3),
    models.QueryRequest(query=models.NearestQuery(nearest=qb), limit=4, with_payload=True),
])
out["docs_batch"] = [hits(b.points) for b in batch]
single_b = c.query_points("docs", query=qb, limit=4)
assert hits(single_b.points) == out["docs_batch"][1], "batch and single query differ"
out["docs_filtered"] = hits(c.query_points(
    "docs", query=q42, limit=5,
    query_filter=models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=100))]),
).points)
out["docs_by_id"] = hits(c.query_points("docs", query=42, limit=3).points)
out["docs_count"] = c.count("docs").count

# --- a collection of our own ---
name = "sdk_check"
if c.collection_exists(name):
    c.delete_collection(name)
assert c.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
try:
    c.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    out["create_twice"] = "accepted"
except UnexpectedResponse as e:
    out["create_twice"] = [e.status_code, json.loads(e.content)["status"]["error"]]

UUID = "936da01f-9abd-4d9d-80c7-02af85c822a8"


def vec(i):
    return [1.0, i / 10.0, (i % 3) / 3.0, 0.5]


points = [models.PointStruct(id=i, vector=vec(i), payload={"n": i, "parity": "even" if i % 2 == 0 else "odd"})
          for i in range(1, 25)]
points.append(models.PointStruct(id=UUID, vector=vec(25), payload={"n": 25, "parity": "odd"}))
up = c.upsert(name, points=points, wait=True)
out["upsert"] = [up.operation_id, str(up.status.value)]
up2 = c.upsert(name, points=models.Batch(ids=[30, 31], vectors=[vec(30), vec(31)],
                                         payloads=[{"n": 30, "parity": "even"}, {"n": 31, "parity": "odd"}]))
out["upsert_batch"] = [up2.operation_id, str(up2.status.value)]
out["count"] = [c.count(name).count,
                c.count(name, count_filter=models.Filter(must=[models.FieldCondition(
                    key="parity", match=models.MatchValue(value="even"))])).count]

info = c.get_collection(name)
out["own_info"] = {"points_count": info.points_count, "size": info.config.params.vectors.size,
                   "distance": str(info.config.params.vectors.distance.value)}

q = [1.0, 1.2, 0.0, 0.5]
full = c.query_points(name, query=q, limit=100)
out["own_all"] = hits(full.points)
even = c.query_points(name, query=q, limit=5, with_payload=True, query_filter=models.Filter(
    must=[models.FieldCondition(key="parity", match=models.MatchValue(value="even"))]))
out["own_even"] = hits(even.points)
out["own_even_parities"] = [p.payload["parity"] for p in even.points]
page2 = c.query_points(name, query=q, limit=5, offset=5)
out["own_offset5"] = hits(page2.points)
thr = out["own_all"]["scores"][3]
out["own_threshold"] = hits(c.query_points(name, query=q, limit=100, score_threshold=thr).points)
out["own_threshold_at"] = thr
withv = c.query_points(name, query=q, limit=1, with_vectors=True, with_payload=["n"])
out["own_with"] = {"vector": withv.points[0].vector, "payload": withv.points[0].payload}

try:
    c.query_points(name, query=[1.0, 2.0], limit=3)
    out["wrong_dim"] = "accepted"
except UnexpectedResponse as e:
    out["wrong_dim"] = [e.status_code, json.loads(e.content)["status"]["error"]]

got = c.retrieve(name, ids=[3, UUID, 999, 3], with_vectors=True)
out["retrieve"] = [{"id": p.id, "payload": p.payload, "has_vector": p.vector is not None} for p in got]
one = c.http.points_api.get_point(name, 7).result
out["get_point"] = {"id": one.id, "payload": one.payload, "vector_len": len(one.vector)}
try:
    c.http.points_api.get_point(name, 12345)
    out["get_missing"] = "found"
except UnexpectedResponse as e:
    out["get_missing"] = e.status_code

pages, offsets, offset = [], [], None
while True:
    recs, offset = c.scroll(name, limit=10, offset=offset, with_payload=True)
    pages.append([p.id for p in recs])
    offsets.append(offset)
    if offset is None or len(pages) > 10:
        break
out["scroll_pages"] = pages
out["scroll_offsets"] = offsets
recs, nxt = c.scroll(name, limit=100, scroll_filter=models.Filter(
    must=[models.FieldCondition(key="n", range=models.Range(gt=20))]))
out["scroll_filtered"] = [[p.id for p in recs], nxt]

dl = c.delete(name, points_selector=models.PointIdsList(points=[1, 2, UUID]))
out["delete"] = str(dl.status.value)
c.delete(name, points_selector=models.FilterSelector(filter=models.Filter(
    must=[models.FieldCondition(key="n", range=models.Range(gte=30))])))
out["count_after_delete"] = c.count(name).count

# --- distances other than cosine ---
for dist in (models.Distance.EUCLID, models.Distance.DOT, models.Distance.MANHATTAN):
    n = "sdk_" + dist.value.lower()
    c.create_collection(n, vectors_config=models.VectorParams(size=2, distance=dist))
    c.upsert(n, points=[models.PointStruct(id=i, vector=v) for i, v in
                        enumerate([[0.0, 0.0], [1.0, 1.0], [3.0, 4.0], [-1.0, 0.5]], start=1)])
    out["dist_" + dist.value] = hits(c.query_points(n, query=[1.0, 1.0], limit=4).points)
    c.delete_collection(n)

# --- named vectors, `using` ---
c.create_collection("sdk_named", vectors_config={
    "text": models.VectorParams(size=2, distance=models.Distance.COSINE),
    "image": models.VectorParams(size=3, distance=models.Distance.EUCLID)})
c.upsert("sdk_named", points=[
    models.PointStruct(id=1, vector={"text": [1.0, 0.0], "image": [0.0, 0.0, 0.0]}),
    models.PointStruct(id=2, vector={"text": [0.0, 1.0], "image": [1.0, 1.0, 1.0]}),
])
out["named_text"] = hits(c.query_points("sdk_named", query=[0.1, 1.0], using="text").points)
out["named_image"] = hits(c.query_points("sdk_named", query=[0.0, 0.1, 0.0], using="image", with_vectors=["image"]).points)
named_info = c.get_collection("sdk_named").config.params.vectors
out["named_info"] = {k: [v.size, str(v.distance.value)] for k, v in named_info.items()}
c.delete_collection("sdk_named")

out["delete_collection"] = c.delete_collection(name)
out["exists_after_delete"] = c.collection_exists(name)
c.close()
print("RESULT " + json.dumps(out), flush=True)
