//! The deployment files (issue "Sidecar deployment"): no Docker engine or cluster
//! runs here, so the Dockerfile, the compose file, the Kubernetes manifests, the
//! Prometheus config and the Grafana dashboard are checked by parsing them: the
//! essentials a deployment depends on (images and commands, env vars, ports, the
//! ConfigMap mounted as a directory so edits hot-reload, the scrape target, and
//! every metric a Grafana panel queries being one brownout really exports).
//! proxy/tests/container.rs runs the Dockerfile's commands with the real binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use brownout_integration_tests::*;
use yaml_rust2::{Yaml, YamlLoader};

fn read(rel: &str) -> String {
    let p = repo_root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn s(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {y:?}"))
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("expected a list, found {y:?}"))
        .iter()
        .map(|v| match v {
            Yaml::String(x) => x.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => panic!("expected a scalar, found {other:?}"),
        })
        .collect()
}

/// The port of `host:port`.
fn port(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

#[test]
fn dockerfile_is_multi_stage_pinned_non_root_and_env_configured() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    for f in &froms {
        let image = f.split_whitespace().next().unwrap();
        let tag = image.split_once(':').map(|x| x.1).unwrap_or("");
        assert!(
            !tag.is_empty()
                && tag != "latest"
                && tag
                    .chars()
                    .any(|c| c.is_ascii_digit() || c.is_ascii_alphabetic()),
            "base image {image} must be pinned by a version tag"
        );
    }
    assert!(
        froms[0].starts_with("rust:1.") && froms[0].contains("-bookworm"),
        "{froms:?}"
    );
    assert!(
        text.contains("cargo build --release --locked -p brownout"),
        "a locked release build"
    );
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as {user}"
    );
    // The HEALTHCHECK uses the binary itself (slim images have no curl).
    let hc = lines
        .iter()
        .position(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    let hc_text = lines[hc..]
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        hc_text.contains(r#"["/usr/local/bin/brownout", "ctl", "health"]"#),
        "{hc_text}"
    );
    assert!(
        text.contains("BROWNOUT_LISTEN=0.0.0.0:8080"),
        "listens on every interface"
    );
    assert!(
        text.contains("BROWNOUT_ADMIN=127.0.0.1:9911"),
        "the admin API stays on loopback unless a token is set"
    );
    assert!(text.contains(r#"ENTRYPOINT ["/usr/local/bin/brownout"]"#));
    assert!(text.contains(r#"CMD ["serve"]"#));
    assert!(text.contains("EXPOSE 8080 9911"));
}

#[test]
fn compose_puts_brownout_in_front_of_the_model_with_prometheus_scraping_it() {
    let docs = yaml_docs("deploy/docker-compose.yaml");
    let c = &docs[0];
    let services = &c["services"];
    let model = &services["model"];
    let bo = &services["brownout"];
    let prom = &services["prometheus"];
    assert!(!model.is_badvalue() && !bo.is_badvalue() && !prom.is_badvalue());

    // The model server: `brownout sim` as the stand-in, listening on a known port.
    let model_cmd = strs(&model["command"]);
    assert_eq!(model_cmd[0], "sim");
    let model_listen = &model_cmd[model_cmd.iter().position(|a| a == "--listen").unwrap() + 1];
    let model_port = port(model_listen);
    assert_eq!(s(&model["build"]["dockerfile"]), "Dockerfile");

    // brownout: the same image, configured by env, forwarding to the model.
    assert_eq!(strs(&bo["command"]), ["serve"]);
    assert_eq!(s(&bo["image"]), s(&model["image"]));
    let env = &bo["environment"];
    assert_eq!(
        s(&env["BROWNOUT_UPSTREAM"]),
        format!("http://model:{model_port}")
    );
    assert_eq!(s(&env["BROWNOUT_API"]), "openai");
    let listen = s(&env["BROWNOUT_LISTEN"]);
    assert!(listen.starts_with("0.0.0.0:"));
    let admin = s(&env["BROWNOUT_ADMIN"]);
    assert!(
        admin.starts_with("0.0.0.0:"),
        "Prometheus must reach the admin port"
    );
    assert!(
        s(&env["BROWNOUT_ADMIN_TOKEN"]).contains("${BROWNOUT_ADMIN_TOKEN:?"),
        "an open admin needs a token; compose must refuse to start without one"
    );
    let profile = s(&env["BROWNOUT_PROFILE"]);
    let ports = strs(&bo["ports"]);
    assert!(
        ports
            .iter()
            .any(|p| p.ends_with(&format!(":{}", port(listen)))),
        "{ports:?}"
    );
    assert!(
        ports
            .iter()
            .any(|p| p == &format!("127.0.0.1:{0}:{0}", port(admin))),
        "the admin port is published on the host's loopback only: {ports:?}"
    );
    // The profile directory is mounted (hot reload), and the profile exists.
    let vols = strs(&bo["volumes"]);
    let prof_dir = Path::new(profile).parent().unwrap().to_str().unwrap();
    let mount = vols
        .iter()
        .find(|v| v.split(':').nth(1) == Some(prof_dir))
        .unwrap_or_else(|| panic!("{prof_dir} is mounted: {vols:?}"));
    let host_dir = mount.split(':').next().unwrap();
    let host_file = repo_root()
        .join("deploy")
        .join(host_dir)
        .join(Path::new(profile).file_name().unwrap());
    let text = std::fs::read_to_string(&host_file).expect("the compose profile exists");
    brownout_faults::validate::load_profile(&text, "compose profile").expect("it validates");

    // Prometheus scrapes brownout's admin port.
    let pvols = strs(&prom["volumes"]);
    assert!(pvols.iter().any(|v| v.starts_with("./prometheus.yml:")));
    assert!(s(&prom["image"]).starts_with("prom/prometheus:v"));
    let pcfg = &yaml_docs("deploy/prometheus.yml")[0];
    let job = &pcfg["scrape_configs"][0];
    assert_eq!(s(&job["metrics_path"]), "/metrics");
    let targets = strs(&job["static_configs"][0]["targets"]);
    assert_eq!(targets, [format!("brownout:{}", port(admin))]);
    // Every image is pinned.
    for (name, svc) in services.as_hash().unwrap() {
        let image = s(&svc["image"]);
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "{}: {image}",
            s(name)
        );
    }
}

#[test]
fn kubernetes_pod_runs_brownout_as_a_sidecar_with_a_hot_reloaded_configmap_profile() {
    let docs = yaml_docs("deploy/kubernetes/pod.yaml");
    let by_kind: BTreeMap<&str, &Yaml> = docs.iter().map(|d| (s(&d["kind"]), d)).collect();
    let cm = by_kind["ConfigMap"];
    let pod = by_kind["Pod"];
    assert!(by_kind.contains_key("Service"));

    // The ConfigMap's profile is valid.
    let data = cm["data"].as_hash().unwrap();
    assert_eq!(data.len(), 1);
    let (key, text) = data.iter().next().unwrap();
    brownout_faults::validate::load_profile(s(text), s(key))
        .expect("the ConfigMap's profile validates");

    let spec = &pod["spec"];
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let containers = spec["containers"].as_vec().unwrap();
    let bo = containers
        .iter()
        .find(|c| s(&c["name"]) == "brownout")
        .expect("a brownout container");
    let model = containers
        .iter()
        .find(|c| s(&c["name"]) != "brownout")
        .expect("a model container");
    let model_args = strs(&model["args"]);
    let model_port =
        port(&model_args[model_args.iter().position(|a| a == "--listen").unwrap() + 1]);
    assert_eq!(strs(&bo["args"]), ["serve"]);
    assert_eq!(s(&bo["image"]).split(':').next(), Some("brownout"));

    let env: BTreeMap<String, &Yaml> = bo["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| (s(&e["name"]).to_string(), e))
        .collect();
    let val = |k: &str| s(&env[k]["value"]).to_string();
    assert_eq!(
        val("BROWNOUT_UPSTREAM"),
        format!("http://127.0.0.1:{model_port}")
    );
    assert!(val("BROWNOUT_LISTEN").starts_with("0.0.0.0:"));
    let admin = val("BROWNOUT_ADMIN");
    assert!(admin.starts_with("0.0.0.0:"));
    let secret = &env["BROWNOUT_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"];
    assert!(
        !secret["name"].is_badvalue(),
        "the token comes from a Secret"
    );

    // Ports and probes on the admin port.
    let ports: BTreeMap<&str, i64> = bo["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| (s(&p["name"]), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert_eq!(ports["http"], port(&val("BROWNOUT_LISTEN")) as i64);
    assert_eq!(ports["admin"], port(&admin) as i64);
    assert_eq!(s(&bo["readinessProbe"]["httpGet"]["path"]), "/readyz");
    assert_eq!(s(&bo["livenessProbe"]["httpGet"]["path"]), "/healthz");
    assert_eq!(s(&bo["readinessProbe"]["httpGet"]["port"]), "admin");
    assert_eq!(
        s(&pod["metadata"]["annotations"]["prometheus.io/port"]),
        port(&admin).to_string()
    );

    // The profile: a ConfigMap volume mounted as a directory (a subPath mount would
    // never see updates), at the directory BROWNOUT_PROFILE names, file = the key.
    let profile = val("BROWNOUT_PROFILE");
    let profile = Path::new(&profile);
    let mount = bo["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| Path::new(s(&m["mountPath"])) == profile.parent().unwrap())
        .expect("the profile's directory is a volume mount");
    assert!(
        mount["subPath"].is_badvalue(),
        "no subPath: it would break hot reload"
    );
    assert_eq!(profile.file_name().unwrap().to_str(), Some(s(key)));
    let vol = spec["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| s(&v["name"]) == s(&mount["name"]))
        .expect("the mounted volume");
    assert_eq!(s(&vol["configMap"]["name"]), s(&cm["metadata"]["name"]));
    assert_eq!(
        bo["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
}

/// `brownout_*` metric names in a PromQL expression, histogram suffixes removed.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("brownout_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let name = &expr[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| name.strip_suffix(suf))
            .unwrap_or(name);
        out.push(base.to_string());
        i = end;
    }
    out
}

#[test]
fn grafana_dashboard_queries_only_metrics_brownout_exports() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana-dashboard.json")).unwrap();
    let docs = read("docs/records.md");
    // Every family the renderer writes (HELP/TYPE lines appear even with no samples).
    let metrics = brownout::record::metrics::Metrics::default();
    let text = metrics.render(&brownout::record::metrics::Gauges {
        faults_enabled: true,
        profile: "p",
        phase: None,
        records_dropped: Default::default(),
        gpu: vec![],
    });
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let mut queried = BTreeSet::new();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} queries nothing", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("an expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                assert!(
                    exported.contains(&n),
                    "{n} (panel {}) is not exported: {exported:?}",
                    p["title"]
                );
                assert!(
                    docs.contains(&format!("`{n}`")),
                    "{n} is not documented in docs/records.md"
                );
                queried.insert(n);
            }
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}");
    }
    // The dashboard covers the core families.
    for m in [
        "brownout_requests_total",
        "brownout_faults_injected_total",
        "brownout_request_duration_seconds",
        "brownout_time_to_first_token_seconds",
        "brownout_faults_enabled",
        "brownout_phase_info",
    ] {
        assert!(queried.contains(m), "no panel shows {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_health_is_the_containers_health_check() {
    use brownout::control::ctl::{run, CtlCommand};
    let up = Upstream::start(|_req| async { reply(200, "ok") }).await;
    let proxy = ProxyBuilder::new(up.url())
        .admin_token("health-needs-no-token")
        .start()
        .await;
    let addr = proxy.admin_addr.unwrap().to_string();
    assert_eq!(
        run(&addr, None, &CtlCommand::Health, false).await.unwrap(),
        "healthy"
    );
    // Status needs the token; health does not.
    assert!(run(&addr, None, &CtlCommand::Status, false).await.is_err());
    let dead = closed_port_addr().await.to_string();
    let err = run(&dead, None, &CtlCommand::Health, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

/// docs/ci.md's GitHub Actions job: the drill step runs a scenario that exists and
/// is valid, and the JUnit, summary and artifact steps read the drill's report
/// directory, even when the drill failed.
#[test]
fn github_actions_drill_job_is_consistent() {
    let rel = "deploy/ci/github-actions-drill.yml";
    let doc = &yaml_docs(rel)[0];
    let steps = doc["jobs"]["drill"]["steps"]
        .as_vec()
        .expect("jobs.drill.steps");
    let run_of = |needle: &str| {
        steps
            .iter()
            .filter_map(|s| s["run"].as_str())
            .find(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no step runs `{needle}`"))
            .to_string()
    };
    assert!(run_of("cargo build").contains("--release --locked -p brownout"));
    let drill = run_of("brownout drill");
    let words: Vec<&str> = drill.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "drill").unwrap();
    let scenario = words[i + 1];
    let dir = words[words.iter().position(|w| *w == "--report-dir").unwrap() + 1];
    let path = repo_root().join(scenario);
    brownout_drill::scenario::load_scenario_file(&path).unwrap_or_else(|d| panic!("{}", d[0]));
    let with = |uses: &str| {
        let step = steps
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(uses)))
            .unwrap_or_else(|| panic!("no step uses {uses}"));
        assert_eq!(
            s(&step["if"]),
            "always()",
            "{uses} must run after a failed drill"
        );
        step["with"].clone()
    };
    assert_eq!(
        s(&with("mikepenz/action-junit-report")["report_paths"]),
        format!("{dir}/junit.xml")
    );
    assert_eq!(
        s(&with("actions/upload-artifact")["path"]).trim_end_matches('/'),
        dir
    );
    assert!(run_of("GITHUB_STEP_SUMMARY").contains(&format!("{dir}/summary.md")));
    // docs/ci.md shows the same job.
    let doc_text = read("docs/ci.md");
    assert!(doc_text.contains(&drill), "docs/ci.md shows the drill step");
}
