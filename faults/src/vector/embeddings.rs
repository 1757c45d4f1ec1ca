//! Embeddings answers: `embedding_noise` and `embedding_truncate`.
//!
//! Shapes: OpenAI `/v1/embeddings` `{"data":[{"embedding":[...]|"<base64>"}]}`
//! (base64 is little-endian f32, and what the `openai` SDK asks for by default),
//! Ollama `/api/embed` `{"embeddings":[[...]]}` and the older `/api/embeddings`
//! `{"embedding":[...]}`, and TEI `/embed` `[[...]]`.
//!
//! Only the vectors are rewritten, in place (see [`super::span`]): `model`, `usage`,
//! `index` and every other byte stay as the upstream sent them, and the components
//! `embedding_truncate` keeps keep their exact text.

use std::ops::Range;

use rand_chacha::ChaCha8Rng;

use super::span::{self, ArrayFmt, Node};
use super::{b64, gauss, Rewrite, Skip};
use crate::fault::{BodyFault, EmbeddingsFault};
use crate::stream::StreamPlan;

/// Depth read into nodes: OpenAI's `data[i].embedding[j]` is the deepest.
const KEEP_DEPTH: usize = 4;

/// One vector component: its value, and its text while no fault has changed it.
struct Comp {
    value: f64,
    orig: Option<Range<usize>>,
}

enum Where {
    /// A JSON array of numbers.
    Floats(ArrayFmt),
    /// A base64 string of little-endian f32s (the span includes the quotes).
    Base64(Range<usize>),
}

/// One embedding as found in the body.
struct Vector {
    at: Where,
    comps: Vec<Comp>,
    changed: bool,
}

fn is_floats(v: &Node<'_>) -> bool {
    v.elements().is_some_and(|a| a.iter().all(Node::is_number))
}

fn floats(src: &str, v: &Node<'_>) -> Result<Vector, Skip> {
    let at = Where::Floats(ArrayFmt::of(v).ok_or(Skip::UnknownShape)?);
    let comps = v
        .elements()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            c.as_f64(src).map(|value| Comp {
                value,
                orig: Some(c.span.clone()),
            })
        })
        .collect();
    Ok(Vector {
        at,
        comps,
        changed: false,
    })
}

fn base64(src: &str, v: &Node<'_>) -> Result<Vector, Skip> {
    // Base64 bodies that do not decode to f32s are not embeddings brownout knows.
    let text = v.as_str(src).ok_or(Skip::UnknownShape)?;
    let comps = b64::decode(&text)
        .and_then(|b| f32s(&b))
        .ok_or(Skip::UnknownShape)?
        .into_iter()
        .map(|value| Comp { value, orig: None })
        .collect();
    Ok(Vector {
        at: Where::Base64(v.span.clone()),
        comps,
        changed: false,
    })
}

/// Every embedding in the answer, or why the body is not one.
fn vectors(src: &str, root: &Node<'_>) -> Result<Vec<Vector>, Skip> {
    if let Some(rows) = root.elements() {
        if rows.iter().all(is_floats) {
            return rows.iter().map(|r| floats(src, r)).collect();
        }
        return Err(Skip::UnknownShape);
    }
    if !root.is_object() {
        return Err(Skip::UnknownShape);
    }
    if let Some(rows) = root
        .get("embeddings")
        .and_then(Node::elements)
        .filter(|rows| rows.iter().all(is_floats))
    {
        return rows.iter().map(|r| floats(src, r)).collect();
    }
    if let Some(e) = root.get("embedding").filter(|e| is_floats(e)) {
        return Ok(vec![floats(src, e)?]);
    }
    let data = root
        .get("data")
        .and_then(Node::elements)
        .ok_or(Skip::UnknownShape)?;
    let mut out = Vec::with_capacity(data.len());
    for item in data {
        match item.get("embedding") {
            Some(e) if is_floats(e) => out.push(floats(src, e)?),
            Some(e) if e.is_string() => out.push(base64(src, e)?),
            _ => return Err(Skip::UnknownShape),
        }
    }
    Ok(out)
}

/// What one fault does to one vector; `false` when it changed nothing.
fn apply(fault: &EmbeddingsFault, v: &mut Vec<Comp>, rng: &mut ChaCha8Rng) -> bool {
    match fault {
        EmbeddingsFault::EmbeddingNoise(crate::fault::EmbeddingNoise { stddev }) => {
            for c in v.iter_mut() {
                c.value += stddev * gauss(rng);
                c.orig = None;
            }
            !v.is_empty()
        }
        EmbeddingsFault::EmbeddingTruncate(crate::fault::EmbeddingTruncate { dims }) => {
            let d = usize::try_from(*dims).unwrap_or(usize::MAX);
            if v.len() > d {
                v.truncate(d);
                true
            } else {
                false
            }
        }
    }
}

fn f32s(bytes: &[u8]) -> Option<Vec<f64>> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    )
}

/// Apply the plan's embedding faults to an embeddings answer, in plan order.
pub(crate) fn rewrite(
    body: &[u8],
    plan: &StreamPlan,
    rng: &mut ChaCha8Rng,
) -> Result<Rewrite, Skip> {
    let src = std::str::from_utf8(body).map_err(|_| Skip::NotJson)?;
    let root = span::parse(src, KEEP_DEPTH).ok_or(Skip::NotJson)?;
    let mut vs = vectors(src, &root)?;
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    for (rule, fault) in plan.faults() {
        let embedding = match fault {
            BodyFault::Embeddings(f) => f,
            BodyFault::Results(_) => {
                skipped.push((rule, fault.kind(), Skip::WrongEndpoint));
                continue;
            }
            // Not vector faults: the caller handles them.
            BodyFault::Stream(_) | BodyFault::Content(_) => continue,
        };
        let mut any = false;
        for v in &mut vs {
            let changed = apply(embedding, &mut v.comps, rng);
            v.changed |= changed;
            any |= changed;
        }
        if any {
            applied.push((rule, fault.kind()));
        } else {
            skipped.push((rule, fault.kind(), Skip::NothingToChange));
        }
    }
    if applied.is_empty() {
        return Ok(Rewrite {
            body: bytes::Bytes::copy_from_slice(body),
            applied,
            skipped,
            results: None,
        });
    }
    let mut edits = Vec::new();
    for v in vs.into_iter().filter(|v| v.changed) {
        match &v.at {
            Where::Floats(fmt) => {
                let items: Vec<std::borrow::Cow<'_, str>> = v
                    .comps
                    .iter()
                    .map(|c| match &c.orig {
                        Some(r) => src[r.clone()].into(),
                        None => serde_json::Number::from_f64(c.value)
                            .map_or_else(|| "null".to_string(), |n| n.to_string())
                            .into(),
                    })
                    .collect();
                edits.push((fmt.span.clone(), fmt.write(src, &items)));
            }
            Where::Base64(at) => {
                let bytes: Vec<u8> = v
                    .comps
                    .iter()
                    .flat_map(|c| (c.value as f32).to_le_bytes())
                    .collect();
                edits.push((at.clone(), format!("\"{}\"", b64::encode(&bytes))));
            }
        }
    }
    Ok(Rewrite {
        body: bytes::Bytes::from(span::splice(src, edits)),
        applied,
        skipped,
        results: None,
    })
}
