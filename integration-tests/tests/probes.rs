//! Health probes pass a sidecar unharmed: a broad profile faults the traffic,
//! not the orchestrator's `/health` checks, unless a rule names the probe's path.

use brownout_integration_tests::*;

#[tokio::test]
async fn a_broad_profile_leaves_health_probes_alone_on_both_paths() {
    for fast_path in [true, false] {
        let upstream = Upstream::start(|_req| async { reply(200, "up") }).await;
        let p = ProxyBuilder::new(upstream.url())
            .config(move |c| c.fast_path = fast_path)
            .profile(
                r#"
version: 1
name: broad
rules:
  - {name: everything, faults: [{type: error, status: 503}]}
  - {name: probe-by-name, match: {path: /readyz}, faults: [{type: error, status: 500}]}
"#,
            )
            .start()
            .await;
        let c = http1_client();
        for probe in [
            "/health",
            "/healthz",
            "/livez",
            "/metrics",
            "/v2/health/ready",
        ] {
            let r = send(&c, get(p.url(probe))).await.unwrap();
            assert_eq!(r.status, 200, "fast path {fast_path}: {probe} was faulted");
            assert_eq!(r.body, "up");
        }
        let r = send(&c, get(p.url("/v1/models"))).await.unwrap();
        assert_eq!(r.status, 503, "fast path {fast_path}: traffic is faulted");
        let r = send(&c, get(p.url("/readyz"))).await.unwrap();
        assert_eq!(
            r.status, 500,
            "fast path {fast_path}: a rule naming the probe applies"
        );
        p.shutdown().await;
    }
}
