//! `cold_start`: the first request after an idle spell waits while the model loads.
//!
//! Scale-from-zero deployments and servers that swap models out answer the first
//! request late, and every request that arrives during the load waits for the same
//! load rather than starting its own. Clients with short first-request timeouts and
//! health checks that run on a schedule are what this catches.

use std::sync::Mutex;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::dist::Dist;
use crate::release::{Held, Release};

/// One `cold_start` fault of a rule, shared by every request the rule matches.
#[derive(Debug)]
pub struct ColdStart {
    idle: Duration,
    duration: Dist,
    state: Mutex<ColdState>,
}

#[derive(Debug, Default)]
struct ColdState {
    /// When the last request arrived or the last load ended, whichever is later;
    /// `None` before the first request: the model starts unloaded.
    last_active: Option<Instant>,
    /// When the load in progress ends.
    loaded_at: Option<Instant>,
}

impl ColdStart {
    pub fn new(idle: Duration, duration: Dist) -> Self {
        ColdStart {
            idle,
            duration,
            state: Mutex::new(ColdState::default()),
        }
    }

    /// Waits for the model to be loaded: starts a load (sampled from `duration`)
    /// when the model is cold, joins the load in progress otherwise. Returns how
    /// long this request waited, `None` if not at all. The kill switch ends the
    /// wait at once.
    pub async fn wait(&self, rng: &mut ChaCha8Rng, release: &Release) -> Option<Duration> {
        if !release.faults_enabled() {
            return None;
        }
        let start = Instant::now();
        let ready = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let ready = match st.loaded_at {
                Some(at) if at > start => Some(at),
                _ => {
                    let cold = match st.last_active {
                        None => true,
                        Some(last) => start.saturating_duration_since(last) >= self.idle,
                    };
                    if cold {
                        let load = self.duration.sample(rng);
                        let at = start + load;
                        st.loaded_at = Some(at);
                        (!load.is_zero()).then_some(at)
                    } else {
                        None
                    }
                }
            };
            st.last_active = Some(ready.unwrap_or(start).max(st.last_active.unwrap_or(start)));
            ready
        };
        let at = ready?;
        match release.hold_until(Some(at)).await {
            Held::Elapsed | Held::Released => {}
        }
        let waited = start.elapsed();
        (!waited.is_zero()).then_some(waited)
    }
}
