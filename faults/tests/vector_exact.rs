//! Vector rewrites are exact: every value a fault does not change reaches the client
//! byte for byte. Scores like `0.21234214144787922` (which a parse to f64 and back
//! turns into `0.2123421414478792`), ids beyond 2^53 and UUIDs, payloads with
//! `\u00e9` escapes, key order and whitespace: the kept hits' text must be a
//! substring of the output unchanged, and so must everything around the hit lists.
//!
//! Each answer is built from fixed text (`pieces`) around hit lists, so the check
//! reads the output back piece by piece and hit by hit, with no JSON library in
//! between to hide a changed digit.

use std::sync::Arc;

use brownout_faults::api::{ApiKind, Endpoint};
use brownout_faults::decide::rng_for;
use brownout_faults::fault;
use brownout_faults::profile::FaultSpec;
use brownout_faults::stream::StreamPlan;
use brownout_faults::vector::{rewrite, StaleCache};
use serde_json::Value;

/// One hit (or, for Chroma, one element of one parallel list): its text with
/// `{S}` where its score goes, and the score's text.
#[derive(Clone)]
struct Cand {
    tmpl: String,
    score: Option<String>,
}

impl Cand {
    fn exact(t: &str) -> Cand {
        Cand {
            tmpl: t.to_string(),
            score: None,
        }
    }

    fn scored(t: &str, s: &str) -> Cand {
        assert!(t.contains("{S}"));
        Cand {
            tmpl: t.to_string(),
            score: Some(s.to_string()),
        }
    }

    fn text(&self) -> String {
        match &self.score {
            Some(s) => self.tmpl.replace("{S}", s),
            None => self.tmpl.clone(),
        }
    }
}

/// One hit list in the answer: its elements, the separator written between them,
/// and the query it belongs to (Chroma's parallel lists of one query share it).
struct List {
    elems: Vec<Cand>,
    sep: &'static str,
    query: usize,
}

/// An answer: `pieces[0] list[0] pieces[1] list[1] ... pieces[n]`.
struct Answer {
    api: ApiKind,
    endpoint: Endpoint,
    pieces: Vec<String>,
    lists: Vec<List>,
    /// `empty_results` answers with an error inside a 200 (Milvus, Weaviate).
    error_when_empty: bool,
}

impl Answer {
    fn body(&self) -> String {
        let mut out = self.pieces[0].clone();
        for (l, piece) in self.lists.iter().zip(&self.pieces[1..]) {
            out.push('[');
            let items: Vec<String> = l.elems.iter().map(Cand::text).collect();
            out.push_str(&items.join(l.sep));
            out.push(']');
            out.push_str(piece);
        }
        out
    }

    fn queries(&self) -> usize {
        self.lists.iter().map(|l| l.query + 1).max().unwrap_or(0)
    }
}

/// Read `out` back against the answer's frame: the pieces must come back exactly,
/// and each list must hold only elements of `from` (exactly, or with another number
/// as score when `noisy`). Returns, per list, the original indices kept, in order.
fn read_back(out: &str, frame: &Answer, from: &Answer, noisy: bool) -> Vec<Vec<usize>> {
    let mut pos = 0;
    let mut kept = Vec::new();
    let expect = |pos: &mut usize, s: &str| {
        assert!(
            out[*pos..].starts_with(s),
            "expected {s:?} at {pos}, found {:?}\nin {out}",
            &out[*pos..(*pos + s.len() + 20).min(out.len())]
        );
        *pos += s.len();
    };
    let ws = |pos: &mut usize| {
        while out[*pos..].starts_with([' ', '\n', '\t', '\r']) {
            *pos += 1;
        }
    };
    expect(&mut pos, &frame.pieces[0]);
    for (li, piece) in frame.pieces[1..].iter().enumerate() {
        let cands = &from.lists[li].elems;
        let mut idx = Vec::new();
        expect(&mut pos, "[");
        ws(&mut pos);
        if out[pos..].starts_with(']') {
            pos += 1;
        } else {
            loop {
                // The next original element first (order is usually kept), then
                // the others; a match must end where the element ends.
                let next = idx.len();
                let order = (next..cands.len()).chain(0..next.min(cands.len()));
                let ends = |rest: &str, len: usize| {
                    rest[len..].starts_with([',', ']', ' ', '\n', '\t', '\r'])
                };
                let hit = order.map(|i| (i, &cands[i])).find_map(|(i, c)| {
                    let rest = &out[pos..];
                    if !noisy || c.score.is_none() {
                        let t = c.text();
                        return (rest.starts_with(&t) && ends(rest, t.len()))
                            .then_some((i, t.len()));
                    }
                    let (pre, post) = c.tmpl.split_once("{S}").expect("tmpl");
                    let after = rest.strip_prefix(pre)?;
                    let n = after
                        .find(|ch: char| !matches!(ch, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
                        .unwrap_or(after.len());
                    let num = &after[..n];
                    num.parse::<f64>().ok()?;
                    let len = pre.len() + n + post.len();
                    (after[n..].starts_with(post) && ends(rest, len)).then_some((i, len))
                });
                let Some((i, len)) = hit else {
                    panic!(
                        "list {li}: no original hit at {pos}: {:?}\nin {out}",
                        &out[pos..(pos + 80).min(out.len())]
                    );
                };
                idx.push(i);
                pos += len;
                ws(&mut pos);
                if out[pos..].starts_with(',') {
                    pos += 1;
                    ws(&mut pos);
                } else {
                    expect(&mut pos, "]");
                    break;
                }
            }
        }
        expect(&mut pos, piece);
        kept.push(idx);
    }
    assert_eq!(pos, out.len(), "trailing text in {out}");
    kept
}

// --- Hits that a parse to f64 (or to a sorted map) and back would change ---

const SCORES: &[&str] = &[
    "0.21234214144787922",
    "1e-7",
    "0.30000000000000004",
    "0.1000000000000000055511151231257827",
    "5E-1",
    "-0.0",
    "0.91000000000000003",
    "1.0",
    "2.50",
];

fn score(i: usize) -> String {
    match SCORES.get(i) {
        Some(s) => s.to_string(),
        // Seventeen significant digits, not the shortest form: a re-serialiser
        // rewrites most of them.
        None => format!("{:.17}", 0.9 - i as f64 * 0.0137),
    }
}

fn qdrant_hit(i: usize, v: usize) -> Cand {
    let t = match i {
        0 => format!(
            r#"{{"id":18446744073709551615,"version":{v},"score":{{S}},"payload":{{"title":"caf\u00e9","z":1,"a":[1.0,2.50]}},"vector":null}}"#
        ),
        1 => format!(
            r#"{{"id":"5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "version" : {v}, "score": {{S}}, "payload": {{"n": 0.30000000000000004, "s": "\ud83d\ude00 \"q\" \/"}}}}"#
        ),
        2 => format!(r#"{{"score":{{S}},"id":9007199254740993,"version":{v},"payload":{{}}}}"#),
        3 => format!(
            r#"{{"id":3,"version":{v},"score":{{S}},"payload":{{"big":123456789012345678901234567890,"e":1E+2}}}}"#
        ),
        _ => format!(
            r#"{{"id":"00000000-0000-0000-0000-{i:012}","version":{v},"score":{{S}},"payload":{{"rank":{i},"w":"\u00fcber"}}}}"#
        ),
    };
    Cand::scored(&t, &score(i))
}

fn qdrant_list(n: usize, v: usize, sep: &'static str, query: usize) -> List {
    List {
        elems: (0..n).map(|i| qdrant_hit(i, v)).collect(),
        sep,
        query,
    }
}

const QDRANT_TAIL: &str =
    r#","status":"ok","time":0.000123400000000000001, "usage": {"cpu": 1, "payload_io_read": 0}}"#;

fn answers(v: usize) -> Vec<(&'static str, Answer)> {
    let s = |x: &str| x.to_string();
    vec![
        (
            "qdrant search",
            Answer {
                api: ApiKind::Qdrant,
                endpoint: Endpoint::Search,
                pieces: vec![s(r#"{"result":"#), s(QDRANT_TAIL)],
                lists: vec![qdrant_list(25, v, ",", 0)],
                error_when_empty: false,
            },
        ),
        (
            "qdrant search, pretty-printed",
            Answer {
                api: ApiKind::Qdrant,
                endpoint: Endpoint::Search,
                pieces: vec![s("{\n  \"result\": "), s(",\n  \"status\": \"ok\"\n}\n")],
                lists: vec![qdrant_list(12, v, ",\n    ", 0)],
                error_when_empty: false,
            },
        ),
        (
            "qdrant query",
            Answer {
                api: ApiKind::Qdrant,
                endpoint: Endpoint::Query,
                pieces: vec![s(r#"{"result":{"points":"#), format!("}}{QDRANT_TAIL}")],
                lists: vec![qdrant_list(10, v, ",", 0)],
                error_when_empty: false,
            },
        ),
        (
            "qdrant search/batch",
            Answer {
                api: ApiKind::Qdrant,
                endpoint: Endpoint::Search,
                pieces: vec![s(r#"{"result":["#), s(", "), format!("]{QDRANT_TAIL}")],
                lists: vec![qdrant_list(6, v, ",", 0), qdrant_list(5, v, ",", 1)],
                error_when_empty: false,
            },
        ),
        (
            "qdrant query/batch",
            Answer {
                api: ApiKind::Qdrant,
                endpoint: Endpoint::Query,
                pieces: vec![
                    s(r#"{"result":[{"points":"#),
                    s(r#","usage":{"x":1.50}},{"points":"#),
                    format!("}}]{QDRANT_TAIL}"),
                ],
                lists: vec![qdrant_list(6, v, ",", 0), qdrant_list(4, v, ",", 1)],
                error_when_empty: false,
            },
        ),
        ("chroma", chroma(v)),
        (
            "milvus",
            Answer {
                api: ApiKind::Milvus,
                endpoint: Endpoint::Search,
                pieces: vec![
                    s(r#"{"code":0,"cost":6,"data":"#),
                    s(r#","topks":[8],"note":"\u00e9"}"#),
                ],
                lists: vec![List {
                    elems: (0..8)
                        .map(|i| {
                            Cand::scored(
                                &format!(
                                    r#"{{"id":{},"distance":{{S}},"title":"t\u00e9{i}{v}","pk":"4489{i}"}}"#,
                                    9007199254740993u64 + i as u64
                                ),
                                &score(i),
                            )
                        })
                        .collect(),
                    sep: ",",
                    query: 0,
                }],
                error_when_empty: true,
            },
        ),
        (
            "milvus nested",
            Answer {
                api: ApiKind::Milvus,
                endpoint: Endpoint::Search,
                pieces: vec![s(r#"{"code":0,"data":["#), s(","), s(r#"],"cost":0}"#)],
                lists: (0..2)
                    .map(|q| List {
                        elems: (0..4)
                            .map(|i| {
                                Cand::scored(
                                    &format!(r#"{{"id":1{q}{i}{v},"distance":{{S}}}}"#),
                                    &score(i + q),
                                )
                            })
                            .collect(),
                        sep: ",",
                        query: q,
                    })
                    .collect(),
                error_when_empty: true,
            },
        ),
        (
            "weaviate",
            Answer {
                api: ApiKind::Weaviate,
                endpoint: Endpoint::Search,
                pieces: vec![
                    s(r#"{"data":{"Get":{"Article":"#),
                    s(r#","Other":"#),
                    s(r#"}}}"#),
                ],
                lists: (0..2)
                    .map(|q| List {
                        elems: (0..5)
                            .map(|i| {
                                Cand::scored(
                                    &format!(
                                        r#"{{"title":"caf\u00e9 {q}{i}{v}","_additional":{{"id":"00000000-0000-0000-0000-00000000000{i}","distance":{{S}}}}}}"#
                                    ),
                                    &score(i + 1),
                                )
                            })
                            .collect(),
                        sep: ",",
                        query: q,
                    })
                    .collect(),
                error_when_empty: true,
            },
        ),
        (
            "pinecone",
            Answer {
                api: ApiKind::Pinecone,
                endpoint: Endpoint::Query,
                pieces: vec![
                    s(r#"{"results":[],"matches":"#),
                    s(r#","namespace":"ns","usage":{"readUnits":5}}"#),
                ],
                lists: vec![List {
                    elems: (0..7)
                        .map(|i| {
                            Cand::scored(
                                &format!(
                                    r#"{{"id":"v{i}-{v}","score":{{S}},"values":[0.21234214144787922,1e-7],"metadata":{{"g":"\u00e9"}}}}"#
                                ),
                                &score(i),
                            )
                        })
                        .collect(),
                    sep: ", ",
                    query: 0,
                }],
                error_when_empty: false,
            },
        ),
    ]
}

/// Chroma: `ids`, `embeddings`, `documents`, `metadatas`, `distances`, one inner
/// list per query, every list rewritten together.
fn chroma(v: usize) -> Answer {
    let lens = [6, 4];
    let col = |name: &str| -> Vec<List> {
        lens.iter()
            .enumerate()
            .map(|(q, &n)| List {
                elems: (0..n)
                    .map(|i| match name {
                        "ids" => Cand::exact(&format!(r#""id-{q}-{i}-{v}-\u00e9""#)),
                        "embeddings" => {
                            Cand::exact(&format!("[0.21234214144787922, 1e-7,2.50,{i}]"))
                        }
                        "documents" => Cand::exact(&format!(r#""doc \"{q}{i}\" caf\u00e9""#)),
                        "metadatas" => {
                            if i == 2 {
                                Cand::exact("null")
                            } else {
                                Cand::exact(&format!(r#"{{"z":{i},"a":0.30000000000000004}}"#))
                            }
                        }
                        _ => Cand::scored("{S}", &score(i + q)),
                    })
                    .collect(),
                sep: ", ",
                query: q,
            })
            .collect()
    };
    let mut lists = Vec::new();
    let mut pieces = vec!["{".to_string()];
    for name in ["ids", "embeddings", "documents", "metadatas", "distances"] {
        let last = pieces.pop().expect("piece");
        pieces.push(format!("{last}\"{name}\":["));
        for (q, l) in col(name).into_iter().enumerate() {
            if q > 0 {
                pieces.push(",".to_string());
            }
            lists.push(l);
        }
        pieces.push("],".to_string());
    }
    let last = pieces.pop().expect("piece");
    pieces.push(format!(
        r#"{last}"uris":null,"data":null,"included":["distances","documents","metadatas","embeddings"]}}"#
    ));
    // `lists` holds every column's lists of query 0 and 1 in turn; their `query`
    // fields say which go together.
    Answer {
        api: ApiKind::Chroma,
        endpoint: Endpoint::Query,
        pieces,
        lists,
        error_when_empty: false,
    }
}

fn plan(f: &FaultSpec) -> StreamPlan {
    let mut p = StreamPlan::new();
    assert!(p.push(0, f));
    p
}

fn run(a: &Answer, f: &FaultSpec, seed: u64) -> (String, Vec<&'static str>) {
    let body = a.body();
    serde_json::from_str::<Value>(&body).unwrap_or_else(|e| panic!("test body: {e}\n{body}"));
    let mut rng = rng_for(seed, 1, 1);
    let none = |_: usize| None;
    let rw = rewrite(
        a.api,
        a.endpoint,
        body.as_bytes(),
        &plan(f),
        &mut rng,
        &none,
        "/c",
    )
    .expect("known shape");
    let out = String::from_utf8(rw.body.to_vec()).expect("utf-8");
    serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("output: {e}\n{out}"));
    (out, rw.applied.iter().map(|(_, k)| *k).collect())
}

/// Chroma's parallel lists of one query keep the same positions.
fn same_per_query(a: &Answer, kept: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut per = vec![None; a.queries()];
    for (l, k) in a.lists.iter().zip(kept) {
        match &per[l.query] {
            None => per[l.query] = Some(k.clone()),
            Some(p) => assert_eq!(p, k, "parallel lists disagree"),
        }
    }
    per.into_iter().map(Option::unwrap_or_default).collect()
}

#[test]
fn kept_hits_and_everything_around_them_are_byte_identical() {
    for (name, a) in answers(0) {
        let lens: Vec<usize> = {
            let mut l = vec![0; a.queries()];
            for list in &a.lists {
                l[list.query] = list.elems.len();
            }
            l
        };
        for seed in 0..5 {
            // drop_results: round(k/2) of each list gone, the rest in order.
            let (out, applied) = run(
                &a,
                &FaultSpec::DropResults(fault::DropResults { fraction: 0.5 }),
                seed,
            );
            assert_eq!(applied, ["drop_results"], "{name}");
            let kept = same_per_query(&a, &read_back(&out, &a, &a, false));
            for (k, n) in kept.iter().zip(&lens) {
                assert_eq!(k.len(), n - (*n as f64 * 0.5).round() as usize, "{name}");
                assert!(k.windows(2).all(|w| w[0] < w[1]), "{name}: order kept");
            }

            // shuffle_results: the same hits, in another order.
            let (out, _) = run(
                &a,
                &FaultSpec::ShuffleResults(fault::ShuffleResults {}),
                seed,
            );
            let kept = same_per_query(&a, &read_back(&out, &a, &a, false));
            let mut moved = false;
            for (k, n) in kept.iter().zip(&lens) {
                let mut sorted = k.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..*n).collect::<Vec<_>>(), "{name}");
                moved |= *k != sorted;
            }
            assert!(moved, "{name}");
        }

        // limit_results: the first `max` of each list.
        let (out, _) = run(
            &a,
            &FaultSpec::LimitResults(fault::LimitResults { max: 3 }),
            1,
        );
        let kept = same_per_query(&a, &read_back(&out, &a, &a, false));
        for (k, n) in kept.iter().zip(&lens) {
            assert_eq!(*k, (0..(*n).min(3)).collect::<Vec<_>>(), "{name}");
        }

        // empty_results: empty lists in an otherwise identical answer (or the
        // database's error inside a 200).
        let (out, _) = run(&a, &FaultSpec::EmptyResults(fault::EmptyResults {}), 1);
        if a.error_when_empty {
            let v: Value = serde_json::from_str(&out).expect("json");
            assert!(
                v.get("errors").is_some() || v["code"].as_i64().is_some_and(|c| c != 0),
                "{name}: {out}"
            );
        } else {
            let kept = read_back(&out, &a, &a, false);
            assert!(kept.iter().all(Vec::is_empty), "{name}");
        }

        // score_noise: every hit in place, only its score's digits new.
        let (out, applied) = run(
            &a,
            &FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: 0.1 }),
            1,
        );
        assert_eq!(applied, ["score_noise"], "{name}");
        assert_ne!(out, a.body(), "{name}");
        let kept = same_per_query(&a, &read_back(&out, &a, &a, true));
        for (k, n) in kept.iter().zip(&lens) {
            assert_eq!(*k, (0..*n).collect::<Vec<_>>(), "{name}");
        }
    }
}

#[test]
fn the_reported_case_twenty_five_hits_three_with_long_scores() {
    // The bug as seen: 3 of 25 kept Qdrant hits came back with their last digit
    // changed. Every kept hit's text must be in the output unchanged.
    let (_, a) = answers(0).swap_remove(0);
    let body = a.body();
    let (out, _) = run(
        &a,
        &FaultSpec::DropResults(fault::DropResults { fraction: 0.2 }),
        3,
    );
    let kept = read_back(&out, &a, &a, false);
    assert_eq!(kept[0].len(), 20);
    for i in &kept[0] {
        let hit = a.lists[0].elems[*i].text();
        assert!(body.contains(&hit));
        assert!(out.contains(&hit), "hit {i} changed: {hit}");
    }
}

#[test]
fn a_stale_answer_is_the_earlier_hits_byte_for_byte() {
    for (name, a) in answers(0) {
        let (_, b) = answers(1)
            .into_iter()
            .find(|(n, _)| *n == name)
            .expect("same");
        let cache = Arc::new(StaleCache::default());
        let lookup = |_: usize| Some(cache.clone());
        let p = plan(&FaultSpec::StaleResults(fault::StaleResults {
            depth: None,
        }));
        let mut rng = rng_for(1, 1, 1);
        let first = rewrite(
            a.api,
            a.endpoint,
            a.body().as_bytes(),
            &p,
            &mut rng,
            &lookup,
            "/c",
        )
        .expect("ok");
        assert_eq!(first.body, a.body().as_bytes(), "{name}: nothing earlier");
        let second = rewrite(
            b.api,
            b.endpoint,
            b.body().as_bytes(),
            &p,
            &mut rng,
            &lookup,
            "/c",
        )
        .expect("ok");
        assert!(!second.applied.is_empty(), "{name}");
        let out = String::from_utf8(second.body.to_vec()).expect("utf-8");
        // The frame (status, time, usage) is this answer's; the hits, the earlier one's.
        let kept = read_back(&out, &b, &a, false);
        for (k, l) in kept.iter().zip(&a.lists) {
            assert_eq!(*k, (0..l.elems.len()).collect::<Vec<_>>(), "{name}");
        }
    }
}

#[test]
fn a_pretty_printed_answer_keeps_its_layout() {
    let (_, a) = answers(0).swap_remove(1);
    let (out, _) = run(
        &a,
        &FaultSpec::LimitResults(fault::LimitResults { max: 3 }),
        1,
    );
    let hits: Vec<String> = a.lists[0].elems[..3].iter().map(Cand::text).collect();
    assert_eq!(
        out,
        format!("{}[{}]{}", a.pieces[0], hits.join(",\n    "), a.pieces[1])
    );
}

// --- Embeddings ---

const EMB_HEAD: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"#;
const EMB_TAIL: &str =
    r#"}],"model":"text-embedding-3-small","usage":{"total_tokens":2,"prompt_tokens":2}}"#;
const COMPONENTS: &[&str] = &[
    "0.21234214144787922",
    "-1.5E-3",
    "0.30000000000000004",
    "1e-7",
    "2.50",
    "-0.0",
];

#[test]
fn embedding_truncate_keeps_the_first_components_and_the_rest_exactly() {
    let body = format!("{EMB_HEAD}[{}]{EMB_TAIL}", COMPONENTS.join(", "));
    let mut rng = rng_for(1, 1, 1);
    let none = |_: usize| None;
    let rw = rewrite(
        ApiKind::Openai,
        Endpoint::Embeddings,
        body.as_bytes(),
        &plan(&FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate {
            dims: 4,
        })),
        &mut rng,
        &none,
        "/v1/embeddings",
    )
    .expect("ok");
    let out = String::from_utf8(rw.body.to_vec()).expect("utf-8");
    assert_eq!(
        out,
        format!("{EMB_HEAD}[{}]{EMB_TAIL}", COMPONENTS[..4].join(", "))
    );
}

#[test]
fn embedding_noise_changes_only_the_vectors() {
    let body = format!(
        r#"{{"model":"all-minilm","embeddings":[[{}],[0.5,0.25]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}}"#,
        COMPONENTS.join(",")
    );
    let mut rng = rng_for(1, 1, 1);
    let none = |_: usize| None;
    let rw = rewrite(
        ApiKind::Ollama,
        Endpoint::Embeddings,
        body.as_bytes(),
        &plan(&FaultSpec::EmbeddingNoise(fault::EmbeddingNoise {
            stddev: 0.01,
        })),
        &mut rng,
        &none,
        "/api/embed",
    )
    .expect("ok");
    let out = String::from_utf8(rw.body.to_vec()).expect("utf-8");
    assert!(out.starts_with(r#"{"model":"all-minilm","embeddings":[["#));
    assert!(out.ends_with(
        r#"]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#
    ));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["embeddings"][0].as_array().map(Vec::len), Some(6));
    assert_ne!(v["embeddings"][1][0], 0.5);
}
