//! The seccomp filter of sandboxed instances (issue 14): a function that calls ptrace,
//! keyctl, unshare, mount, bpf or io_uring_setup gets EPERM, while threads and child
//! processes still work; with the sandbox off the same calls reach the kernel.

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = "service: seccomp\nprovider:\n  runtime: python3.11\nfunctions:\n  probe:\n    handler: probe.handler\n    events:\n      - httpApi: GET /probe\n";

/// Makes each system call with harmless arguments and reports the error it got, or `ok`.
const PROBE_PY: &str = r#"
import ctypes, errno, json, platform, subprocess, threading

libc = ctypes.CDLL(None, use_errno=True)
NUMBERS = {
    "x86_64": {"ptrace": 101, "keyctl": 250, "unshare": 272, "mount": 165, "bpf": 321,
               "io_uring_setup": 425},
    "aarch64": {"ptrace": 117, "keyctl": 219, "unshare": 97, "mount": 40, "bpf": 280,
                "io_uring_setup": 425},
}[platform.machine()]

def call(name, *args):
    ctypes.set_errno(0)
    res = libc.syscall(NUMBERS[name], *[ctypes.c_long(a) for a in args])
    if res >= 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

CALLS = {
    "ptrace": (0, 0, 0, 0),     # PTRACE_TRACEME
    "keyctl": (0, -3, 0),       # the session keyring's id
    "unshare": (0x10000000,),   # a new user namespace
    "mount": (0, 0, 0, 0, 0),
    "bpf": (0, 0, 0),
    "io_uring_setup": (1, 0),
}

def handler(event, context):
    wanted = ((event.get("queryStringParameters") or {}).get("calls") or ",".join(CALLS)).split(",")
    out = {name: call(name, *CALLS[name]) for name in wanted}
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    out["thread"] = "ok"
    out["child"] = subprocess.run(["true"]).returncode
    print("probe:", json.dumps(out))
    return {"statusCode": 200, "body": json.dumps(out)}
"#;

#[tokio::test]
async fn sandboxed_functions_get_eperm_from_the_refused_system_calls() {
    let app = TestApp::new(&[("serverless.yml", MANIFEST), ("probe.py", PROBE_PY)]);
    let server = TestServer::start(app.path(), &[]);
    let banner = server.stdout();
    if banner.contains("isolation: none") {
        println!("skipping: this machine runs functions without the sandbox:\n{banner}");
        return;
    }
    let res = server.get("/probe").await;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
    let probe = res.json();
    for call in [
        "ptrace",
        "keyctl",
        "unshare",
        "mount",
        "bpf",
        "io_uring_setup",
    ] {
        assert_eq!(probe[call], "EPERM", "{call}: {probe}");
    }
    // clone3 is refused with ENOSYS, so the C library falls back to clone: threads and
    // child processes work.
    assert_eq!(probe["thread"], "ok");
    assert_eq!(probe["child"], 0);
    // The attempt shows in the function's log (forwarded as the function writes it, so it
    // may trail the response a little).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.logs().contains("\"ptrace\": \"EPERM\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "the probe's line never reached the log:\n{}",
            server.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_the_sandbox_the_same_calls_reach_the_kernel() {
    let app = TestApp::new(&[("serverless.yml", MANIFEST), ("probe.py", PROBE_PY)]);
    let server = TestServer::start_with_env(app.path(), &[], &[("NIMBUS_SANDBOX", "off")]);
    // Only harmless calls: unsandboxed, PTRACE_TRACEME would make nimbus the tracer.
    let res = server.get("/probe?calls=keyctl").await;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
    let probe = res.json();
    // Reading the session keyring's id needs no privilege: only the filter refuses it.
    assert_eq!(probe["keyctl"], "ok", "{probe}");
    assert_eq!(probe["thread"], "ok");
}
