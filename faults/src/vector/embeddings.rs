//! Embeddings answers: `embedding_noise` and `embedding_truncate`.
//!
//! Shapes: OpenAI `/v1/embeddings` `{"data":[{"embedding":[...]|"<base64>"}]}`
//! (base64 is little-endian f32, and what the `openai` SDK asks for by default),
//! Ollama `/api/embed` `{"embeddings":[[...]]}` and the older `/api/embeddings`
//! `{"embedding":[...]}`, and TEI `/embed` `[[...]]`.

use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::{b64, gauss, Rewrite, Skip};
use crate::profile::FaultSpec;
use crate::stream::StreamPlan;

/// One embedding as found in the body.
enum Vector<'a> {
    Floats(&'a mut Vec<Value>),
    Base64(&'a mut String),
}

fn is_floats(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_number))
}

/// Every embedding in the answer, or why the body is not one.
fn vectors(root: &mut Value) -> Result<Vec<Vector<'_>>, Skip> {
    match root {
        Value::Array(rows) if rows.iter().all(is_floats) => Ok(rows
            .iter_mut()
            .filter_map(|r| r.as_array_mut().map(Vector::Floats))
            .collect()),
        Value::Object(obj) => {
            if obj
                .get("embeddings")
                .is_some_and(|e| e.as_array().is_some_and(|rows| rows.iter().all(is_floats)))
            {
                return Ok(obj
                    .get_mut("embeddings")
                    .and_then(Value::as_array_mut)
                    .map(|rows| {
                        rows.iter_mut()
                            .filter_map(|r| r.as_array_mut())
                            .map(Vector::Floats)
                            .collect()
                    })
                    .unwrap_or_default());
            }
            if obj.get("embedding").is_some_and(is_floats) {
                return Ok(obj
                    .get_mut("embedding")
                    .and_then(Value::as_array_mut)
                    .map(|a| vec![Vector::Floats(a)])
                    .unwrap_or_default());
            }
            let data_ok = obj.get("data").and_then(Value::as_array).is_some_and(|d| {
                d.iter().all(|item| {
                    item.get("embedding")
                        .is_some_and(|e| is_floats(e) || e.is_string())
                })
            });
            if !data_ok {
                return Err(Skip::UnknownShape);
            }
            let mut out = Vec::new();
            if let Some(data) = obj.get_mut("data").and_then(Value::as_array_mut) {
                for item in data {
                    match item.get_mut("embedding") {
                        Some(Value::Array(a)) => out.push(Vector::Floats(a)),
                        Some(Value::String(s)) => out.push(Vector::Base64(s)),
                        _ => {}
                    }
                }
            }
            Ok(out)
        }
        _ => Err(Skip::UnknownShape),
    }
}

/// What one fault does to one vector; `false` when it changed nothing.
fn apply(fault: &FaultSpec, v: &mut Vec<f64>, rng: &mut ChaCha8Rng) -> bool {
    match fault {
        FaultSpec::EmbeddingNoise { stddev } => {
            for x in v.iter_mut() {
                *x += stddev * gauss(rng);
            }
            !v.is_empty()
        }
        FaultSpec::EmbeddingTruncate { dims } => {
            let d = usize::try_from(*dims).unwrap_or(usize::MAX);
            if v.len() > d {
                v.truncate(d);
                true
            } else {
                false
            }
        }
        _ => false,
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
    let mut root: Value = serde_json::from_slice(body).map_err(|_| Skip::NotJson)?;
    let mut vs = vectors(&mut root)?;
    // Base64 bodies that do not decode to f32s are not embeddings brownout knows.
    let mut decoded: Vec<Vec<f64>> = Vec::with_capacity(vs.len());
    for v in &vs {
        decoded.push(match v {
            Vector::Floats(a) => a.iter().filter_map(Value::as_f64).collect(),
            Vector::Base64(s) => b64::decode(s)
                .and_then(|b| f32s(&b))
                .ok_or(Skip::UnknownShape)?,
        });
    }
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    for (rule, fault) in plan.faults() {
        if fault.is_result_fault() {
            skipped.push((rule, fault.kind(), Skip::WrongEndpoint));
            continue;
        }
        if !fault.is_embedding_fault() {
            continue;
        }
        let mut any = false;
        for v in &mut decoded {
            any |= apply(fault, v, rng);
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
    for (slot, new) in vs.iter_mut().zip(decoded) {
        match slot {
            Vector::Floats(a) => {
                **a = new
                    .into_iter()
                    .map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number))
                    .collect();
            }
            Vector::Base64(s) => {
                let bytes: Vec<u8> = new
                    .into_iter()
                    .flat_map(|x| (x as f32).to_le_bytes())
                    .collect();
                **s = b64::encode(&bytes);
            }
        }
    }
    drop(vs);
    let out = serde_json::to_vec(&root).map_err(|_| Skip::UnknownShape)?;
    Ok(Rewrite {
        body: bytes::Bytes::from(out),
        applied,
        skipped,
        results: None,
    })
}
