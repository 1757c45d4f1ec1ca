//! The official Python SDKs against the sim: they are the judges of the wire
//! format. openai-python asks for base64 embeddings by default and decodes them
//! itself; anthropic-python parses the named SSE events into a final message.
//!
//! Runs the SDKs of the cached `sdk` Python environment
//! (`integration-tests/python/venv.sh sdk`, built on first use; CI builds it first).

use std::time::Duration;

use brownout_sim::{answer_text, spawn, SimConfig};

mod common;

const SCRIPT: &str = r#"
import json, os
import anthropic, openai

base = os.environ["SIM_URL"]
out = {}

oc = openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)
# No encoding_format: the SDK sends "base64" and decodes it to floats.
r = oc.embeddings.create(model="text-embedding-3-small", input=["hello", "hello", "bye"])
assert len(r.data) == 3, r
e = r.data[0].embedding
assert isinstance(e, list) and len(e) == 256 and isinstance(e[0], float), type(e)
assert e == r.data[1].embedding and e != r.data[2].embedding
assert abs(sum(x * x for x in e) - 1.0) < 1e-4
f = oc.embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="float")
assert max(abs(a - b) for a, b in zip(e, f.data[0].embedding)) < 1e-6
assert r.usage.prompt_tokens == 5, r.usage
out["embedding_head"] = e[:4]

chunks = list(oc.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "usage?"}],
    max_tokens=3, stream=True, stream_options={"include_usage": True}))
assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3, chunks[-1]
assert all(c.usage is None for c in chunks[:-1])

ac = anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0)
prompt = [{"role": "user", "content": "Say something about brownouts."}]
m = ac.messages.create(model="claude-sonnet-4-20250514", max_tokens=1024, messages=prompt)
assert m.type == "message" and m.role == "assistant" and m.stop_reason == "end_turn", m
out["message"] = m.content[0].text
out["message_usage"] = [m.usage.input_tokens, m.usage.output_tokens]

with ac.messages.stream(model="claude-sonnet-4-20250514", max_tokens=5, messages=prompt) as s:
    out["stream"] = "".join(s.text_stream)
    final = s.get_final_message()
assert final.stop_reason == "max_tokens", final
assert final.usage.output_tokens == 5, final.usage
assert final.content[0].text == out["stream"]

events = [ev.type for ev in ac.messages.create(
    model="claude-sonnet-4-20250514", max_tokens=2, messages=prompt, stream=True)]
out["events"] = events

print("RESULT " + json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_read_the_sim() {
    let sim = spawn(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            ttft: Duration::from_millis(1),
            itl: Duration::from_millis(1),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let url = sim.url();
    let (out, _) =
        common::run_result(vec!["-c".into(), SCRIPT.into()], vec![("SIM_URL", url)]).await;

    let prompt = "Say something about brownouts.";
    let model = "claude-sonnet-4-20250514";
    let n = SimConfig::default().max_tokens_default;
    assert_eq!(out["message"], answer_text(model, prompt, n));
    assert_eq!(out["message_usage"], serde_json::json!([8, n]));
    assert_eq!(out["stream"], answer_text(model, prompt, 5));
    assert_eq!(
        out["events"],
        serde_json::json!([
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]),
        "the SDK hides pings and sees every other event"
    );
    let head: Vec<f64> = out["embedding_head"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want = brownout_sim::embedding(
        "text-embedding-3-small",
        &brownout_sim::EmbeddingInput::Text("hello"),
        256,
    );
    for (got, want) in head.iter().zip(&want) {
        // base64 decoding gives the f32 exactly.
        assert_eq!(*got, f64::from(*want));
    }
    sim.shutdown().await;
}
