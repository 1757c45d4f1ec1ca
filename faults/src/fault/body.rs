//! The faults a body plan holds, typed by the side they act on.
//!
//! [`crate::stream::StreamPlan`] turns each planned [`FaultSpec`] into a
//! [`BodyFault`] once, when the plan is built; the body-side passes (the stream
//! [`crate::stream::Shaper`], `rewrite_json` for whole JSON answers, the vector and
//! embeddings rewriters, the Milvus gRPC editor) match these exhaustively. A fault
//! added to [`FaultSpec`] then stops the build here, in [`BodyFault::of`], and, once
//! it has a variant below, at every pass that must say what it does, instead of
//! being passed over by a catch-all arm. Each pass lists the sides it never acts
//! on in one explicit arm.

use super::FaultSpec;
use super::{Fault, Side};

/// A fault that acts on the response body, by side. Request-side and byte-side
/// faults never reach a body plan, so they have no variant.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyFault {
    /// On the events of a streamed response.
    Stream(StreamFault),
    /// On what the model said, streamed or not.
    Content(ContentFault),
    /// On the hits of a search/query answer.
    Results(ResultsFault),
    /// On the vectors of an embeddings answer.
    Embeddings(EmbeddingsFault),
}

/// The faults that act on the events of a streamed response.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamFault {
    FirstTokenDelay(super::FirstTokenDelay),
    TokenDelay(super::TokenDelay),
    TokenRate(super::TokenRate),
    Stall(super::Stall),
    Truncate(super::Truncate),
    StreamError(super::StreamError),
    Corrupt(super::Corrupt),
}

/// The faults that rewrite what the model said.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentFault {
    Garble(super::Garble),
    EmptyCompletion(super::EmptyCompletion),
    FinishReason(super::FinishReason),
}

/// The faults that act on the hits of a search/query answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultsFault {
    DropResults(super::DropResults),
    ShuffleResults(super::ShuffleResults),
    LimitResults(super::LimitResults),
    StaleResults(super::StaleResults),
    ScoreNoise(super::ScoreNoise),
    EmptyResults(super::EmptyResults),
}

/// The faults that act on the vectors of an embeddings answer.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingsFault {
    EmbeddingNoise(super::EmbeddingNoise),
    EmbeddingTruncate(super::EmbeddingTruncate),
}

impl BodyFault {
    /// The body fault `spec` is, or `None` for a fault that acts on the request or
    /// on the body's bytes. An exhaustive match: a new fault must say here whether
    /// it is a body fault, and of which side.
    pub fn of(spec: &FaultSpec) -> Option<BodyFault> {
        use BodyFault as B;
        Some(match spec {
            FaultSpec::FirstTokenDelay(f) => B::Stream(StreamFault::FirstTokenDelay(f.clone())),
            FaultSpec::TokenDelay(f) => B::Stream(StreamFault::TokenDelay(f.clone())),
            FaultSpec::TokenRate(f) => B::Stream(StreamFault::TokenRate(f.clone())),
            FaultSpec::Stall(f) => B::Stream(StreamFault::Stall(f.clone())),
            FaultSpec::Truncate(f) => B::Stream(StreamFault::Truncate(f.clone())),
            FaultSpec::StreamError(f) => B::Stream(StreamFault::StreamError(f.clone())),
            FaultSpec::Corrupt(f) => B::Stream(StreamFault::Corrupt(f.clone())),
            FaultSpec::Garble(f) => B::Content(ContentFault::Garble(f.clone())),
            FaultSpec::EmptyCompletion(f) => B::Content(ContentFault::EmptyCompletion(f.clone())),
            FaultSpec::FinishReason(f) => B::Content(ContentFault::FinishReason(f.clone())),
            FaultSpec::DropResults(f) => B::Results(ResultsFault::DropResults(f.clone())),
            FaultSpec::ShuffleResults(f) => B::Results(ResultsFault::ShuffleResults(f.clone())),
            FaultSpec::LimitResults(f) => B::Results(ResultsFault::LimitResults(f.clone())),
            FaultSpec::StaleResults(f) => B::Results(ResultsFault::StaleResults(f.clone())),
            FaultSpec::ScoreNoise(f) => B::Results(ResultsFault::ScoreNoise(f.clone())),
            FaultSpec::EmptyResults(f) => B::Results(ResultsFault::EmptyResults(f.clone())),
            FaultSpec::EmbeddingNoise(f) => {
                B::Embeddings(EmbeddingsFault::EmbeddingNoise(f.clone()))
            }
            FaultSpec::EmbeddingTruncate(f) => {
                B::Embeddings(EmbeddingsFault::EmbeddingTruncate(f.clone()))
            }
            FaultSpec::Delay(_)
            | FaultSpec::Error(_)
            | FaultSpec::Reset(_)
            | FaultSpec::Hang(_)
            | FaultSpec::Bandwidth(_)
            | FaultSpec::GpuSaturation(_)
            | FaultSpec::ColdStart(_)
            | FaultSpec::ConcurrencyLimit(_)
            | FaultSpec::RateLimit(_) => return None,
        })
    }

    /// The fault's own description of itself, as [`FaultSpec::as_fault`] gives it.
    fn as_fault(&self) -> &dyn Fault {
        match self {
            BodyFault::Stream(StreamFault::FirstTokenDelay(f)) => f,
            BodyFault::Stream(StreamFault::TokenDelay(f)) => f,
            BodyFault::Stream(StreamFault::TokenRate(f)) => f,
            BodyFault::Stream(StreamFault::Stall(f)) => f,
            BodyFault::Stream(StreamFault::Truncate(f)) => f,
            BodyFault::Stream(StreamFault::StreamError(f)) => f,
            BodyFault::Stream(StreamFault::Corrupt(f)) => f,
            BodyFault::Content(ContentFault::Garble(f)) => f,
            BodyFault::Content(ContentFault::EmptyCompletion(f)) => f,
            BodyFault::Content(ContentFault::FinishReason(f)) => f,
            BodyFault::Results(ResultsFault::DropResults(f)) => f,
            BodyFault::Results(ResultsFault::ShuffleResults(f)) => f,
            BodyFault::Results(ResultsFault::LimitResults(f)) => f,
            BodyFault::Results(ResultsFault::StaleResults(f)) => f,
            BodyFault::Results(ResultsFault::ScoreNoise(f)) => f,
            BodyFault::Results(ResultsFault::EmptyResults(f)) => f,
            BodyFault::Embeddings(EmbeddingsFault::EmbeddingNoise(f)) => f,
            BodyFault::Embeddings(EmbeddingsFault::EmbeddingTruncate(f)) => f,
        }
    }

    /// The `type` name as written in files, used in records and metrics.
    pub fn kind(&self) -> &'static str {
        self.as_fault().name()
    }

    /// The side the fault acts on: the variant it is under.
    pub fn side(&self) -> Side {
        match self {
            BodyFault::Stream(_) => Side::Stream,
            BodyFault::Content(_) => Side::Content,
            BodyFault::Results(_) => Side::Results,
            BodyFault::Embeddings(_) => Side::Embeddings,
        }
    }

    /// Acts on the events of a streamed response; skipped on a non-streaming one.
    pub fn is_stream_fault(&self) -> bool {
        matches!(self, BodyFault::Stream(_))
    }

    /// Rewrites what the model said, streamed or not.
    pub fn is_content_fault(&self) -> bool {
        matches!(self, BodyFault::Content(_))
    }

    /// Rewrites a vector search/query answer or an embeddings answer.
    pub fn is_vector_fault(&self) -> bool {
        self.is_result_fault() || self.is_embedding_fault()
    }

    /// Acts on the hits of a search/query answer.
    pub fn is_result_fault(&self) -> bool {
        matches!(self, BodyFault::Results(_))
    }

    /// Acts on the vectors of an embeddings answer.
    pub fn is_embedding_fault(&self) -> bool {
        matches!(self, BodyFault::Embeddings(_))
    }
}

#[cfg(test)]
mod tests {
    use super::BodyFault;
    use crate::fault::Side;

    /// `BodyFault::of` sorts each fault under the side the fault itself names, and
    /// keeps its kind; request and byte faults are not body faults.
    #[test]
    fn body_faults_keep_their_side_and_kind() {
        let src = "version: 1\nname: t\nrules:\n  - faults:\n      - first_token_delay: { duration: 1s }\n      - token_delay: { duration: 1s }\n      - token_rate: { tokens_per_second: 5 }\n      - stall: { after_tokens: 1, duration: 1s }\n      - truncate: { after_tokens: 1 }\n      - stream_error: { after_tokens: 1 }\n      - corrupt: { rate: 0.5, mode: drop_event }\n      - garble: { fraction: 0.5 }\n      - empty_completion\n      - finish_reason: { value: length }\n      - drop_results: { fraction: 0.5 }\n      - shuffle_results\n      - limit_results: { max: 1 }\n      - stale_results\n      - score_noise: { stddev: 0.1 }\n      - empty_results\n      - embedding_noise: { stddev: 0.1 }\n      - embedding_truncate: { dims: 2 }\n      - delay: { duration: 1s }\n      - reset\n      - hang\n      - bandwidth: { bytes_per_second: 10 }\n";
        let p = crate::validate::load_profile(src, "t.yaml").expect("loads");
        let faults = &p.rules[0].faults;
        assert_eq!(faults.len(), 22);
        let mut body = 0;
        for f in faults {
            match BodyFault::of(f) {
                Some(b) => {
                    body += 1;
                    assert_eq!(b.side(), f.side(), "{}", f.kind());
                    assert_eq!(b.kind(), f.kind());
                }
                None => assert!(
                    matches!(f.side(), Side::Request | Side::Bytes),
                    "{}",
                    f.kind()
                ),
            }
        }
        assert_eq!(body, 18);
    }
}
