#!/usr/bin/env python3
"""Slow clients beside a healthy one: nimbus (examples/hello under `nimbus up`) vs the same
handler in a bare Node `http` server (bench/bare-node.js), measured in the same run.

For each server: 200 sequential GET /hello on fresh connections while quiet, then again
while N connections (half trickling a header line every 200 ms, half a body byte every
200 ms) are held open; latency p50/p99/max of each phase, how many slow connections the
server has closed by the end, and the server's resident memory before and during.

    cargo build --release -p nimbus && python3 bench/slowloris.py [N]

Only talks to 127.0.0.1. Knobs: NIMBUS (binary), N (default 500).
"""
import asyncio, os, re, signal, socket, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NIMBUS = os.environ.get("NIMBUS", os.path.join(ROOT, "target/release/nimbus"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 500


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def get(port):
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:80]
    return (time.perf_counter() - started) * 1000


async def slow(port, body, closed, connected):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if body:
        writer.write(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    else:
        writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    connected.append(1)
    try:
        while True:
            await asyncio.sleep(0.2)
            writer.write(b"a" if body else b"X-Slow: yes\r\n")
            await writer.drain()
            if reader.at_eof():
                break
    except (ConnectionError, OSError):
        pass
    closed.append(1)


def stats(ms):
    ms = sorted(ms)
    return f"p50 {ms[len(ms) // 2]:.2f} ms, p99 {ms[int(len(ms) * 0.99)]:.2f} ms, max {ms[-1]:.2f} ms"


async def measure(name, port, pid):
    quiet = [await get(port) for _ in range(200)]
    rss_before = rss_kib(pid)
    closed, connected = [], []
    tasks = [asyncio.create_task(slow(port, i % 2 == 1, closed, connected)) for i in range(N)]
    while len(connected) < N:
        await asyncio.sleep(0.05)
    loaded = [await get(port) for _ in range(200)]
    rss_during = rss_kib(pid)
    await asyncio.sleep(12)
    n_closed = len(closed)
    for task in tasks:
        task.cancel()
    print(f"{name}: quiet {stats(quiet)}; beside {N} slow connections {stats(loaded)}; "
          f"RSS {rss_before // 1024} -> {rss_during // 1024} MB; "
          f"slow connections closed by the server within 12 s after: {n_closed}/{N}")


async def main():
    port = free_port()
    nimbus = subprocess.Popen([NIMBUS, "up", os.path.join(ROOT, "examples/hello"), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in nimbus.stdout:
        if "listening on" in line:
            break
    await get(port)
    await measure("nimbus up (node function)", port, nimbus.pid)
    nimbus.send_signal(signal.SIGTERM)
    nimbus.wait()
    port = free_port()
    node = subprocess.Popen(["node", os.path.join(ROOT, "bench/bare-node.js"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            await get(port)
            break
        except (ConnectionError, OSError, AssertionError):
            await asyncio.sleep(0.05)
    await measure("bare Node http (same handler)", port, node.pid)
    node.send_signal(signal.SIGTERM)
    node.wait()


asyncio.run(main())
