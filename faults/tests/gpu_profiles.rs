//! Golden tests for `gpu_saturation` and `cold_start` in profiles: each form parses
//! to the value it should, resolves to the right replica config, and each mistake
//! fails at the right `line:column` with a hint.

use std::time::Duration;

use brownout_faults::explain::explain;
use brownout_faults::fault;
use brownout_faults::gpu::{GpuConfig, StepModel};
use brownout_faults::profile::{FaultSpec, QueueCap, StepFit, StepRoofline, StepSpec};
use brownout_faults::validate::load_profile;
use brownout_faults::Dist;

mod common;
use common::{check_fault_error as check, one_fault, HEAD};

fn bare() -> FaultSpec {
    FaultSpec::GpuSaturation(fault::GpuSaturation {
        gpu: None,
        model: None,
        slots: None,
        queue: None,
        overflow: None,
        max_batched_tokens: None,
        kv_cache_tokens: None,
        slowdown: None,
        noisy_neighbor: None,
        step: None,
        prefill_ms_per_token: None,
    })
}

#[test]
fn gpu_saturation_parses() {
    assert_eq!(one_fault("{type: gpu_saturation}"), bare());
    assert_eq!(one_fault("gpu_saturation"), bare());
    let full = one_fault(
        "{type: gpu_saturation, gpu: a100-40gb, model: llama-3.1-8b, slots: 64, queue: 100, overflow: vllm.queue_full, max_batched_tokens: 4096, kv_cache_tokens: 20000, slowdown: 1.5, noisy_neighbor: 8, step: {fit: {a_ms: 13, b_ms: 0.3}}, prefill_ms_per_token: 0.1}",
    );
    assert_eq!(
        full,
        FaultSpec::GpuSaturation(fault::GpuSaturation {
            gpu: Some("a100-40gb".into()),
            model: Some("llama-3.1-8b".into()),
            slots: Some(64),
            queue: Some(QueueCap::Max(100)),
            overflow: Some("vllm.queue_full".into()),
            max_batched_tokens: Some(4096),
            kv_cache_tokens: Some(20000),
            slowdown: Some(1.5),
            noisy_neighbor: Some(8),
            step: Some(StepSpec::Fit(StepFit {
                a_ms: 13.0,
                b_ms: 0.3,
                c_ms: 0.0
            })),
            prefill_ms_per_token: Some(0.1),
        })
    );
    assert_eq!(full.kind(), "gpu_saturation");
    assert!(full.is_request_fault() && !full.is_stream_fault() && !full.is_content_fault());
    let FaultSpec::GpuSaturation(fault::GpuSaturation { queue, step, .. }) =
        one_fault("{type: gpu_saturation, queue: unbounded, step: {roofline: {bandwidth_gbps: 2000, weights_gb: 16, flops_efficiency: 0.4}}}")
    else {
        panic!()
    };
    assert_eq!(queue, Some(QueueCap::Unbounded));
    assert_eq!(
        step,
        Some(StepSpec::Roofline(StepRoofline {
            bandwidth_gbps: Some(2000.0),
            weights_gb: Some(16.0),
            flops_efficiency: Some(0.4),
            ..StepRoofline::default()
        }))
    );
}

#[test]
fn presets_give_defaults_and_fields_override_them() {
    let h100 = GpuConfig::from_spec(&bare()).unwrap();
    assert_eq!(
        h100,
        GpuConfig::preset("h100-80gb", "llama-3.1-8b").unwrap()
    );
    assert_eq!(h100.queue, None);
    let seventy = GpuConfig::from_spec(&one_fault(
        "{type: gpu_saturation, model: llama-3.3-70b-fp8}",
    ))
    .unwrap();
    assert_eq!(
        seventy.gpu, "2xh100-80gb",
        "a model alone picks its usual card"
    );
    let c = GpuConfig::from_spec(&one_fault(
        "{type: gpu_saturation, gpu: a100-40gb, slots: 16, queue: 5, kv_cache_tokens: 9000, slowdown: 2, noisy_neighbor: 3}",
    ))
    .unwrap();
    assert_eq!(
        (c.slots, c.queue, c.kv_cache_tokens, c.noisy_neighbor),
        (16, Some(5), 9000, 3)
    );
    assert_eq!(c.slowdown, 2.0);
    assert_eq!(c.max_batched_tokens, 2048, "the A100 preset's budget");
    // A roofline "what if": the A100's numbers for a model it was not calibrated on.
    let r = GpuConfig::from_spec(&one_fault(
        "{type: gpu_saturation, gpu: h100-80gb, step: {roofline: {bandwidth_gbps: 1555, tflops: 312}}}",
    ))
    .unwrap();
    let StepModel::Roofline(roof) = r.step else {
        panic!("{r:?}")
    };
    assert_eq!(roof.bandwidth_gbps, 1555.0);
    assert_eq!(roof.weight_bytes, 16.06e9, "the model preset's weights");
    // Without an explicit prefill cost, the roofline's is used.
    assert!((r.prefill_ms_per_token - roof.prefill_ms_per_token()).abs() < 1e-12);
    let ms = r.step_time(1, 0).as_secs_f64() * 1e3;
    assert!((12.0..14.0).contains(&ms), "{ms}");
    assert!(GpuConfig::from_spec(&FaultSpec::Reset(fault::Reset {
        after_bytes: None,
        scope: None,
        code: None
    }))
    .is_err());
}

#[test]
fn cold_start_parses() {
    assert_eq!(
        one_fault("{type: cold_start, duration: 20s}"),
        FaultSpec::ColdStart(fault::ColdStart {
            idle: brownout_faults::duration::DurationStr(Duration::from_secs(300)),
            duration: Dist::Fixed(Duration::from_secs(20)),
        })
    );
    let f = one_fault("{type: cold_start, idle: 10m, duration: {uniform: [10s, 40s]}}");
    assert_eq!(
        f,
        FaultSpec::ColdStart(fault::ColdStart {
            idle: brownout_faults::duration::DurationStr(Duration::from_secs(600)),
            duration: Dist::Uniform(Duration::from_secs(10), Duration::from_secs(40)),
        })
    );
    assert_eq!(f.kind(), "cold_start");
    assert!(f.is_request_fault());
}

#[test]
fn mistakes_point_at_the_value() {
    check(
        "{type: gpu_saturation, gpu: h100}",
        "h100",
        "unknown gpu `h100`",
        "did you mean `h100-80gb`?",
    );
    check(
        "{type: gpu_saturation, model: llama-3.1-7b}",
        "llama",
        "unknown model",
        "did you mean `llama-3.1-8b`?",
    );
    check(
        "{type: gpu_saturation, gpu: a100-40gb, model: llama-3.3-70b-fp8}",
        "a100",
        "does not fit on a100-40gb",
        "gpu: 2xh100-80gb",
    );
    check(
        "{type: gpu_saturation, slots: 0}",
        "0}",
        "`slots` must be at least 1",
        "max_num_seqs",
    );
    check(
        "{type: gpu_saturation, slots: 2048, max_batched_tokens: 1024}",
        "1024",
        "below `slots`",
        "raise",
    );
    check(
        "{type: gpu_saturation, queue: lots}",
        "lots",
        "expected `unbounded` or a number",
        "queue: 100",
    );
    check(
        "{type: gpu_saturation, queue: -1}",
        "-1",
        "cannot hold -1",
        "unbounded",
    );
    check(
        "{type: gpu_saturation, slowdown: 0.5}",
        "0.5",
        "`slowdown` must be 1 or more",
        "half speed",
    );
    check(
        "{type: gpu_saturation, kv_cache_tokens: 0}",
        "0}",
        "`kv_cache_tokens` must be at least 1",
        "KV cache",
    );
    check(
        "{type: gpu_saturation, overflow: vllm.full}",
        "vllm.full",
        "unknown error preset",
        "vllm.queue_full",
    );
    check(
        "{type: gpu_saturation, step: {fit: {a_ms: 0}}}",
        "0}",
        "`a_ms` must be above zero",
        "a_ms: 4.6",
    );
    check(
        "{type: gpu_saturation, step: {fit: {a_ms: 5, c_ms: -1}}}",
        "-1",
        "`c_ms` must be 0 or more",
        "shrink",
    );
    check(
        "{type: gpu_saturation, step: {roofline: {bandwidth_efficiency: 80}}}",
        "80",
        "`bandwidth_efficiency` 80 is not above 0",
        "write 0.8",
    );
    check(
        "{type: gpu_saturation, step: {roofline: {weight_bytes: 1, weights_gb: 2}}}",
        "2}",
        "not both",
        "drop one",
    );
    check(
        "{type: gpu_saturation, step: {table: {}}}",
        "{table",
        "missing",
        "`fit`, `roofline`",
    );
    check(
        "{type: gpu_saturation, slot: 4}",
        "slot",
        "unknown field `slot`",
        "did you mean `slots`?",
    );
    check(
        "{type: gpu_saturation, prefill_ms_per_token: -1}",
        "-1",
        "must be 0 or more",
        "0.025",
    );
    check(
        "{type: cold_start, duration: 20s, idle: 0s}",
        "0s}",
        "`idle` must be longer than zero",
        "idle: 5m",
    );
    check(
        "{type: cold_start}",
        "{type",
        "missing field `duration`",
        "duration",
    );
}

#[test]
fn explain_reads_the_resolved_numbers() {
    let src = format!(
        "{HEAD}rules:\n  - faults:\n      - {{type: gpu_saturation, queue: 50, overflow: vllm.queue_full, slowdown: 2, noisy_neighbor: 16}}\n      - {{type: cold_start, duration: 30s}}\n"
    );
    let p = load_profile(&src, "p.yaml").unwrap();
    let text = explain(&p);
    for want in [
        "one simulated h100-80gb replica serving llama-3.1-8b",
        "a step takes 4.6 ms with 1 sequence",
        "every step 2× slower",
        "16 phantom sequences",
        "at most 50 wait, the rest are refused with preset vllm.queue_full (503)",
        "after 5m without requests, hold the next one for a model load of 30s",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}
