#!/usr/bin/env python3
"""e2e_helper.py: the HTTP side of docker/e2e.sh and docker/swarm-e2e.sh (registry polling,
parallel /sum, bounded request loops), in the standard library only.

Usage: e2e_helper.py COMMAND ARGS... (see COMMANDS at the end). HTTP goes only to the addresses
the scripts give: the 127.0.0.1 ports their own master publishes.
"""
import json, os, random, socket, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor


def get(url, json_accept=True, timeout=5.0):
    headers = {"Accept": "application/json"} if json_accept else {}
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def nodes(reg, service="calc"):
    """The registered nodes of one service (the scaled `node` containers serve `calc`)."""
    status, body = get(reg + "/v1/nodes?service=" + service, timeout=2.0)
    if status != 200:
        raise RuntimeError(f"GET /v1/nodes: HTTP {status}")
    return json.loads(body)["nodes"]


def show(ns):
    return ", ".join(f"{n.get('addr')}({n.get('state')})" for n in ns) or "none"


def ip_of(node):
    return str(node.get("addr", "")).rsplit(":", 1)[0]


def wait_for(reg, cond, timeout, since, what):
    """Poll the registry until cond(nodes) holds; deadline and elapsed count from `since`."""
    deadline = since + timeout
    last, err = [], None
    while True:
        try:
            last, err = nodes(reg), None
            if cond(last):
                print(f"    {what}: after {time.time() - since:.1f}s (bound {timeout:g}s): {show(last)}")
                return 0
        except Exception as e:  # master restarting, connection refused, ...
            err = e
        if time.time() >= deadline:
            print(f"    {what}: NOT within {timeout:g}s; last list: {show(last)}" + (f"; last error: {err}" if err else ""))
            return 1
        time.sleep(0.1)


def check_sum(gw, timeout=10.0):
    """One /sum call with known values, JSON. Returns (node id, addr) or raises."""
    values = [random.randint(0, 1000) for _ in range(random.randint(1, 5))]
    url = gw + "/sum?values=" + ",".join(map(str, values))
    status, body = get(url, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:200]}")
    doc = json.loads(body)
    if int(doc["result"]) != sum(values):
        raise RuntimeError(f"{values}: got {doc['result']}, want {sum(values)}")
    node = doc.get("node") or {}
    return str(node.get("id")), str(node.get("addr"))


def cmd_two_services(reg, gw, count):
    """Both services listed with their counts; /upper answered by `text` nodes only and /sum by
    `calc` nodes only, every request of `count` each."""
    count = int(count)
    status, body = get(reg + "/v1/services")
    services = {s["name"]: s["nodes"] for s in json.loads(body)["services"]}
    print(f"    /v1/services: {services}")
    if services.get("text", 0) < 1 or services.get("calc", 0) < 1:
        print("    both services must be listed")
        return 1
    text_ids = {n["id"] for n in nodes(reg, "text")}
    calc_ids = {n["id"] for n in nodes(reg, "calc")}
    bad = 0
    for i in range(count):
        word = f"word{i}"
        status, body = get(f"{gw}/upper?text={word}", json_accept=False)
        node = body.split("Response from node ", 1)[-1].split(" ", 1)[0]
        if status != 200 or word.upper() not in body or not any(node.startswith(t) for t in text_ids):
            bad += 1
            print(f"    /upper {i}: HTTP {status}: {body.strip()[:200]}")
        node_id, _ = check_sum(gw)
        if node_id not in calc_ids:
            bad += 1
            print(f"    /sum {i}: answered by {node_id}, not a calc node {sorted(calc_ids)}")
    print(f"    {count} /upper and {count} /sum: {bad} wrong; text {sorted(text_ids)}, calc {len(calc_ids)} nodes")
    return 1 if bad else 0


def cmd_free_ports(count):
    socks = [socket.socket() for _ in range(int(count))]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def cmd_wait_health(reg, timeout):
    deadline = time.time() + float(timeout)
    while time.time() < deadline:
        try:
            if get(reg + "/health", json_accept=False, timeout=1.0)[0] == 200:
                return 0
        except Exception:
            pass
        time.sleep(0.1)
    print(f"    {reg}/health did not answer 200 within {timeout}s")
    return 1


def cmd_wait_count(reg, n, timeout, since):
    n = int(n)
    return wait_for(reg, lambda ns: len(ns) == n and all(x.get("state") == "up" for x in ns),
                    float(timeout), float(since), f"{n} node(s) listed, all up")


def cmd_wait_gone(reg, ip, timeout, since):
    return wait_for(reg, lambda ns: all(ip_of(x) != ip for x in ns),
                    float(timeout), float(since), f"node {ip} evicted")


def cmd_wait_present(reg, ip, timeout, since):
    return wait_for(reg, lambda ns: any(ip_of(x) == ip and x.get("state") == "up" for x in ns),
                    float(timeout), float(since), f"node {ip} listed")


def served_total(reg):
    return sum(int(n.get("served") or 0) for n in nodes(reg))


def cmd_served(reg):
    """The calls the listed nodes have served in all (from their heartbeats)."""
    print(served_total(reg))


def cmd_wait_served(reg, baseline, delta, timeout):
    """Waits until the listed nodes have served `delta` calls more than `baseline`: someone calls."""
    deadline = time.time() + float(timeout)
    want = int(baseline) + int(delta)
    last = None
    while time.time() < deadline:
        try:
            last = served_total(reg)
            if last >= want:
                print(f"    nodes have served {last - int(baseline)} call(s) since the start")
                return 0
        except Exception:
            pass
        time.sleep(0.2)
    print(f"    nodes did not serve {delta} call(s) within {timeout}s (served total {last}, baseline {baseline})")
    return 1


def cmd_sum_parallel(gw, count):
    count = int(count)
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(check_sum, gw) for _ in range(count)]
    ok, errors, served = 0, [], {}
    for f in futures:
        try:
            node = f.result()
            ok += 1
            served[node] = served.get(node, 0) + 1
        except Exception as e:
            errors.append(repr(e))
    print(f"    {ok}/{count} correct; served by {len(served)} node(s): "
          + ", ".join(f"{i} ({a}) x{c}" for (i, a), c in sorted(served.items())))
    for e in errors[:5]:
        print(f"    error: {e}")
    # The plain-text form as well, with the contract's example.
    status, body = get(gw + "/sum?values=2,4,6", json_accept=False)
    text_ok = status == 200 and "12" in body
    print(f"    text: /sum?values=2,4,6 -> HTTP {status} {body.strip()[:120]!r}")
    if errors or not text_ok:
        return 1
    if len(served) < 2:
        print("    fewer than 2 distinct nodes served")
        return 1
    return 0


def cmd_palindrom(gw, n, expected):
    t0 = time.time()
    status, body = get(f"{gw}/palindrom?n={n}", timeout=120.0)
    if status != 200:
        print(f"    HTTP {status}: {body[:200]}")
        return 1
    doc = json.loads(body)
    print(f"    n={n}: count {doc.get('count')} in {time.time() - t0:.2f}s over "
          f"{len(doc.get('nodes') or [])} node(s) (want {expected})")
    return 0 if int(doc.get("count")) == int(expected) else 1


def cmd_load(gw, stop_file, max_requests, max_seconds, workers):
    """Bounded request loop: ends at the stop file, max_requests or max_seconds, first of the three."""
    max_requests, max_seconds, workers = int(max_requests), float(max_seconds), int(workers)
    deadline = time.time() + max_seconds
    lock = threading.Lock()
    st = {"sent": 0, "ok": 0, "failed": 0, "errors": [], "served": {}, "slowest_s": 0.0}

    def worker():
        while time.time() < deadline and not os.path.exists(stop_file):
            with lock:
                if st["sent"] >= max_requests:
                    return
                st["sent"] += 1
            t0 = time.time()
            try:
                node = check_sum(gw, timeout=10.0)
                with lock:
                    st["ok"] += 1
                    key = f"{node[0]} ({node[1]})"
                    st["served"][key] = st["served"].get(key, 0) + 1
            except Exception as e:
                with lock:
                    st["failed"] += 1
                    if len(st["errors"]) < 10:
                        st["errors"].append(f"{time.strftime('%H:%M:%S')} {e!r}")
            with lock:
                st["slowest_s"] = max(st["slowest_s"], time.time() - t0)
            time.sleep(0.02)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(st))


def cmd_load_report(path, strict):
    with open(path) as f:
        st = json.load(f)
    print(f"    requests during the step: {st['ok']} ok, {st['failed']} failed "
          f"(slowest {st['slowest_s']:.2f}s); served by: "
          + ", ".join(f"{k} x{v}" for k, v in sorted(st["served"].items())))
    for e in st["errors"]:
        print(f"    failed request: {e}")
    if strict == "strict" and (st["failed"] > 0 or st["ok"] == 0):
        return 1
    return 0


COMMANDS = {
    "free-ports": cmd_free_ports, "wait-health": cmd_wait_health,
    "served": cmd_served, "wait-served": cmd_wait_served,
    "wait-count": cmd_wait_count, "wait-gone": cmd_wait_gone, "wait-present": cmd_wait_present,
    "sum-parallel": cmd_sum_parallel, "palindrom": cmd_palindrom, "load": cmd_load,
    "load-report": cmd_load_report, "two-services": cmd_two_services,
}

if __name__ == "__main__":
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]) or 0)
