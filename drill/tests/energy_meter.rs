//! The energy meter against a local HTTP server serving Prometheus text: DCGM's
//! energy counter, DCGM's power gauge alone, brownout's busy seconds, and a page
//! that is not Prometheus text.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brownout_drill::cost::EnergySpec;
use brownout_drill::energy::{EnergyError, EnergyMeter, PowerSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves whatever `body` holds at the time of each request, as
/// `text/plain; version=0.0.4`, one request per connection.
async fn exporter(body: Arc<Mutex<String>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let body = body.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/metrics")
}

/// dcgm-exporter's output for two H100s (labels as it writes them).
fn dcgm(power: [f64; 2], energy_mj: Option<[u64; 2]>) -> String {
    let labels = |i: usize| {
        format!("gpu=\"{i}\",UUID=\"GPU-9f1c{i}e2a-4b7d-11ee-8c90-0242ac12000{i}\",pci_bus_id=\"00000000:{:02X}:00.0\",device=\"nvidia{i}\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"dcgm-exporter-7xk2p\",container=\"vllm\",namespace=\"inference\",pod=\"vllm-0\"", 0x18 + i)
    };
    let mut s = String::from(
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n",
    );
    for i in 0..2 {
        s.push_str(&format!("DCGM_FI_DEV_GPU_UTIL{{{}}} 97\n", labels(i)));
    }
    s.push_str(
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n",
    );
    for (i, p) in power.iter().enumerate() {
        s.push_str(&format!(
            "DCGM_FI_DEV_POWER_USAGE{{{}}} {p:.3}\n",
            labels(i)
        ));
    }
    if let Some(e) = energy_mj {
        s.push_str("# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n");
        for (i, e) in e.iter().enumerate() {
            s.push_str(&format!(
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{}}} {e}\n",
                labels(i)
            ));
        }
    }
    s
}

fn dcgm_spec(url: &str) -> EnergySpec {
    EnergySpec {
        gpu: Some("h100-80gb".into()),
        prometheus: Some(url.to_owned()),
        ..EnergySpec::default()
    }
}

#[tokio::test]
async fn dcgm_energy_counter_gives_the_exact_mean() {
    let body = Arc::new(Mutex::new(dcgm(
        [100.0, 100.0],
        Some([5_000_000, 7_000_000]),
    )));
    let url = exporter(body.clone()).await;
    let m = EnergyMeter::start(&dcgm_spec(&url), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 3,000 J and 4,000 J more at the end, whatever the gauges said.
    *body.lock().unwrap() = dcgm([1.0, 1.0], Some([8_000_000, 11_000_000]));
    let r = m.finish().await.unwrap();
    assert_eq!(r.source, PowerSource::Dcgm);
    let expect = 7_000.0 / r.duration_s;
    assert!((r.mean_w - expect).abs() < 1e-6, "{r:?}");
    assert!(r.duration_s >= 0.2, "{r:?}");
}

#[tokio::test]
async fn dcgm_power_gauge_is_sampled_and_averaged() {
    let body = Arc::new(Mutex::new(dcgm([300.0, 100.0], None)));
    let url = exporter(body.clone()).await;
    let spec = dcgm_spec(&url);
    // A steady card reads its draw, summed over cards.
    let m = EnergyMeter::start_every(&spec, None, Duration::from_millis(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = m.finish().await.unwrap();
    assert_eq!(r.source, PowerSource::Dcgm);
    assert!((r.mean_w - 400.0).abs() < 1e-9, "{r:?}");
    // 400 W at the start, 800 W at the end and in between: the mean lies between.
    let m = EnergyMeter::start_every(&spec, None, Duration::from_millis(20))
        .await
        .unwrap();
    *body.lock().unwrap() = dcgm([400.0, 400.0], None);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = m.finish().await.unwrap();
    assert!(r.mean_w > 400.0 && r.mean_w < 800.0, "{r:?}");
}

fn busy(rule_a: f64, rule_b: f64) -> String {
    format!(
        "# HELP brownout_gpu_busy_seconds_total Seconds a simulated GPU spent running steps, per rule.\n\
         # TYPE brownout_gpu_busy_seconds_total counter\n\
         brownout_gpu_busy_seconds_total{{rule=\"a\"}} {rule_a}\n\
         brownout_gpu_busy_seconds_total{{rule=\"b \\\"two\\\"\"}} {rule_b}\n"
    )
}

#[tokio::test]
async fn brownout_busy_seconds_are_scaled_by_the_power_model() {
    let body = Arc::new(Mutex::new(busy(100.0, 0.0)));
    let url = exporter(body.clone()).await;
    let spec = EnergySpec {
        gpu: Some("a100-40gb".into()),
        ..EnergySpec::default()
    };
    let m = EnergyMeter::start(&spec, Some(&url)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Replica a was busy longer than the window (clamped: fully busy), replica b
    // not at all: 400 W + 50 W on the A100 SXM preset.
    *body.lock().unwrap() = busy(1_000.0, 0.0);
    let r = m.finish().await.unwrap();
    assert_eq!(r.source, PowerSource::GpuModel);
    assert!((r.mean_w - 450.0).abs() < 1e-9, "{r:?}");
    assert_eq!(r.utilisation, Some(0.5));
}

#[tokio::test]
async fn a_page_without_the_series_or_not_prometheus_is_an_error() {
    let body = Arc::new(Mutex::new("<html><body>Grafana</body></html>".to_owned()));
    let url = exporter(body.clone()).await;
    let e = EnergyMeter::start(&dcgm_spec(&url), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not Prometheus text"), "{e}");
    *body.lock().unwrap() = busy(1.0, 1.0);
    let e = EnergyMeter::start(&dcgm_spec(&url), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            EnergyError::NoSeries {
                series: "DCGM_FI_DEV_POWER_USAGE",
                ..
            }
        ),
        "{e}"
    );
    // brownout's /metrics without a power model cannot be turned into watts.
    let e = EnergyMeter::start(&EnergySpec::default(), Some(&url))
        .await
        .unwrap_err();
    assert!(matches!(e, EnergyError::NoPowerModel), "{e}");
}

/// POST one streamed chat of `n` tokens to the sim and read it to the end.
async fn chat(url: &str, n: u32) {
    let mut s = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let body = format!(
        "{{\"model\":\"m\",\"stream\":true,\"max_tokens\":{n},\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
    );
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert!(String::from_utf8_lossy(&out).contains("[DONE]"));
}

#[tokio::test]
async fn the_sim_with_a_gpu_serves_the_same_gauges_and_the_meter_reads_them() {
    let cfg = brownout_sim::SimConfig {
        gpu: Some(brownout_sim::SimGpu::from_spec("h100-80gb").unwrap()),
        ..Default::default()
    };
    let sim = brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let metrics = format!("{}/metrics", sim.url());
    let spec = EnergySpec {
        gpu: Some("h100-80gb".into()),
        ..EnergySpec::default()
    };
    let m = EnergyMeter::start(&spec, Some(&metrics)).await.unwrap();
    let url = sim.url();
    tokio::join!(chat(&url, 40), chat(&url, 40), chat(&url, 40));
    let r = m.finish().await.unwrap();
    assert_eq!(r.source, PowerSource::GpuModel);
    // Some steps ran: above the H100 SXM's 70 W idle, at most its 700 W.
    assert!(r.mean_w > 70.0 && r.mean_w <= 700.0, "{r:?}");
    let text = brownout_drill::energy::scrape(&metrics).await.unwrap();
    for name in [
        "brownout_gpu_utilization",
        "brownout_gpu_power_watts",
        "brownout_gpu_energy_joules_total",
        "brownout_gpu_queue_depth",
    ] {
        assert!(
            text.iter()
                .any(|s| s.name == name && s.labels == [("rule".to_owned(), "sim".to_owned())]),
            "{name}"
        );
    }
    // Without a GPU model the sim has no /metrics, as before.
    let plain = brownout_sim::spawn("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let e = brownout_drill::energy::scrape(&format!("{}/metrics", plain.url()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
}
