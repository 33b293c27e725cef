//! Cluster mode (issue 17): several `nimbus up --cluster` nodes on one app share its queues
//! through a real nats-server with JetStream (Debian's `nats-server`; .ci/run installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{TestApp, TestServer};

/// A nats-server with JetStream (file storage in a temp dir) on a loopback port, killed
/// on drop.
pub(crate) struct NatsServer {
    child: Child,
    pub(crate) url: String,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one on a random port.
    pub(crate) fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (child, url) = spawn_nats(dir.path(), "-1");
        NatsServer { child, url, dir }
    }

    /// kill -9, keeping its store.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same store.
    fn restart(&mut self) {
        let port = self.url.rsplit(':').next().expect("a port").to_owned();
        let (child, url) = spawn_nats(self.dir.path(), &port);
        self.child = child;
        assert_eq!(url, self.url);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts nats-server with JetStream, its store in `dir`, on `port` (`-1`: a random one),
/// and returns it with its client URL.
#[expect(
    clippy::zombie_processes,
    reason = "the child is returned to a NatsServer, which kills and waits for it on drop"
)]
fn spawn_nats(dir: &Path, port: &str) -> (Child, String) {
    let binary = ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect(
            "nats-server is not installed: cluster mode's tests need it \
             (`apt-get install nats-server`; .ci/run installs it)",
        );
    let mut child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", port, "-sd"])
        .arg(dir.join("js"))
        .arg("--ports_file_dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nats-server");
    // It writes its client URL to nats-server_<pid>.ports once it listens.
    let ports = dir.join(format!("nats-server_{}.ports", child.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ports)
            && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = ports["nats"][0].as_str()
        {
            return (child, url.to_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nats-server did not start in 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Functions append what they saw to a file of the test's; a sandboxed function writes only
/// its own /tmp, so these run unsandboxed.
const UNSANDBOXED: &[(&str, &str)] = &[("NIMBUS_SANDBOX", "off")];

/// One node's copy of the app: the same service and stage (so the same queues), its own
/// state folder, and its own file of processed message bodies.
fn node_app(out: &Path) -> TestApp {
    let manifest = format!(
        r#"
service: shop
provider:
  runtime: nodejs20.x
  environment: {{ OUT: "{}" }}
queues:
  bulk: {{ visibilityTimeout: 10 }}
functions:
  work:
    handler: work.handler
    reservedConcurrency: 4
    events:
      - sqs: {{ arn: bulk, batchSize: 10 }}
"#,
        out.display()
    );
    let work_js = r#"
const fs = require('fs');
exports.handler = async (event) => {
  await new Promise((resolve) => setTimeout(resolve, 5));
  fs.appendFileSync(process.env.OUT, event.Records.map((r) => r.body + '\n').join(''));
};
"#;
    TestApp::new(&[("nimbus.yaml", &manifest), ("work.js", work_js)])
}

/// The control API's address and bearer header of the node serving `app_dir`.
fn control(app_dir: &Path) -> (SocketAddr, String) {
    let text = std::fs::read_to_string(app_dir.join(".nimbus/up.json")).expect("up.json");
    let record: serde_json::Value = serde_json::from_str(&text).expect("json");
    let admin = record["admin"]
        .as_str()
        .expect("admin")
        .parse()
        .expect("addr");
    (
        admin,
        format!("Bearer {}", record["token"].as_str().expect("token")),
    )
}

fn processed(outs: &[PathBuf]) -> Vec<Vec<String>> {
    outs.iter()
        .map(|out| {
            std::fs::read_to_string(out)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The issue's acceptance test, CI-sized: N messages (2,000; `NIMBUS_CLUSTER_MESSAGES`
/// scales it, e.g. to 10,000) sent through node A of three, consumed by all three, one node
/// killed -9 midway: none lost, and duplicates no more than the killed node can hold in
/// flight.
#[tokio::test]
async fn three_nodes_consume_one_queue_and_a_kill_9_loses_nothing() {
    let n: usize = std::env::var("NIMBUS_CLUSTER_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let nats = NatsServer::start();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let outs: Vec<PathBuf> = (0..3)
        .map(|i| out_dir.path().join(format!("node{i}.txt")))
        .collect();
    let apps: Vec<TestApp> = outs.iter().map(|out| node_app(out)).collect();
    let cluster = ["--cluster", nats.url.as_str()];
    let mut nodes: Vec<Option<TestServer>> = apps
        .iter()
        .map(|app| {
            Some(TestServer::start_with_env(
                app.path(),
                &cluster,
                UNSANDBOXED,
            ))
        })
        .collect();

    // Send through node A only, 8 at a time; only answered sends count as accepted.
    let (admin, auth) = control(apps[0].path());
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let (auth, accepted) = (auth.clone(), accepted.clone());
        senders.spawn(async move {
            for i in (sender..n).step_by(8) {
                let body = serde_json::json!({ "body": format!("m{i}") }).to_string();
                let res = crate::harness::request(
                    admin,
                    "POST",
                    "/v1/queues/bulk/messages",
                    &[("authorization", &auth)],
                    body.into_bytes(),
                )
                .await;
                assert_eq!(res.status, 200, "send m{i}: {}", res.text());
                accepted.lock().expect("lock").insert(i);
            }
        });
    }

    // kill -9 node B once a third has been processed.
    let started = Instant::now();
    loop {
        let total: usize = processed(&outs).iter().map(Vec::len).sum();
        if total >= n / 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {total} of {n} processed in 120 s; node A's log:\n{}",
            nodes[0].as_ref().map(TestServer::logs).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = nodes[1].take().expect("node B");
    crate::harness::signal(killed.pid(), libc::SIGKILL);
    drop(killed);
    let killed_at = processed(&outs)[1].len();
    while let Some(res) = senders.join_next().await {
        res.expect("a sender failed");
    }
    assert_eq!(accepted.lock().expect("lock").len(), n);

    // Everything is processed by the nodes left; what node B held in flight comes back
    // after the visibility timeout (10 s: long enough that a cold start on a loaded
    // machine does not make a batch visible again while it is being processed).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let seen = processed(&outs);
        let unique: BTreeSet<&str> = seen.iter().flatten().map(String::as_str).collect();
        if unique.len() == n {
            let total: usize = seen.iter().map(Vec::len).sum();
            let per_node: Vec<usize> = seen.iter().map(Vec::len).collect();
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for body in seen.iter().flatten() {
                *counts.entry(body.as_str()).or_default() += 1;
            }
            let duplicates = total - n;
            eprintln!(
                "cluster test: {n} messages over 3 nodes {per_node:?} (node B killed -9 after {killed_at}), {duplicates} duplicates, {:.1} s",
                started.elapsed().as_secs_f64()
            );
            for i in 0..n {
                assert!(unique.contains(format!("m{i}").as_str()), "m{i} lost");
            }
            assert!(
                per_node.iter().all(|&count| count > 0),
                "every node consumed: {per_node:?}"
            );
            // Node B runs 4 consumers (reservedConcurrency) of batches of 10: at most 40
            // messages were in flight there when it died, each redelivered once.
            assert!(
                duplicates <= 40,
                "{duplicates} duplicates, more than node B could hold in flight: {:?}",
                counts.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} processed; node A's log:\n{}",
            unique.len(),
            nodes[0].as_ref().map(TestServer::logs).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn nats_unreachable_at_start_is_one_error_naming_the_url() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let app = node_app(&out_dir.path().join("out.txt"));
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = app.nimbus(&["up", ".", "--port", "0", "--cluster", &url]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!("cannot reach NATS at {url}")),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("listening"), "{}", out.stdout);
    let bad = app.nimbus(&["up", ".", "--port", "0", "--cluster", "http://["]);
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("is not a NATS URL"), "{}", bad.stderr);
}

/// NATS killed mid-run: HTTP functions keep answering, queue sends answer 503 with
/// Retry-After and are not accepted; NATS restarted on its store: the node reconnects, and
/// every message accepted before and after is processed.
#[tokio::test]
async fn nats_lost_mid_run_answers_503_and_a_restart_loses_nothing() {
    let mut nats = NatsServer::start();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("out.txt");
    let manifest = format!(
        r#"
service: shop
provider:
  runtime: nodejs20.x
  environment: {{ OUT: "{}" }}
queues:
  bulk: {{ visibilityTimeout: 5 }}
functions:
  work:
    handler: work.handler
    events:
      - sqs: {{ arn: bulk, batchSize: 10 }}
  hello:
    handler: hello.handler
    events:
      - httpApi: GET /hello
"#,
        out.display()
    );
    let work_js = r#"
const fs = require('fs');
exports.handler = async (event) => {
  fs.appendFileSync(process.env.OUT, event.Records.map((r) => r.body + '\n').join(''));
};
"#;
    let hello_js = "exports.handler = async () => ({ statusCode: 200, body: 'hello' });";
    let app = TestApp::new(&[
        ("nimbus.yaml", &manifest),
        ("work.js", work_js),
        ("hello.js", hello_js),
    ]);
    let node = TestServer::start_with_env(app.path(), &["--cluster", &nats.url], UNSANDBOXED);
    let (admin, auth) = control(app.path());
    let send = |body: String| {
        let auth = auth.clone();
        async move {
            let body = serde_json::json!({ "body": body }).to_string();
            crate::harness::request(
                admin,
                "POST",
                "/v1/queues/bulk/messages",
                &[("authorization", &auth)],
                body.into_bytes(),
            )
            .await
        }
    };
    for i in 0..20 {
        let res = send(format!("before{i}")).await;
        assert_eq!(res.status, 200, "{}", res.text());
    }

    nats.kill();
    assert_eq!(node.get("/hello").await.status, 200, "HTTP keeps answering");
    let started = Instant::now();
    let refused = send("during".to_owned()).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.text().contains("unavailable"), "{}", refused.text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a send while NATS is down fails soon, not after {:?}",
        started.elapsed()
    );

    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    while i < 20 {
        let res = send(format!("after{i}")).await;
        if res.status == 200 {
            i += 1;
            continue;
        }
        assert_eq!(res.status, 503, "{}", res.text());
        assert!(
            Instant::now() < deadline,
            "the node did not reconnect to NATS in 30 s:\n{}",
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let seen: BTreeSet<&str> = text.lines().collect();
        let missing: Vec<String> = (0..20)
            .flat_map(|i| [format!("before{i}"), format!("after{i}")])
            .filter(|body| !seen.contains(body.as_str()))
            .collect();
        if missing.is_empty() {
            assert!(!seen.contains("during"), "a refused send was not accepted");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not processed after NATS came back: {missing:?}\n{}",
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The issue's schedule acceptance: a per-second schedule (`rate(1 second)`, nimbus's
/// extension below EventBridge's minute) on three nodes fires each slot exactly once over
/// 30 slots. Every node fires every slot; JetStream takes the first of the three sends
/// under the slot's key, so one node's function is invoked per slot.
#[tokio::test]
async fn a_per_second_schedule_on_three_nodes_fires_each_slot_once() {
    const N_SLOTS: usize = 30;
    let nats = NatsServer::start();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let outs: Vec<PathBuf> = (0..3)
        .map(|i| out_dir.path().join(format!("node{i}.txt")))
        .collect();
    let apps: Vec<TestApp> = outs
        .iter()
        .map(|out| {
            let manifest = format!(
                r#"
service: clock
provider:
  runtime: nodejs20.x
  environment: {{ OUT: "{}" }}
functions:
  tick:
    handler: tick.handler
    events:
      - schedule: rate(1 second)
"#,
                out.display()
            );
            let tick_js = r#"
const fs = require('fs');
exports.handler = async (event) => { fs.appendFileSync(process.env.OUT, event.time + '\n'); };
"#;
            TestApp::new(&[("nimbus.yaml", &manifest), ("tick.js", tick_js)])
        })
        .collect();
    let cluster = ["--cluster", nats.url.as_str()];
    let nodes: Vec<TestServer> = apps
        .iter()
        .map(|app| TestServer::start_with_env(app.path(), &cluster, UNSANDBOXED))
        .collect();
    // The manifest's warning: AWS would not take this schedule.
    let warned = nodes[0].logs().contains("shortest rate is 1 minute")
        || nodes[0].stdout().contains("shortest rate is 1 minute");
    assert!(warned, "{}{}", nodes[0].stdout(), nodes[0].logs());

    // Slots are whole seconds (rate slots count from the Unix epoch); the ones that count
    // start once all three nodes serve, plus a second.
    let first = unix_secs() + 2;
    let last = first + N_SLOTS as u64 - 1;
    let deadline = Instant::now() + Duration::from_secs(N_SLOTS as u64 + 60);
    loop {
        let fired: BTreeMap<u64, Vec<usize>> = fired_slots(&outs);
        let slots: BTreeMap<u64, &Vec<usize>> = fired
            .iter()
            .filter(|(s, _)| (first..=last).contains(*s))
            .map(|(s, n)| (*s, n))
            .collect();
        if slots.len() == N_SLOTS {
            let twice: Vec<_> = fired.iter().filter(|(_, by)| by.len() > 1).collect();
            assert!(
                twice.is_empty(),
                "slots fired more than once (slot: nodes): {twice:?}"
            );
            let mut per_node = [0usize; 3];
            for node_idx in slots.values().flat_map(|by| by.iter()) {
                per_node[*node_idx] += 1;
            }
            eprintln!("schedule: {N_SLOTS} slots fired once each, by node {per_node:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {} s, slots {first}..={last} fired: {slots:?}; node A's log:\n{}",
            N_SLOTS + 60,
            nodes[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(nodes);
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Which node's function was invoked for each slot (Unix seconds, read from the scheduled
/// event's `time`, `2026-12-08T01:02:03Z`).
fn fired_slots(outs: &[PathBuf]) -> BTreeMap<u64, Vec<usize>> {
    let mut fired: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (node_idx, lines) in processed(outs).iter().enumerate() {
        for line in lines {
            let secs = parse_utc(line).unwrap_or_else(|| panic!("not an event time: {line:?}"));
            fired.entry(secs).or_default().push(node_idx);
        }
    }
    fired
}

/// `YYYY-MM-DDTHH:MM:SSZ` as Unix seconds.
fn parse_utc(text: &str) -> Option<u64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (time.next()??, time.next()??, time.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Three nats-servers in one NATS cluster (JetStream on each, file storage), on loopback
/// ports; each killed on drop.
struct NatsCluster {
    servers: Vec<Option<Child>>,
    /// Client URLs, in server order.
    urls: Vec<String>,
    /// Monitoring addresses (`/healthz`, `/connz`, `/jsz`), in server order.
    monitors: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    async fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("a temp dir");
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let monitors: Vec<SocketAddr> = (0..3)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        let binary = ["nats-server", "/usr/sbin/nats-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("nats-server is not installed (`apt-get install nats-server`)");
        let mut servers = Vec::new();
        let mut urls = Vec::new();
        for idx in 0..3 {
            let server_dir = dir.path().join(format!("n{idx}"));
            std::fs::create_dir_all(&server_dir).expect("a server dir");
            let routes: Vec<String> = (0..3)
                .filter(|other| *other != idx)
                .map(|other| format!("nats://127.0.0.1:{}", route_ports[other]))
                .collect();
            let child = Command::new(binary)
                .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-n"])
                .arg(format!("n{idx}"))
                .arg("-sd")
                .arg(server_dir.join("js"))
                .arg("--ports_file_dir")
                .arg(&server_dir)
                .args(["--cluster_name", "nimbus-test", "--cluster"])
                .arg(format!("nats://127.0.0.1:{}", route_ports[idx]))
                .arg("--routes")
                .arg(routes.join(","))
                .arg("-m")
                .arg(monitors[idx].port().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting nats-server");
            let ports = server_dir.join(format!("nats-server_{}.ports", child.id()));
            servers.push(Some(child));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(text) = std::fs::read_to_string(&ports)
                    && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
                    && let Some(url) = ports["nats"][0].as_str()
                {
                    urls.push(url.to_owned());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "nats-server n{idx} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let cluster = NatsCluster {
            servers,
            urls,
            monitors,
            _dir: dir,
        };
        // JetStream answers once the servers have elected a meta leader.
        let deadline = Instant::now() + Duration::from_secs(30);
        for idx in 0..3 {
            while cluster
                .monitor(idx, "/healthz")
                .await
                .map(|(status, _)| status)
                != Some(200)
            {
                assert!(
                    Instant::now() < deadline,
                    "the NATS cluster's JetStream is not healthy after 30 s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        cluster
    }

    /// A GET of server `idx`'s monitoring endpoint: status and JSON, `None` while it does
    /// not listen.
    async fn monitor(&self, idx: usize, path: &str) -> Option<(u16, serde_json::Value)> {
        tokio::net::TcpStream::connect(self.monitors[idx])
            .await
            .ok()?;
        let res = crate::harness::request(self.monitors[idx], "GET", path, &[], Vec::new()).await;
        Some((
            res.status,
            serde_json::from_str(&res.text()).unwrap_or_default(),
        ))
    }

    fn kill(&mut self, idx: usize) {
        if let Some(mut child) = self.servers[idx].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for idx in 0..self.servers.len() {
            self.kill(idx);
        }
    }
}

/// The issue's NATS-loss test on a 3-server NATS cluster: nimbus keeps each stream in 3
/// copies, so killing (-9) the server most nimbus connections use, mid-run, loses no
/// accepted message; the nodes move to the servers left.
#[tokio::test]
async fn killing_one_nats_server_of_three_loses_no_accepted_message() {
    const N: usize = 600;
    let mut nats = NatsCluster::start().await;
    let url = nats.urls.join(",");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let outs: Vec<PathBuf> = (0..2)
        .map(|i| out_dir.path().join(format!("node{i}.txt")))
        .collect();
    let apps: Vec<TestApp> = outs.iter().map(|out| node_app(out)).collect();
    let nodes: Vec<TestServer> = apps
        .iter()
        .map(|app| TestServer::start_with_env(app.path(), &["--cluster", &url], UNSANDBOXED))
        .collect();

    // Senders through both nodes; a send refused while NATS moves (503) is retried, and
    // only answered sends count as accepted.
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..4 {
        let (admin, auth) = control(apps[sender % 2].path());
        let accepted = accepted.clone();
        senders.spawn(async move {
            for i in (sender..N).step_by(4) {
                let body = serde_json::json!({ "body": format!("m{i}") }).to_string();
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let res = crate::harness::request(
                        admin,
                        "POST",
                        "/v1/queues/bulk/messages",
                        &[("authorization", &auth)],
                        body.clone().into_bytes(),
                    )
                    .await;
                    if res.status == 200 {
                        accepted.lock().expect("lock").insert(i);
                        break;
                    }
                    assert_eq!(res.status, 503, "send m{i}: {}", res.text());
                    assert!(
                        Instant::now() < deadline,
                        "m{i} refused for 60 s: {}",
                        res.text()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }

    // The queue's stream has 3 copies.
    let jsz = nats
        .monitor(0, "/jsz?accounts=true&streams=true&config=true")
        .await
        .expect("n0 answers")
        .1;
    let replicas: Vec<u64> = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
        .filter(|stream| {
            stream["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-q-bulk"))
        })
        .filter_map(|stream| stream["config"]["num_replicas"].as_u64())
        .collect();
    assert_eq!(replicas, [3], "{jsz}");

    // Once a third is processed, kill -9 the server with the most client connections.
    let started = Instant::now();
    while processed(&outs).iter().map(Vec::len).sum::<usize>() < N / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {:?} processed in 120 s; node A's log:\n{}",
            processed(&outs).iter().map(Vec::len).collect::<Vec<_>>(),
            nodes[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut busiest = (0, 0);
    for idx in 0..3 {
        let connz = nats.monitor(idx, "/connz").await.expect("answers").1;
        let n_connections = connz["num_connections"].as_u64().unwrap_or(0);
        if n_connections > busiest.1 {
            busiest = (idx, n_connections);
        }
    }
    nats.kill(busiest.0);
    let killed_at = processed(&outs).iter().map(Vec::len).sum::<usize>();
    while let Some(res) = senders.join_next().await {
        res.expect("a sender failed");
    }
    assert_eq!(accepted.lock().expect("lock").len(), N);

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = processed(&outs);
        let unique: BTreeSet<&str> = seen.iter().flatten().map(String::as_str).collect();
        if unique.len() == N {
            let total: usize = seen.iter().map(Vec::len).sum();
            eprintln!(
                "NATS loss: {N} messages, NATS server n{} ({} connections) killed -9 after {killed_at}, {} duplicates, {:.1} s",
                busiest.0,
                busiest.1,
                total - N,
                started.elapsed().as_secs_f64()
            );
            break;
        }
        let missing: Vec<usize> = (0..N)
            .filter(|i| !unique.contains(format!("m{i}").as_str()))
            .collect();
        assert!(
            Instant::now() < deadline,
            "{} accepted messages not processed after a NATS server's loss: {:?}; node A's log:\n{}",
            missing.len(),
            &missing[..missing.len().min(20)],
            nodes[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
