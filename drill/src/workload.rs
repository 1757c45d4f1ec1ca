//! What each request says: synthetic prompts and OpenAI request bodies.
//!
//! Prompts repeat from a small fixed set so that answers can be compared across
//! phases (the simulator answers each prompt the same way every time); which prompt
//! the N-th request gets depends only on the seed and N.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::plan::LoadPlan;

/// The synthetic prompts a drill without a prompt file sends.
pub const PROMPTS: &[&str] = &[
    "Summarise the causes of tail latency in model serving in two sentences.",
    "Write a haiku about a GPU running out of memory.",
    "Explain exponential backoff with jitter to a new engineer.",
    "List three ways a streaming API can fail halfway through an answer.",
    "What is the difference between time to first token and time per output token?",
    "Give a short checklist for a resilience game day.",
    "Translate 'the service is degraded but available' into French.",
    "Why does continuous batching raise throughput but also inter-token latency?",
];

/// The request shape, from the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestShape {
    /// `/v1/chat/completions`: `messages`, answers in `delta.content`.
    Chat,
    /// `/v1/completions`: `prompt`, answers in `choices[].text`.
    Completion,
    /// Anthropic `/v1/messages`: `messages`, answers in `content[]` blocks.
    Messages,
    /// `/v1/embeddings`: `input`, answers in `data[].embedding`; never streams.
    Embeddings,
    /// Qdrant `.../points/search`: `vector` and `limit`, answers in `result[].id`.
    QdrantSearch,
    /// Chroma v2 `.../query`: `query_embeddings` and `n_results`, answers in `ids[0]`.
    ChromaQuery,
}

impl RequestShape {
    /// Legacy completions for a path ending in `/completions` that is not chat,
    /// Anthropic messages for `/messages`, embeddings for `/embeddings`; chat
    /// otherwise.
    pub fn from_path(path: &str) -> Self {
        let p = path.trim_end_matches('/');
        if p.ends_with("/points/search") {
            RequestShape::QdrantSearch
        } else if p.starts_with("/api/v2/") && p.ends_with("/query") {
            RequestShape::ChromaQuery
        } else if p.ends_with("/completions") && !p.ends_with("/chat/completions") {
            RequestShape::Completion
        } else if p.ends_with("/messages") {
            RequestShape::Messages
        } else if p.ends_with("/embeddings") {
            RequestShape::Embeddings
        } else {
            RequestShape::Chat
        }
    }

    /// Whether the request is a vector search.
    pub fn is_search(self) -> bool {
        matches!(self, RequestShape::QdrantSearch | RequestShape::ChromaQuery)
    }
}

/// Pre-built request bodies, one per prompt, and the seeded choice among them.
#[derive(Debug, Clone)]
pub struct Workload {
    bodies: Vec<Bytes>,
    rng: ChaCha8Rng,
}

impl Workload {
    /// Bodies for `plan`; the prompt sequence is seeded by `plan.seed` on its own
    /// ChaCha stream, so it does not disturb the arrival schedule.
    pub fn new(plan: &LoadPlan) -> Self {
        let shape = RequestShape::from_path(&plan.path);
        let bodies = if shape.is_search() {
            query_vectors(plan.seed, PROMPTS.len(), plan.dims as usize)
                .iter()
                .map(|v| Bytes::from(search_body(shape, plan, v).to_string()))
                .collect()
        } else {
            PROMPTS
                .iter()
                .map(|p| Bytes::from(request_body(shape, plan, p).to_string()))
                .collect()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        rng.set_stream(1);
        Self { bodies, rng }
    }

    /// The scripted simulator answers (`sim_answer`) of `prompts`, by the body
    /// each prompt's requests carry, percent-encoded for the header.
    pub fn sim_answers(
        &self,
        prompts: &[serde_json::Value],
    ) -> std::collections::HashMap<Bytes, http::HeaderValue> {
        let mut out = std::collections::HashMap::new();
        if self.bodies.len() != prompts.len() {
            return out;
        }
        for (body, line) in self.bodies.iter().zip(prompts) {
            if let Some(v) = line["sim_answer"]
                .as_str()
                .and_then(|a| http::HeaderValue::from_str(&percent_encode(a)).ok())
            {
                out.insert(body.clone(), v);
            }
        }
        out
    }

    /// Bodies from prompt-file lines (`{"messages": [...]}` or `{"prompt": "..."}`,
    /// see [`crate::scenario::load_prompts`]) instead of the built-in prompts; an
    /// empty list falls back to them. Chat and Anthropic messages requests send
    /// `messages` as given; completions and embeddings send `prompt`, or the last
    /// message's text.
    pub fn with_prompts(plan: &LoadPlan, prompts: &[serde_json::Value]) -> Self {
        let mut w = Self::new(plan);
        if prompts.is_empty() {
            return w;
        }
        let shape = RequestShape::from_path(&plan.path);
        w.bodies = prompts
            .iter()
            .map(|line| {
                if shape.is_search() {
                    let v: Vec<f64> = line["vector"]
                        .as_array()
                        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                        .unwrap_or_default();
                    return Bytes::from(search_body(shape, plan, &v).to_string());
                }
                let text = line["prompt"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        line["messages"]
                            .as_array()
                            .and_then(|m| m.last())
                            .and_then(|m| m["content"].as_str())
                            .unwrap_or_default()
                            .to_owned()
                    });
                let mut body = request_body(shape, plan, &text);
                if matches!(shape, RequestShape::Chat | RequestShape::Messages)
                    && line["messages"].is_array()
                {
                    body["messages"] = line["messages"].clone();
                }
                Bytes::from(body.to_string())
            })
            .collect();
        w
    }

    /// The body of the next request (call once per request, in sequence order),
    /// with the index of its prompt in [`PROMPTS`].
    pub fn next_body(&mut self) -> (usize, Bytes) {
        let i = self.rng.random_range(0..self.bodies.len());
        (i, self.bodies[i].clone())
    }
}

/// `n` seeded unit vectors of dimension `dims`: the built-in search queries. Each
/// coordinate is a sum of uniforms (close to Gaussian), so the directions spread
/// over the sphere rather than the cube's corners.
pub fn query_vectors(seed: u64, n: usize, dims: usize) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2);
    (0..n)
        .map(|_| {
            let mut v: Vec<f64> = (0..dims.max(1))
                .map(|_| (0..4).map(|_| rng.random::<f64>() - 0.5).sum())
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

fn search_body(shape: RequestShape, plan: &LoadPlan, v: &[f64]) -> serde_json::Value {
    if shape == RequestShape::ChromaQuery {
        json!({"query_embeddings": [v], "n_results": plan.top_k, "include": ["distances"]})
    } else {
        json!({"vector": v, "limit": plan.top_k, "with_payload": false})
    }
}

fn request_body(shape: RequestShape, plan: &LoadPlan, prompt: &str) -> serde_json::Value {
    let mut body = match shape {
        RequestShape::Chat => json!({
            "model": plan.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": plan.max_tokens,
        }),
        RequestShape::Completion => json!({
            "model": plan.model,
            "prompt": prompt,
            "max_tokens": plan.max_tokens,
        }),
        RequestShape::Messages => {
            let mut body = json!({
                "model": plan.model,
                "max_tokens": plan.max_tokens,
                "messages": [{"role": "user", "content": prompt}],
            });
            if plan.stream {
                body["stream"] = json!(true);
            }
            return body;
        }
        RequestShape::Embeddings => {
            return json!({"model": plan.model, "input": prompt});
        }
        RequestShape::QdrantSearch | RequestShape::ChromaQuery => {
            let v = query_vectors(plan.seed, 1, plan.dims as usize);
            return search_body(shape, plan, &v[0]);
        }
    };
    if plan.stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// `%XX` for every byte that cannot stand in a header value as itself (and for
/// `%`), so any UTF-8 answer survives the trip; the simulator decodes it.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_from_path() {
        assert_eq!(
            RequestShape::from_path("/v1/chat/completions"),
            RequestShape::Chat
        );
        assert_eq!(
            RequestShape::from_path("/v1/completions"),
            RequestShape::Completion
        );
        assert_eq!(
            RequestShape::from_path("/v1/completions/"),
            RequestShape::Completion
        );
        assert_eq!(
            RequestShape::from_path("/v1/messages"),
            RequestShape::Messages
        );
        assert_eq!(
            RequestShape::from_path("/v1/embeddings"),
            RequestShape::Embeddings
        );
    }

    #[test]
    fn anthropic_and_embedding_bodies() {
        let mut plan = LoadPlan::new("http://127.0.0.1:1".parse().unwrap());
        plan.path = "/v1/messages".into();
        plan.stream = true;
        let lines = vec![json!({"messages": [{"role": "user", "content": "yo"}]})];
        let body: serde_json::Value =
            serde_json::from_slice(&Workload::with_prompts(&plan, &lines).next_body().1).unwrap();
        assert_eq!(body["messages"][0]["content"], "yo");
        assert_eq!(body["stream"], true);
        assert!(body.get("stream_options").is_none());
        assert_eq!(body["max_tokens"], 32);
        plan.path = "/v1/embeddings".into();
        let body: serde_json::Value =
            serde_json::from_slice(&Workload::with_prompts(&plan, &lines).next_body().1).unwrap();
        assert_eq!(body["input"], "yo");
        assert!(body.get("stream").is_none() && body.get("max_tokens").is_none());
    }

    #[test]
    fn search_bodies() {
        let mut plan = LoadPlan::new("http://127.0.0.1:1".parse().unwrap());
        plan.path = "/collections/docs/points/search".into();
        plan.top_k = 5;
        plan.dims = 8;
        let body: serde_json::Value =
            serde_json::from_slice(&Workload::new(&plan).next_body().1).unwrap();
        let v = body["vector"].as_array().unwrap();
        assert_eq!(v.len(), 8);
        let norm: f64 = v.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-9, "{norm}");
        assert_eq!(body["limit"], 5);
        plan.path = "/api/v2/tenants/t/databases/d/collections/abc/query".into();
        let lines = vec![json!({"vector": [0.5, 0.25]})];
        let body: serde_json::Value =
            serde_json::from_slice(&Workload::with_prompts(&plan, &lines).next_body().1).unwrap();
        assert_eq!(body["query_embeddings"], json!([[0.5, 0.25]]));
        assert_eq!(body["n_results"], 5);
        assert_eq!(query_vectors(3, 4, 8), query_vectors(3, 4, 8));
        assert_ne!(query_vectors(3, 4, 8), query_vectors(4, 4, 8));
    }

    #[test]
    fn prompt_sequence_is_seeded() {
        let plan = LoadPlan::new("http://127.0.0.1:1".parse().unwrap());
        let seq = |plan: &LoadPlan| {
            let mut w = Workload::new(plan);
            (0..50).map(|_| w.next_body().0).collect::<Vec<_>>()
        };
        let a = seq(&plan);
        assert_eq!(a, seq(&plan));
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 3);
        let mut other = plan.clone();
        other.seed = 99;
        assert_ne!(a, seq(&other));
        let body: serde_json::Value =
            serde_json::from_slice(&Workload::new(&plan).next_body().1).unwrap();
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], 32);
    }
}
