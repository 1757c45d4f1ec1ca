//! Shared input decoding for the fuzz targets: a small header read with
//! `arbitrary::Unstructured`, then the body.
//!
//! Input layout: byte 0 = header length L (taken modulo 64), bytes 1..=L = header,
//! the rest = body. A seed that is `\0` + a raw body runs the body with every knob at
//! its default (SSE, OpenAI chat, default event cap, one chunk, no faults).

#![allow(dead_code)]

use std::time::Duration;

use brownout_faults::api::{ApiKind, Endpoint};
use brownout_faults::dist::Dist;
use brownout_faults::fault;
use brownout_faults::profile::{CorruptMode, FaultSpec, TruncateEnding};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

pub fn split_input(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&l, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    let l = (l as usize % 64).min(rest.len());
    rest.split_at(l)
}

pub const APIS: [ApiKind; 12] = ApiKind::ALL;

pub const ENDPOINTS: [Endpoint; 9] = [
    Endpoint::Chat,
    Endpoint::Completion,
    Endpoint::Responses,
    Endpoint::Messages,
    Endpoint::Embeddings,
    Endpoint::Search,
    Endpoint::Query,
    Endpoint::Upsert,
    Endpoint::Other,
];

pub fn pick<T: Copy>(u: &mut Unstructured<'_>, items: &[T]) -> Result<T> {
    Ok(*u.choose(items)?)
}

pub fn duration(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => Duration::from_millis(u64::from(u.arbitrary::<u16>()?)),
        1 => Duration::from_secs(u64::from(u.arbitrary::<u32>()?)),
        2 => Duration::ZERO,
        _ => Duration::new(u.arbitrary()?, u.int_in_range(0..=999_999_999)?),
    })
}

/// A distribution the validator accepts (bounds in order, lognormal median > 0 and
/// p99 >= median); the durations themselves may be anything, even absurdly long.
pub fn dist(u: &mut Unstructured<'_>) -> Result<Dist> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => Dist::Fixed(duration(u)?),
        1 => {
            let (a, b) = (duration(u)?, duration(u)?);
            Dist::Uniform(a.min(b), a.max(b))
        }
        2 => Dist::Normal {
            mean: duration(u)?,
            stddev: duration(u)?,
        },
        3 => {
            let (a, b) = (duration(u)?, duration(u)?);
            let median = a.min(b).max(Duration::from_nanos(1));
            Dist::LogNormal {
                median,
                p99: a.max(b).max(median),
            }
        }
        _ => Dist::Exponential { mean: duration(u)? },
    })
}

/// A share above 0 and at most 1, as the validator requires.
pub fn share(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok((f64::from(u.arbitrary::<u16>()?) + 1.0) / 65_536.0)
}

/// Above zero and finite, as the validator requires (possibly huge).
pub fn positive(u: &mut Unstructured<'_>) -> Result<f64> {
    let v: f64 = u.arbitrary()?;
    Ok(if v.is_finite() && v > 0.0 {
        v
    } else {
        (f64::from(u.arbitrary::<u16>()?) + 1.0) / 1000.0
    })
}

const PRESETS: &[&str] = &[
    "openai.server_error",
    "openai.rate_limit_requests",
    "anthropic.overloaded",
    "ollama.busy",
    "tgi.overloaded",
    "vllm.queue_full",
    "no.such_preset",
];

/// One stream or content fault (what [`brownout_faults::stream::Shaper`] and
/// `rewrite_json` act on).
pub fn stream_fault(u: &mut Unstructured<'_>) -> Result<FaultSpec> {
    let after = |u: &mut Unstructured<'_>| -> Result<u64> { Ok(u64::from(u.int_in_range(0u8..=8)?)) };
    Ok(match u.int_in_range(0u8..=9)? {
        0 => FaultSpec::FirstTokenDelay(fault::FirstTokenDelay { duration: dist(u)? }),
        1 => FaultSpec::TokenDelay(fault::TokenDelay { duration: dist(u)? }),
        2 => FaultSpec::TokenRate(fault::TokenRate {
            tokens_per_second: positive(u)?,
        }),
        3 => {
            let forever = u.arbitrary()?;
            FaultSpec::Stall(fault::Stall {
                after_tokens: after(u)?,
                duration: if forever { None } else { Some(dist(u)?) },
                forever,
            })
        }
        4 => FaultSpec::Truncate(fault::Truncate {
            after_tokens: after(u)?,
            ending: pick(
                u,
                &[
                    TruncateEnding::Clean,
                    TruncateEnding::NoTerminator,
                    TruncateEnding::Reset,
                ],
            )?,
        }),
        5 => FaultSpec::StreamError(fault::StreamError {
            after_tokens: after(u)?,
            preset: if u.arbitrary()? {
                Some(pick(u, PRESETS)?.to_string())
            } else {
                None
            },
        }),
        6 => FaultSpec::Corrupt(fault::Corrupt {
            rate: share(u)?,
            mode: pick(
                u,
                &[
                    CorruptMode::InvalidJson,
                    CorruptMode::DropEvent,
                    CorruptMode::DuplicateEvent,
                    CorruptMode::BadUtf8,
                ],
            )?,
        }),
        7 => FaultSpec::Garble(fault::Garble { fraction: share(u)? }),
        8 => FaultSpec::EmptyCompletion(fault::EmptyCompletion {}),
        _ => FaultSpec::FinishReason(fault::FinishReason {
            value: u.arbitrary::<&str>()?.chars().take(32).collect(),
        }),
    })
}

/// One vector fault (or, rarely, a content fault the vector rewriter must ignore).
pub fn vector_fault(u: &mut Unstructured<'_>) -> Result<FaultSpec> {
    Ok(match u.int_in_range(0u8..=8)? {
        0 => FaultSpec::DropResults(fault::DropResults { fraction: share(u)? }),
        1 => FaultSpec::ShuffleResults(fault::ShuffleResults {}),
        2 => FaultSpec::LimitResults(fault::LimitResults {
            max: u64::from(u.int_in_range(0u8..=12)?),
        }),
        3 => FaultSpec::StaleResults(fault::StaleResults {
            depth: if u.arbitrary()? {
                Some(u.int_in_range(1..=brownout_faults::vector::MAX_STALE_DEPTH)?)
            } else {
                None
            },
        }),
        4 => FaultSpec::ScoreNoise(fault::ScoreNoise { stddev: positive(u)? }),
        5 => FaultSpec::EmptyResults(fault::EmptyResults {}),
        6 => FaultSpec::EmbeddingNoise(fault::EmbeddingNoise { stddev: positive(u)? }),
        7 => FaultSpec::EmbeddingTruncate(fault::EmbeddingTruncate {
            dims: u64::from(u.arbitrary::<u8>()?).max(1),
        }),
        _ => FaultSpec::Garble(fault::Garble { fraction: share(u)? }),
    })
}

/// Chunk boundaries inside `len` bytes, derived from the header: sorted, distinct,
/// strictly inside the body.
pub fn cuts(u: &mut Unstructured<'_>, len: usize) -> Result<Vec<usize>> {
    let n = u.int_in_range(0u8..=24)?;
    let mut out = Vec::with_capacity(n.into());
    for _ in 0..n {
        if len < 2 {
            break;
        }
        let v: u16 = u.arbitrary()?;
        out.push(1 + (v as usize) % (len - 1));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
