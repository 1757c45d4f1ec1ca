//! One modelled replica: continuous batching in steps, the way vLLM's scheduler
//! runs a GPU (docs/gpu-model.md).
//!
//! Every request a `gpu_saturation` fault matches joins one shared [`Replica`]. A
//! background task plays the scheduler: at the start of each step it decodes one
//! token for every running sequence whose prompt is done, hands the rest of the
//! step's token budget to prompt chunks (first come, first served, so a burst of
//! long prompts delays everyone's first token), admits waiting sequences while
//! slots, budget and KV cache allow, then sleeps for the step's modelled time.
//! Tokens a step produces appear when it ends. When the KV cache cannot hold the
//! next token of every running sequence, the newest is preempted as vLLM does in
//! RECOMPUTE mode: it goes back to the front of the queue and its prompt and
//! everything it had generated are prefilled again, so its stream stalls.
//!
//! The task sleeps on tokio time, so the model runs unchanged under paused time in
//! tests and in the sweep's virtual time, and it exits when the replica is idle
//! (the next admission starts a new one). Waiters are woken only when their own
//! sequence changes, so 10,000 queued requests cost memory for their entries and
//! nothing per step.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::config::GpuConfig;
use crate::release::Release;

/// The outcome of [`Replica::admit`].
#[derive(Debug)]
pub enum Admit {
    /// In the running batch; the [`Sequence`] paces the answer and frees the slot
    /// when dropped.
    Admitted(Sequence),
    /// The queue was full: answer the overflow error.
    Overflow,
    /// Faults were turned off while waiting (or before): go on unharmed.
    Released,
}

/// One simulated accelerator replica shared by every request a rule matches.
pub struct Replica {
    cfg: GpuConfig,
    state: Mutex<State>,
    /// When the replica came into being: its idle draw counts from here.
    created: Instant,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("gpu", &self.cfg.gpu)
            .field("model", &self.cfg.model)
            .field("queue_depth", &self.queue_depth())
            .field("batch_size", &self.batch_size())
            .finish()
    }
}

const ADMITTED: u8 = 1;
/// The model produced everything it will for this sequence, or it left the batch.
const DONE: u8 = 2;
const RELEASED: u8 = 4;

/// What a request's side can read without the replica's lock.
#[derive(Debug, Default)]
struct Shared {
    produced: AtomicU64,
    status: AtomicU8,
    queue_time_ns: AtomicU64,
    batch_at_admission: AtomicU32,
    wakers: Mutex<Vec<Waker>>,
}

impl Shared {
    fn wakers(&self) -> MutexGuard<'_, Vec<Waker>> {
        // A waker list stays usable even if a waker panicked while it was held.
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        let wakers = std::mem::take(&mut *self.wakers());
        for w in wakers {
            w.wake();
        }
    }

    fn set(&self, flag: u8) {
        self.status.fetch_or(flag, Ordering::SeqCst);
    }

    fn has(&self, flag: u8) -> bool {
        self.status.load(Ordering::SeqCst) & flag != 0
    }

    fn produced_at_least(&self, n: u64) -> bool {
        self.produced.load(Ordering::SeqCst) >= n || self.has(DONE | RELEASED)
    }

    /// Ready when `ready` holds; otherwise registers the waker and checks again,
    /// so a change between the first check and the registration is not missed.
    fn poll_until(&self, cx: &mut Context<'_>, ready: impl Fn(&Shared) -> bool) -> Poll<()> {
        if ready(self) {
            return Poll::Ready(());
        }
        {
            let mut wakers = self.wakers();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        if ready(self) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The scheduler's view of one sequence.
struct Entry {
    shared: Arc<Shared>,
    enqueued: Instant,
    prompt: u64,
    /// Tokens to produce before the model is done with it.
    target: u64,
    produced: u64,
    /// Tokens to compute before decoding: the prompt, or after a preemption the
    /// prompt plus everything generated so far.
    prefill_target: u64,
    prefilled: u64,
    /// KV cache tokens it holds.
    kv: u64,
    running: bool,
    admitted_once: bool,
}

#[derive(Default)]
struct State {
    next_id: u64,
    seqs: HashMap<u64, Entry>,
    /// FIFO of waiting ids; ids that left while waiting stay until popped and are
    /// skipped then, so leaving is O(1) even with a long queue.
    waiting: VecDeque<u64>,
    waiting_len: usize,
    /// Running ids in admission order: the newest is last.
    running: Vec<u64>,
    kv_used: u64,
    preemptions: u64,
    driver: bool,
    /// Time spent running steps, in total: the energy model's busy time.
    busy: Duration,
    /// Utilisation, an exponentially weighted average of busy time (time constant
    /// [`UTILISATION_TAU`]) as of `util_at`, the end of the last step.
    util: f64,
    util_at: Option<Instant>,
}

/// Time constant of [`Replica::utilization`]: about the sampling period of DCGM's
/// `DCGM_FI_DEV_GPU_UTIL`, so the gauge moves as a real card's would.
pub const UTILISATION_TAU: Duration = Duration::from_secs(1);

impl State {
    /// A step of length `step` ended at `end`: the time before it since the last
    /// step was idle.
    fn count_step(&mut self, step: Duration, end: Instant) {
        self.busy += step;
        let tau = UTILISATION_TAU.as_secs_f64();
        let start = end.checked_sub(step).unwrap_or(end);
        let idle = self
            .util_at
            .map_or(0.0, |at| start.saturating_duration_since(at).as_secs_f64());
        let decayed = self.util * (-idle / tau).exp();
        self.util = 1.0 - (1.0 - decayed) * (-step.as_secs_f64() / tau).exp();
        self.util_at = Some(end);
    }
}

/// What one step does to one sequence.
#[derive(Debug, Clone, Copy)]
struct Work {
    id: u64,
    /// Prompt tokens prefilled; 0 for a decode.
    chunk: u64,
    decode: bool,
}

impl Replica {
    /// A replica with nothing running; its scheduler task starts with the first
    /// admission, so this needs no runtime.
    pub fn new(cfg: GpuConfig) -> Arc<Replica> {
        Arc::new(Replica {
            cfg,
            state: Mutex::new(State::default()),
            created: Instant::now(),
        })
    }

    pub fn config(&self) -> &GpuConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements; keep going after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests waiting for admission (preempted ones included).
    pub fn queue_depth(&self) -> usize {
        self.lock().waiting_len
    }

    /// Sequences in the running batch (not counting noisy-neighbour phantoms).
    pub fn batch_size(&self) -> usize {
        self.lock().running.len()
    }

    /// Sequences preempted so far because the KV cache ran out.
    pub fn preemptions(&self) -> u64 {
        self.lock().preemptions
    }

    /// Time the replica has spent running steps since it was made: divided by a
    /// window's length it is the busy fraction the power model scales by.
    pub fn busy_time(&self) -> Duration {
        self.lock().busy
    }

    /// Time since the replica was made (its idle draw counts from then).
    pub fn uptime(&self) -> Duration {
        Instant::now().saturating_duration_since(self.created)
    }

    /// Modelled utilisation now, 0 to 1: busy time averaged over about the last
    /// second ([`UTILISATION_TAU`]), the way DCGM's utilisation reads.
    pub fn utilization(&self) -> f64 {
        let st = self.lock();
        let Some(at) = st.util_at else {
            return 0.0;
        };
        let idle = Instant::now().saturating_duration_since(at).as_secs_f64();
        (st.util * (-idle / UTILISATION_TAU.as_secs_f64()).exp()).clamp(0.0, 1.0)
    }

    /// Queue for admission (FIFO). Resolves when admitted into the running batch,
    /// with `Overflow` at once when the queue is full, or `Released` when the
    /// release signal fires while waiting (the request then proceeds unharmed).
    ///
    /// `max_tokens` bounds what the model decodes until
    /// [`Sequence::set_output_len`] says how long the real answer is. Dropping the
    /// future leaves the queue.
    pub async fn admit(
        self: &Arc<Self>,
        prompt_tokens: u64,
        max_tokens: u64,
        release: &Release,
    ) -> Admit {
        if !release.faults_enabled() {
            return Admit::Released;
        }
        let seq = {
            let mut st = self.lock();
            if let Some(cap) = self.cfg.queue {
                let free = (self.cfg.usable_slots() as usize).saturating_sub(st.running.len());
                if st.waiting_len >= cap as usize + free {
                    return Admit::Overflow;
                }
            }
            let id = st.next_id;
            st.next_id += 1;
            let shared = Arc::new(Shared::default());
            // An empty prompt still needs one step to produce its first token.
            let prompt = prompt_tokens.max(1);
            st.seqs.insert(
                id,
                Entry {
                    shared: shared.clone(),
                    enqueued: Instant::now(),
                    prompt,
                    target: max_tokens.max(1),
                    produced: 0,
                    prefill_target: prompt,
                    prefilled: 0,
                    kv: 0,
                    running: false,
                    admitted_once: false,
                },
            );
            st.waiting.push_back(id);
            st.waiting_len += 1;
            if !st.driver {
                st.driver = true;
                tokio::spawn(drive(self.clone()));
            }
            Sequence {
                replica: self.clone(),
                id,
                shared,
            }
        };
        let shared = seq.shared.clone();
        let admitted = poll_fn(|cx| shared.poll_until(cx, |s| s.has(ADMITTED | DONE | RELEASED)));
        match release.or_released(admitted).await {
            Some(()) if seq.shared.has(ADMITTED) => Admit::Admitted(seq),
            // Released while waiting, or by `Replica::release_all`.
            _ => Admit::Released,
        }
    }

    /// The kill switch for this replica: every waiting admission resolves as
    /// `Released` and every sequence stops holding its client, now.
    ///
    /// For callers that cannot wrap each wait in [`Release::or_released`] (a body's
    /// `poll_frame`); the proxy calls it when faults turn off.
    pub fn release_all(&self) {
        let shared: Vec<Arc<Shared>> = {
            let mut st = self.lock();
            st.waiting.clear();
            st.waiting_len = 0;
            st.running.clear();
            st.kv_used = 0;
            st.seqs.drain().map(|(_, e)| e.shared).collect()
        };
        for s in shared {
            s.set(RELEASED);
            s.wake();
        }
    }

    /// Takes a sequence out of the model: its slot and KV cache are free from now on.
    fn leave(&self, id: u64) {
        let mut st = self.lock();
        if let Some(e) = st.seqs.remove(&id) {
            if e.running {
                st.kv_used = st.kv_used.saturating_sub(e.kv);
                st.running.retain(|r| *r != id);
            } else {
                st.waiting_len = st.waiting_len.saturating_sub(1);
            }
        }
    }

    fn set_output_len(&self, id: u64, n: u64) {
        let done = {
            let mut st = self.lock();
            match st.seqs.get_mut(&id) {
                Some(e) => {
                    e.target = n;
                    e.produced >= n
                }
                None => false,
            }
        };
        if done {
            self.leave(id);
        }
    }
}

/// How far the scheduler's exact timeline may trail the clock before it resyncs.
const MAX_LAG: Duration = Duration::from_millis(2);

/// The scheduler: one step after another while there is work, then exit.
async fn drive(replica: Arc<Replica>) {
    let mut plan: Vec<Work> = Vec::new();
    let mut woken: Vec<Arc<Shared>> = Vec::new();
    // Steps are shorter than a millisecond apart at times, but tokio's timer has
    // millisecond resolution: keep the exact timeline here and sleep until each
    // step's exact end, so rounding never accumulates.
    let mut clock = Instant::now();
    loop {
        let step = {
            let mut st = replica.lock();
            match st.schedule(&replica.cfg, &mut plan, &mut woken) {
                Some(step) => step,
                None => {
                    st.driver = false;
                    return;
                }
            }
        };
        for s in woken.drain(..) {
            s.wake();
        }
        // Catch up with rounding (under a millisecond), but not with a stalled
        // runtime: a model that fell behind would otherwise burst to catch up.
        let now = Instant::now();
        if now.saturating_duration_since(clock) > MAX_LAG {
            clock = now;
        }
        clock += step;
        tokio::time::sleep_until(clock).await;
        {
            let mut st = replica.lock();
            st.apply(&plan, &mut woken);
            st.count_step(step, clock);
        }
        for s in woken.drain(..) {
            s.wake();
        }
    }
}

impl State {
    /// Plans the next step into `plan` and returns its duration, or `None` when
    /// there is nothing to do.
    fn schedule(
        &mut self,
        cfg: &GpuConfig,
        plan: &mut Vec<Work>,
        woken: &mut Vec<Arc<Shared>>,
    ) -> Option<Duration> {
        plan.clear();
        // At least one token, so a hand-built config without `check` still progresses.
        let mut budget = cfg.max_batched_tokens.max(1);
        let kv_cap = cfg.kv_cache_tokens;

        // Running sequences first, oldest first: a decode token each, or the next
        // chunk of a prompt still being prefilled.
        let mut i = 0;
        while i < self.running.len() {
            let id = self.running[i];
            let Some(e) = self.seqs.get(&id) else {
                self.running.remove(i);
                continue;
            };
            let decode = e.prefilled >= e.prefill_target;
            let need = if decode {
                1
            } else {
                (e.prefill_target - e.prefilled).min(budget)
            };
            if need == 0 || budget == 0 {
                i += 1;
                continue;
            }
            if self.kv_used + need > kv_cap && self.running.len() > 1 {
                // Out of KV cache: preempt the newest sequence (maybe this one) and retry.
                let victim = self.running.len() - 1;
                self.preempt(victim);
                continue;
            }
            // A sequence alone in the batch runs even if it overfills the cache;
            // preempting it could never help.
            if let Some(e) = self.seqs.get_mut(&id) {
                e.kv += need;
            }
            self.kv_used += need;
            budget -= need;
            plan.push(Work {
                id,
                chunk: if decode { 0 } else { need },
                decode,
            });
            i += 1;
        }

        // Then admit from the queue while slots, budget and KV cache allow.
        let slots = cfg.usable_slots() as usize;
        let now = Instant::now();
        while self.running.len() < slots && budget > 0 {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let running_empty = self.running.is_empty();
            let kv_used = self.kv_used;
            let Some(e) = self.seqs.get_mut(&id) else {
                // Left while waiting.
                self.waiting.pop_front();
                continue;
            };
            let chunk = (e.prefill_target - e.prefilled).min(budget);
            if kv_used + chunk > kv_cap && !running_empty {
                break;
            }
            self.waiting.pop_front();
            self.waiting_len = self.waiting_len.saturating_sub(1);
            e.running = true;
            e.kv += chunk;
            self.kv_used += chunk;
            budget -= chunk;
            self.running.push(id);
            if !e.admitted_once {
                e.admitted_once = true;
                let waited = now.saturating_duration_since(e.enqueued);
                e.shared.queue_time_ns.store(
                    u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
                    Ordering::SeqCst,
                );
                e.shared.batch_at_admission.store(
                    u32::try_from(self.running.len()).unwrap_or(u32::MAX),
                    Ordering::SeqCst,
                );
                e.shared.set(ADMITTED);
                woken.push(e.shared.clone());
            }
            plan.push(Work {
                id,
                chunk,
                decode: false,
            });
        }

        if plan.is_empty() {
            return None;
        }
        let prefill: u64 = plan.iter().map(|w| w.chunk).sum();
        let n = u32::try_from(plan.len()).unwrap_or(u32::MAX);
        Some(cfg.step_time_kv(n, prefill, self.kv_used))
    }

    /// RECOMPUTE preemption of `running[index]`: back to the front of the queue,
    /// its KV cache dropped, everything it had to be prefilled again.
    fn preempt(&mut self, index: usize) {
        let id = self.running.remove(index);
        if let Some(e) = self.seqs.get_mut(&id) {
            self.kv_used = self.kv_used.saturating_sub(e.kv);
            e.kv = 0;
            e.running = false;
            e.prefilled = 0;
            e.prefill_target = e.prompt + e.produced;
            self.waiting.push_front(id);
            self.waiting_len += 1;
            self.preemptions += 1;
        }
    }

    /// The step ended: its tokens exist now.
    fn apply(&mut self, plan: &[Work], woken: &mut Vec<Arc<Shared>>) {
        let mut finished = false;
        for w in plan {
            let Some(e) = self.seqs.get_mut(&w.id) else {
                continue; // left during the step
            };
            if !e.running {
                continue;
            }
            let before = e.produced;
            if w.decode {
                e.produced += 1;
            } else {
                e.prefilled += w.chunk;
                // The step that completes a prompt also samples its next token.
                if e.prefilled >= e.prefill_target {
                    e.produced += 1;
                }
            }
            if e.produced != before {
                e.shared.produced.store(e.produced, Ordering::SeqCst);
                if e.produced >= e.target {
                    e.shared.set(DONE);
                    finished = true;
                }
                woken.push(e.shared.clone());
            }
        }
        if finished {
            let seqs = &mut self.seqs;
            let mut freed = 0;
            self.running.retain(|id| match seqs.get(id) {
                Some(e) if e.shared.has(DONE) => {
                    freed += e.kv;
                    seqs.remove(id);
                    false
                }
                _ => true,
            });
            self.kv_used = self.kv_used.saturating_sub(freed);
        }
    }
}

/// A request's place in the model. Dropping it means the request left: its slot
/// and KV cache are freed.
pub struct Sequence {
    replica: Arc<Replica>,
    id: u64,
    shared: Arc<Shared>,
}

impl fmt::Debug for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sequence")
            .field("id", &self.id)
            .field("produced", &self.produced())
            .finish()
    }
}

impl Drop for Sequence {
    fn drop(&mut self) {
        self.replica.leave(self.id);
    }
}

impl Sequence {
    /// Time spent waiting for admission.
    pub fn queue_time(&self) -> Duration {
        Duration::from_nanos(self.shared.queue_time_ns.load(Ordering::SeqCst))
    }

    /// Running sequences when this one was admitted, itself included.
    pub fn batch_at_admission(&self) -> u32 {
        self.shared.batch_at_admission.load(Ordering::SeqCst)
    }

    /// Tokens the model has produced for this sequence so far (0 until its
    /// prefill is done).
    pub fn produced(&self) -> u64 {
        self.shared.produced.load(Ordering::SeqCst)
    }

    /// Resolves when `produced() >= n`, or the sequence is finished or released.
    pub async fn until_produced(&self, n: u64) {
        let shared = &self.shared;
        poll_fn(|cx| shared.poll_until(cx, |s| s.produced_at_least(n))).await
    }

    /// [`Sequence::until_produced`] for a `Body::poll_frame` loop: registers the
    /// task's waker, which is woken only when this sequence's count changes.
    pub fn poll_produced(&mut self, n: u64, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.poll_until(cx, |s| s.produced_at_least(n))
    }

    /// The real answer's length, once known: the model stops there instead of at
    /// `max_tokens` (and is done at once if it already produced that many).
    pub fn set_output_len(&self, n: u64) {
        self.replica.set_output_len(self.id, n);
        if self.produced() >= n {
            self.shared.set(DONE);
            self.shared.wake();
        }
    }

    /// The answer ended: free the slot now.
    pub fn finish(&self) {
        self.shared.set(DONE);
        self.replica.leave(self.id);
        self.shared.wake();
    }

    /// The kill switch: stop holding this sequence; `until_produced` resolves at
    /// once from now on, and the slot is freed.
    pub fn release(&self) {
        self.shared.set(RELEASED);
        self.replica.leave(self.id);
        self.shared.wake();
    }

    /// Whether [`Sequence::release`] or [`Replica::release_all`] let it go.
    pub fn is_released(&self) -> bool {
        self.shared.has(RELEASED)
    }
}
