//! The OpenAI embeddings API: `POST /v1/embeddings`.
//!
//! Vectors are a pure function of (model, input): identical text always gets the
//! identical unit vector, so a drill can compare embeddings across phases (an
//! `embedding_noise` fault must show up as a lower cosine similarity) and a vector
//! store fed by the sim returns the same hits on every run. Similar texts do not
//! get similar vectors; nothing here models meaning.
//!
//! `encoding_format: "base64"` matters more than it looks: the openai SDK asks for
//! base64 whenever the caller does not choose a format, and decodes the string as
//! little-endian `float32`s, so without it the SDK's default call fails.

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::SimConfig;
use crate::openai::{error_response, openai_json, read_body, request_id, ApiError, SimBody};
use crate::pacing::token_offsets;
use crate::text::{estimate_tokens, prompt_hash};

/// Vector length when the request gives no `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 256;

/// The largest `dimensions` accepted (text-embedding-3-large's size).
pub const MAX_DIMENSIONS: usize = 3072;

/// The most inputs one request may carry, as OpenAI enforces.
const MAX_INPUTS: usize = 2048;

/// One input to embed: text, or an already tokenized prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbeddingInput<'a> {
    /// A string (`"input": "text"` or one element of a string array).
    Text(&'a str),
    /// Token ids (`"input": [1, 2]` or one element of an array of arrays).
    Tokens(Vec<u64>),
}

impl EmbeddingInput<'_> {
    /// Tokens this input counts for in `usage`: the array's length, or the text
    /// estimate the chat endpoints use.
    fn tokens(&self) -> u32 {
        match self {
            EmbeddingInput::Text(t) => estimate_tokens(t),
            EmbeddingInput::Tokens(t) => u32::try_from(t.len()).unwrap_or(u32::MAX),
        }
    }
}

/// The sim's embedding of `input` under `model`: `dims` components drawn from a
/// ChaCha8 stream seeded by the input's FNV-1a hash, scaled to unit length.
///
/// The first `d` components are the same for any `dims ≥ d` (before scaling), so
/// a shorter vector is a renormalized prefix of a longer one, like the
/// text-embedding-3 models' `dimensions`.
pub fn embedding(model: &str, input: &EmbeddingInput<'_>, dims: usize) -> Vec<f32> {
    let seed = match input {
        EmbeddingInput::Text(t) => prompt_hash(model, t),
        EmbeddingInput::Tokens(toks) => {
            let joined = toks
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            // A different domain than text, so "[1,2]" the text and [1, 2] the
            // tokens do not collide.
            prompt_hash(&format!("{model}\u{0}tokens"), &joined)
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let raw: Vec<f64> = (0..dims).map(|_| rng.random_range(-1.0..1.0)).collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    let norm = if norm > 0.0 { norm } else { 1.0 };
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// A vector as the API's base64 form: the little-endian bytes of each `f32`,
/// base64 with padding (what the SDK decodes with `np.frombuffer(.., float32)`).
pub fn embedding_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    brownout_faults::vector::b64::encode(&bytes)
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item>,
    model: &'a str,
    usage: Usage,
}

struct Parsed<'a> {
    model: String,
    inputs: Vec<EmbeddingInput<'a>>,
    dims: usize,
    base64: bool,
}

fn input_error() -> ApiError {
    ApiError::invalid(
        "'$.input' is invalid. Please check the API reference: \
         https://platform.openai.com/docs/api-reference."
            .to_owned(),
        Some("input"),
    )
}

fn token_array(items: &[Value]) -> Option<Vec<u64>> {
    items.iter().map(Value::as_u64).collect()
}

fn parse(v: &Value) -> Result<Parsed<'_>, ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(
            "Invalid type for request body: expected an object.".to_owned(),
            None,
        ));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::missing("model"))
        }
        Some(_) => return Err(ApiError::bad_type("model", "a string")),
    };
    let inputs = match obj.get("input") {
        None | Some(Value::Null) => return Err(ApiError::missing("input")),
        Some(Value::String(s)) if !s.is_empty() => vec![EmbeddingInput::Text(s)],
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_INPUTS => {
            if items.iter().all(Value::is_string) {
                let texts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                if texts.iter().any(|t| t.is_empty()) {
                    return Err(input_error());
                }
                texts.into_iter().map(EmbeddingInput::Text).collect()
            } else if let Some(tokens) = token_array(items) {
                vec![EmbeddingInput::Tokens(tokens)]
            } else {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_array().and_then(|a| token_array(a)) {
                        Some(t) if !t.is_empty() => out.push(EmbeddingInput::Tokens(t)),
                        _ => return Err(input_error()),
                    }
                }
                out
            }
        }
        Some(_) => return Err(input_error()),
    };
    let dims = match obj.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v.as_u64().and_then(|d| usize::try_from(d).ok()) {
            Some(d) if (1..=MAX_DIMENSIONS).contains(&d) => d,
            Some(d) => {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid value for 'dimensions' = {d}. Must be between 1 and \
                         {MAX_DIMENSIONS}."
                    ),
                    Some("dimensions"),
                ))
            }
            None => return Err(ApiError::bad_type("dimensions", "an integer")),
        },
    };
    let base64 = match obj.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.".to_owned(),
                Some("encoding_format"),
            ))
        }
    };
    Ok(Parsed {
        model,
        inputs,
        dims,
        base64,
    })
}

/// `POST /v1/embeddings`: one vector per input, answered after `ttft` (one
/// forward pass; embeddings have no decode phase).
pub(crate) async fn embeddings(
    cfg: &SimConfig,
    ordinal: u64,
    req: Request<Incoming>,
    start: Instant,
) -> Response<SimBody> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, ApiError::invalid(e, None)),
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            ApiError::invalid(
                "We could not parse the JSON body of your request. The OpenAI API expects a \
                 JSON payload, but what was sent was not valid JSON."
                    .to_owned(),
                None,
            ),
        );
    };
    let parsed = match parse(&value) {
        Ok(p) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let due = token_offsets(cfg, 1, ordinal)
        .first()
        .copied()
        .unwrap_or_default();
    tokio::time::sleep_until(start + due).await;

    let data = parsed
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let v = embedding(&parsed.model, input, parsed.dims);
            Item {
                object: "embedding",
                index,
                embedding: if parsed.base64 {
                    Vector::Base64(embedding_base64(&v))
                } else {
                    Vector::Float(v)
                },
            }
        })
        .collect();
    let tokens = parsed
        .inputs
        .iter()
        .fold(0u32, |acc, i| acc.saturating_add(i.tokens()));
    let list = List {
        object: "list",
        data,
        model: &parsed.model,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    let id = request_id(ordinal, cfg.seed);
    openai_json(StatusCode::OK, serde_json::to_vec(&list), Some(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        assert_eq!(brownout_faults::vector::b64::encode(b""), "");
        assert_eq!(brownout_faults::vector::b64::encode(b"f"), "Zg==");
        assert_eq!(brownout_faults::vector::b64::encode(b"fo"), "Zm8=");
        assert_eq!(brownout_faults::vector::b64::encode(b"foo"), "Zm9v");
        assert_eq!(brownout_faults::vector::b64::encode(b"foob"), "Zm9vYg==");
        assert_eq!(brownout_faults::vector::b64::encode(b"fooba"), "Zm9vYmE=");
        assert_eq!(brownout_faults::vector::b64::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(embedding_base64(&[1.0]), "AACAPw==");
    }

    #[test]
    fn vectors_are_unit_and_deterministic() {
        let a = embedding("m", &EmbeddingInput::Text("hello"), 256);
        assert_eq!(a.len(), 256);
        let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(a, embedding("m", &EmbeddingInput::Text("hello"), 256));
        assert_ne!(a, embedding("m", &EmbeddingInput::Text("hello!"), 256));
        assert_ne!(a, embedding("m2", &EmbeddingInput::Text("hello"), 256));
        // A shorter vector points the same way as the longer one's prefix.
        let short = embedding("m", &EmbeddingInput::Text("hello"), 8);
        let ratio = f64::from(a[0]) / f64::from(short[0]);
        for (x, y) in a.iter().zip(&short) {
            assert!((f64::from(*x) / f64::from(*y) - ratio).abs() < 1e-4);
        }
        let t = embedding("m", &EmbeddingInput::Tokens(vec![1, 2]), 4);
        assert_ne!(t, embedding("m", &EmbeddingInput::Text("1,2"), 4));
    }
}
