//! State shared by every listener, the admin API and the reloader.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use brownout_faults::matcher::CompiledProfile;
use brownout_faults::profile::Profile;
use brownout_faults::release::Release;
use tokio::time::Instant;

use crate::config::Cidr;
use crate::record::metrics::Metrics;
use crate::record::Recorder;

/// Where the profile in force came from (the last write wins between file and API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileSource {
    None,
    File,
    Api,
    Builtin,
}

/// Bookkeeping about profile changes, for status and logs.
#[derive(Debug, Clone)]
pub struct ProfileMeta {
    pub source: ProfileSource,
    pub text: Option<String>,
    pub last_reload_error: Option<String>,
    pub generation: u64,
    /// The profile file's text as last read, so that only a real change to the file
    /// (not any event in its directory) replaces a profile applied through the API.
    pub file_text: Option<String>,
}

/// Everything the request path and the control plane share.
#[derive(Debug)]
pub struct Shared {
    pub profile: ArcSwap<CompiledProfile>,
    pub meta: Mutex<ProfileMeta>,
    pub release: Release,
    pub recorder: Arc<Recorder>,
    pub metrics: Arc<Metrics>,
    pub inspect_limit: usize,
    pub upstream_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub mark_injected: bool,
    pub allow_header_faults: bool,
    pub trusted_proxies: Vec<Cidr>,
    /// Seed from flag, env or config; beats the profile's own seed.
    pub seed_override: Option<u64>,
    pub profile_path: Option<PathBuf>,
    pub ready: AtomicBool,
    pub next_id: AtomicU64,
    pub started: Instant,
}

impl Shared {
    /// The state of a proxy that has applied no profile yet: faults on, nothing
    /// ready, the configuration file's defaults for what `limits` does not say
    /// (marks on, header faults off, no trusted proxies); a caller with a
    /// configuration sets those fields before sharing it.
    pub fn new(
        recorder: Arc<Recorder>,
        metrics: Arc<Metrics>,
        limits: &crate::config::LimitsConfig,
        seed_override: Option<u64>,
    ) -> Self {
        Shared {
            profile: ArcSwap::from_pointee(CompiledProfile::empty(seed_override.unwrap_or(0))),
            meta: Mutex::new(ProfileMeta {
                source: ProfileSource::None,
                text: None,
                last_reload_error: None,
                generation: 0,
                file_text: None,
            }),
            release: Release::new(true),
            recorder,
            metrics,
            inspect_limit: limits.inspect_limit.0 as usize,
            upstream_timeout: limits.upstream_timeout.0,
            upstream_idle_timeout: limits.upstream_idle_timeout.0,
            mark_injected: true,
            allow_header_faults: false,
            trusted_proxies: Vec::new(),
            seed_override,
            profile_path: None,
            ready: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
        }
    }

    /// The seed a profile runs under (precedence: --seed > BROWNOUT_SEED > config > profile > 0).
    pub fn effective_seed(&self, profile: &Profile) -> u64 {
        self.seed_override.or(profile.seed).unwrap_or(0)
    }

    /// Apply a validated profile now: compile it (carrying over unchanged rule state),
    /// start its clock, and swap it in atomically.
    pub fn apply(
        self: &Arc<Self>,
        profile: &Profile,
        text: Option<String>,
        source: ProfileSource,
    ) -> Result<(), String> {
        let now = Instant::now();
        let offset = match profile.start_at.as_deref() {
            Some(s) => start_offset_ns(s)?,
            None => 0,
        };
        let prev = self.profile.load();
        let compiled = CompiledProfile::compile(
            profile,
            self.effective_seed(profile),
            Some(&prev),
            now,
            offset,
        )
        .map_err(|e| e.to_string())?;
        let expires = compiled.expires_after;
        self.profile.store(Arc::new(compiled));
        self.metrics.summary.reset(&profile.name);
        let generation = {
            let mut m = self.meta.lock().unwrap_or_else(|p| p.into_inner());
            m.source = source;
            if source == ProfileSource::File {
                m.file_text = text.clone();
            }
            m.text = text;
            m.last_reload_error = None;
            m.generation += 1;
            m.generation
        };
        if let Some(after) = expires {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let still = me
                    .meta
                    .lock()
                    .map(|m| m.generation == generation)
                    .unwrap_or(false);
                if still {
                    tracing::warn!("profile expired (expires_after); turning faults off");
                    me.release.turn_off();
                }
            });
        }
        tracing::info!(profile = %profile.name, source = ?source, "profile applied");
        Ok(())
    }

    /// Compile the profile in force again with no state carried over: fresh
    /// schedules, rate-limit buckets, concurrency limits and GPU queues, as if it
    /// had just been applied for the first time. `brownout capacity` calls this
    /// between probes (through `POST /api/v1/phase {"reset": true}`), so one
    /// probe's backlog or spent tokens never count against the next. Its clock
    /// starts over at the first phase.
    pub fn reset_state(&self) -> Result<(), String> {
        let prev = self.profile.load();
        let now = Instant::now();
        let offset = match prev.source.start_at.as_deref() {
            Some(s) => start_offset_ns(s)?,
            None => 0,
        };
        let compiled = CompiledProfile::compile(&prev.source, prev.seed, None, now, offset)
            .map_err(|e| e.to_string())?;
        self.profile.store(Arc::new(compiled));
        tracing::info!(profile = %prev.name, "profile state reset");
        Ok(())
    }

    pub fn set_reload_error(&self, e: Option<String>) {
        let mut m = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        m.last_reload_error = e;
    }

    /// A fresh exchange id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Nanoseconds from now to `start_at` (negative when it has passed).
fn start_offset_ns(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("start_at `{s}`: {e}"))?;
    let now = time::OffsetDateTime::now_utc();
    let d = t - now;
    Ok(d.whole_nanoseconds()
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}
