//! What a drill sends: the target, the request shape, the rate and the phases.

use std::time::Duration;

use crate::error::DrillError;

/// A named stretch of the drill (baseline, storm, recovery). Requests belong to the
/// phase in which they were scheduled, so each phase's statistics describe what
/// users saw while that phase's faults were active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhasePlan {
    /// The phase's name, as in the profile (reports compare phases by name).
    pub name: String,
    /// How long the phase lasts.
    pub duration: Duration,
}

impl PhasePlan {
    /// A phase called `name` lasting `duration`.
    pub fn new(name: impl Into<String>, duration: Duration) -> Self {
        Self {
            name: name.into(),
            duration,
        }
    }
}

/// An open-loop load plan: Poisson arrivals at a fixed mean rate through a list of
/// phases, against one OpenAI-compatible endpoint.
///
/// Open loop matters: a closed-loop client slows down when the server does and so
/// hides the very degradation a drill looks for.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Base URL of the proxy (or any OpenAI-compatible server), e.g. `http://127.0.0.1:8080`.
    pub target: http::Uri,
    /// Request path, e.g. `/v1/chat/completions` or `/v1/completions`.
    pub path: String,
    /// Model name put in each request.
    pub model: String,
    /// Ask for SSE streams (and `stream_options.include_usage`).
    pub stream: bool,
    /// Mean arrival rate, requests per second.
    pub rate_per_sec: f64,
    /// Phases, run back to back.
    pub phases: Vec<PhasePlan>,
    /// Seed for arrivals and prompt choice: the same seed sends the same requests at
    /// the same offsets.
    pub seed: u64,
    /// Per-request limit, counted from the scheduled send time.
    pub timeout: Duration,
    /// `max_tokens` for every request.
    pub max_tokens: u32,
    /// Search requests: results asked for (`limit`, `n_results`).
    pub top_k: u32,
    /// Search requests without a prompt file: dimension of the built-in query vectors.
    pub dims: u32,
}

impl LoadPlan {
    /// A plan with common defaults (chat, streaming, 10 req/s, one 10 s phase named
    /// `baseline`, seed 0, 30 s timeout, 32 tokens) for `target`.
    pub fn new(target: http::Uri) -> Self {
        Self {
            target,
            path: "/v1/chat/completions".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            stream: true,
            rate_per_sec: 10.0,
            phases: vec![PhasePlan::new("baseline", Duration::from_secs(10))],
            seed: 0,
            timeout: Duration::from_secs(30),
            max_tokens: 32,
            top_k: 10,
            dims: 64,
        }
    }

    /// The total scheduled duration: the sum of the phases.
    pub fn total_duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// The index of the phase that covers `offset` from the start; offsets past the
    /// end belong to the last phase.
    pub fn phase_at(&self, offset: Duration) -> usize {
        let mut end = Duration::ZERO;
        for (i, p) in self.phases.iter().enumerate() {
            end += p.duration;
            if offset < end {
                return i;
            }
        }
        self.phases.len().saturating_sub(1)
    }

    /// Check the plan before any request goes out.
    pub fn validate(&self) -> Result<(), DrillError> {
        if self.phases.is_empty() {
            return Err(DrillError::NoPhases);
        }
        for (i, p) in self.phases.iter().enumerate() {
            if p.duration.is_zero() {
                return Err(DrillError::EmptyPhase(p.name.clone()));
            }
            if self.phases[..i].iter().any(|q| q.name == p.name) {
                return Err(DrillError::DuplicatePhase(p.name.clone()));
            }
        }
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            return Err(DrillError::InvalidRate(self.rate_per_sec));
        }
        if self.timeout.is_zero() {
            return Err(DrillError::ZeroTimeout);
        }
        self.request_uri().map(|_| ())
    }

    /// The full URI requests go to: the target's scheme and authority with `path`.
    pub fn request_uri(&self) -> Result<http::Uri, DrillError> {
        let target = self.target.to_string();
        let invalid = |reason| DrillError::InvalidTarget {
            target: target.clone(),
            reason,
        };
        match self.target.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(invalid("https targets are not supported yet")),
            _ => return Err(invalid("expected an http:// URL")),
        }
        let authority = self
            .target
            .authority()
            .ok_or_else(|| invalid("missing host"))?;
        let base = self.target.path().trim_end_matches('/');
        let path = if self.path.starts_with('/') {
            format!("{base}{}", self.path)
        } else {
            format!("{base}/{}", self.path)
        };
        let uri = format!("http://{authority}{path}");
        uri.parse()
            .map_err(|source| DrillError::InvalidUri { uri, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LoadPlan {
        let mut p = LoadPlan::new("http://127.0.0.1:8080".parse().unwrap());
        p.phases = vec![
            PhasePlan::new("a", Duration::from_secs(1)),
            PhasePlan::new("b", Duration::from_secs(2)),
        ];
        p
    }

    #[test]
    fn phase_lookup() {
        let p = plan();
        assert_eq!(p.phase_at(Duration::ZERO), 0);
        assert_eq!(p.phase_at(Duration::from_millis(999)), 0);
        assert_eq!(p.phase_at(Duration::from_secs(1)), 1);
        assert_eq!(p.phase_at(Duration::from_secs(5)), 1);
        assert_eq!(p.total_duration(), Duration::from_secs(3));
    }

    #[test]
    fn validation() {
        assert!(plan().validate().is_ok());
        assert_eq!(
            plan().request_uri().unwrap().to_string(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        let mut p = plan();
        p.rate_per_sec = 0.0;
        assert!(matches!(p.validate(), Err(DrillError::InvalidRate(_))));
        let mut p = plan();
        p.phases[1].name = "a".into();
        assert!(matches!(p.validate(), Err(DrillError::DuplicatePhase(_))));
        let mut p = plan();
        p.target = "https://example.com".parse().unwrap();
        assert!(matches!(
            p.validate(),
            Err(DrillError::InvalidTarget { .. })
        ));
        let mut p = plan();
        p.target = "http://127.0.0.1:8080/proxy/".parse().unwrap();
        assert_eq!(
            p.request_uri().unwrap().to_string(),
            "http://127.0.0.1:8080/proxy/v1/chat/completions"
        );
    }
}
