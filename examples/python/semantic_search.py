#!/usr/bin/env python3
"""Semantic search over a few documents with a deterministic hashing embedding (no model to
download): each word and word pair is hashed to a signed position of a fixed-size vector, the
vector is L2-normalised, and Sluice's HNSW index finds the nearest documents by cosine.

    python examples/python/semantic_search.py --url http://127.0.0.1:8080 "fast storage engines"

It creates a collection (``--collection``, deleted at the end unless ``--keep``), writes the
documents through the vector batch writer, then answers each query with and without a
metadata filter.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import sys
from typing import List

import sluice

DIM = 256

DOCS = [
    ("rust-wal", "databases", 2024, "A write-ahead log with group commit makes every write durable before it is acknowledged."),
    ("hnsw", "search", 2023, "HNSW graphs find approximate nearest neighbours of an embedding vector quickly."),
    ("gorilla", "databases", 2015, "Gorilla compression stores time series points in about one and a half bytes each."),
    ("replication", "databases", 2022, "Replicas apply a primary's compressed log and serve reads; a replica can be promoted."),
    ("tokenizer", "nlp", 2021, "A tokenizer splits text into words before an embedding model turns them into vectors."),
    ("bm25", "search", 2009, "BM25 ranks documents by term frequency and inverse document frequency of the query words."),
    ("grafana", "observability", 2020, "Dashboards plot metrics such as cpu usage and memory over time for every server."),
    ("prometheus", "observability", 2016, "Prometheus scrapes metrics endpoints and stores samples as time series."),
    ("lsm", "databases", 2019, "Log-structured merge trees turn random writes into sequential writes on storage."),
    ("cosine", "search", 2018, "Cosine similarity compares the direction of two vectors regardless of their length."),
]


def embed(text: str, dim: int = DIM) -> List[float]:
    """A deterministic bag-of-words-and-bigrams hashing embedding."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    feats = words + [a + "_" + b for a, b in zip(words, words[1:])]
    v = [0.0] * dim
    for f in feats:
        h = hashlib.blake2b(f.encode(), digest_size=8).digest()
        idx = int.from_bytes(h[:4], "little") % dim
        sign = 1.0 if h[4] & 1 else -1.0
        v[idx] += sign * (0.5 if "_" in f else 1.0)
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("queries", nargs="*", default=["nearest neighbour vector search", "durable writes to storage", "metrics dashboards"])
    ap.add_argument("--url", default=os.environ.get("SLUICE_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=os.environ.get("SLUICE_TOKEN"))
    ap.add_argument("--collection", default="semantic_demo")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the collection afterwards")
    args = ap.parse_args(argv)

    client = sluice.Client(args.url, args.token)
    try:
        client.collections.delete(args.collection)
    except sluice.NotFound:
        pass
    client.collections.create(args.collection, DIM, distance="cosine")
    with client.vectors.batch_writer(collection=args.collection) as w:
        for pk, category, year, text in DOCS:
            w.add(pk, embed(text), {"category": category, "year": year, "text": text})
    for q in args.queries:
        print(f"query: {q!r}")
        for r in client.vectors.search(embed(q), args.k, collection=args.collection):
            print(f"  {r.score:6.3f}  {r.pk:12s} {r.metadata['text']}")
        recent = client.vectors.search(embed(q), args.k, filter={"year": {"$gte": 2020}, "category": {"$in": ["databases", "search"]}}, collection=args.collection)
        print("  since 2020, databases or search: " + ", ".join(r.pk for r in recent))
    if not args.keep:
        client.collections.delete(args.collection)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
