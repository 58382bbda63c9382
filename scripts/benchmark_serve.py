"""Benchmark ``tfxai serve``: latency of the first answers and requests per second under load,
against the bare model in the same process.

In one process: load the model, warm the engine up, start the server on a free loopback port, then

1. the first answer after start-up: ``POST /api/predict`` (prediction + Grad-CAM overlay on the
   original image, as the page asks for it) for one X-ray of each size in ``--first-images``,
   then the median of ``--repeats`` more;
2. the bare rate of the model in this process on the same images, already decoded and resized:
   ``Classifier.predict_proba`` and ``model.predict`` in batches of ``--batch-size``, and the
   engine's whole batch step (probabilities + OOD guard + Grad-CAM) without HTTP;
3. ``/api/predict`` with N concurrent clients for each N in ``--clients`` (the clients run in a
   second process, so they do not take the server's interpreter lock; on a 2-core machine they
   share its CPU), with and without the overlay; and ``/api/predict/batch`` the way the page
   sends a folder (chunks of 16, 160 px overlays);
4. the comparison of explanation methods (``/api/explain``, all four methods, ``--lime-samples``)
   on the last of ``--first-images``, twice: the first run includes building the methods' graphs.

Prints a Markdown table (and writes ``--output`` JSON when given). Example:
``python scripts/benchmark_serve.py --checkpoint runs/mnv2/best_model.keras --images chest_xray_224/train/PNEUMONIA
--first-images xray_1000px.jpeg``

``--soak SECONDS`` measures something else: ``tfxai serve`` started as its own process, then for
SECONDS ``--soak-clients`` threads keep uploading (``/api/predict`` with the Grad-CAM overlay, every
tenth request a ``/api/predict/batch`` of 16) while ``--soak-explainers`` threads keep asking for
the comparison of all four explanation methods (Grad-CAM, Grad-CAM++, Faster Score-CAM, LIME) and
wait for each; the server's resident memory (VmRSS, Linux) is read every ``--soak-every`` seconds.
Prints the memory-over-time table.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="the model to serve (.keras)")
    p.add_argument("--images", required=True, help="a folder of X-rays (or one file) sent by the clients")
    p.add_argument("--first-images", default="",
                   help="comma-separated X-rays for the first-answer latency (default: the first of --images)")
    p.add_argument("--max-images", type=int, default=100, help="images taken from --images (default 100)")
    p.add_argument("--clients", default="1,4,8,16", help="numbers of concurrent clients (default 1,4,8,16)")
    p.add_argument("--requests", type=int, default=96, help="requests per measurement (default 96)")
    p.add_argument("--batch-size", type=int, default=16, help="server batch size and bare batch size (default 16)")
    p.add_argument("--repeats", type=int, default=10, help="single requests for the warm latency (default 10)")
    p.add_argument("--lime-samples", type=int, default=1000, help="LIME perturbations (default 1000)")
    p.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the comparison of explanation methods (default on)")
    p.add_argument("--output", help="also write the numbers to this JSON file")
    soak = p.add_argument_group("--soak: memory over time under mixed load (see above)")
    soak.add_argument("--soak", type=float, default=0, metavar="SECONDS", help="run the soak for this long instead")
    soak.add_argument("--soak-clients", type=int, default=4, help="concurrent upload clients (default 4)")
    soak.add_argument("--soak-explainers", type=int, default=2,
                      help="clients asking for explanation jobs, each waiting for its job (default 2)")
    soak.add_argument("--soak-every", type=float, default=60, help="seconds between memory readings (default 60)")
    return p


# ----------------------------------------------------------------------------- clients (second process)
def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _post(conn: http.client.HTTPConnection, path: str, name: str, data: bytes) -> tuple[int, bytes]:
    body, content_type = _multipart(name, data)
    conn.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    return response.status, response.read()


def run_clients(port: int, path: str, payloads: list[tuple[str, bytes]], clients: int, total: int) -> dict:
    """``clients`` threads, each with its own keep-alive connection, send ``total`` requests in all;
    returns wall seconds, per-request latencies and the status codes seen."""
    lock = threading.Lock()
    counter, latencies, statuses = [0], [], {}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                i = counter[0]
                if i >= total:
                    break
                counter[0] += 1
            name, data = payloads[i % len(payloads)]
            t = time.perf_counter()
            status, _ = _post(conn, path, name, data)
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - start, "latencies": latencies, "statuses": statuses}


# ----------------------------------------------------------------------------- soak
EXPLAIN_METHODS = "gradcam,gradcam++,faster-scorecam,lime"


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS from /proc, Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class SoakLoad:
    """Upload and explanation clients against ``port`` until ``stop`` is set, with counters."""

    def __init__(self, port: int, payloads: list[tuple[str, bytes]]):
        self.port, self.payloads = port, payloads
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"uploads": 0, "jobs_done": 0, "jobs_refused": 0, "errors": 0}
        self.statuses: dict[int, int] = {}

    def _count(self, key: str, status: int | None = None) -> None:
        with self.lock:
            self.counts[key] += 1
            if status is not None:
                self.statuses[status] = self.statuses.get(status, 0) + 1

    def uploader(self, seed: int) -> None:
        import httpx

        i = seed
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=300) as client:
            while not self.stop.is_set():
                i += 1
                if i % 10 == 0:
                    chunk = [self.payloads[(i + k) % len(self.payloads)] for k in range(16)]
                    r = client.post("/api/predict/batch?overlay_size=160", files=[("file", p) for p in chunk])
                    n = len(chunk)
                else:
                    r = client.post("/api/predict", files={"file": self.payloads[i % len(self.payloads)]})
                    n = 1
                with self.lock:
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                    self.counts["uploads" if r.status_code == 200 else "errors"] += n

    def explainer(self, seed: int) -> None:
        import httpx

        i = seed
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=300) as client:
            while not self.stop.is_set():
                i += 7
                r = client.post(f"/api/explain?methods={EXPLAIN_METHODS}",
                                files={"file": self.payloads[i % len(self.payloads)]})
                if r.status_code == 429:
                    self._count("jobs_refused", 429)
                    self.stop.wait(1.0)
                    continue
                if r.status_code != 202:
                    self._count("errors", r.status_code)
                    continue
                job = r.json()
                while job["status"] not in ("done", "error") and not self.stop.is_set():
                    self.stop.wait(0.5)
                    job = client.get(f"/api/explain/{job['id']}").json()
                if job["status"] == "done":
                    self._count("jobs_done", 200)
                elif job["status"] == "error":
                    self._count("errors", 500)


def soak(args) -> int:
    """``tfxai serve`` as its own process under mixed load for ``args.soak`` seconds; its memory
    over time as a Markdown table."""
    import socket
    import subprocess

    import httpx

    from tfxai.data.folders import list_images

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paths = list_images(args.images)[:args.max_images]
    payloads = [(os.path.basename(p), open(p, "rb").read()) for p in paths]
    server = subprocess.Popen([sys.executable, "-m", "tfxai", "serve", "--checkpoint", args.checkpoint,
                               "--port", str(port), "--batch-size", str(args.batch_size),
                               "--lime-samples", str(args.lime_samples)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() - t0 > 300:
            raise RuntimeError(f"tfxai serve did not start: {server.stderr.read()[-2000:]}")
        time.sleep(0.5)
    print(f"tfxai serve (pid {server.pid}) ready after {time.monotonic() - t0:.1f} s, "
          f"{rss_mb(server.pid):.0f} MB; soak for {args.soak:.0f} s with {args.soak_clients} upload and "
          f"{args.soak_explainers} explanation client(s), {len(payloads)} X-rays", flush=True)
    load = SoakLoad(port, payloads)
    threads = ([threading.Thread(target=load.uploader, args=(k,)) for k in range(args.soak_clients)]
               + [threading.Thread(target=load.explainer, args=(k,)) for k in range(args.soak_explainers)])
    rows = []
    start = time.monotonic()
    for t in threads:
        t.start()
    try:
        while True:
            with load.lock:
                row = {"seconds": time.monotonic() - start, "rss_mb": rss_mb(server.pid), **load.counts}
            rows.append(row)
            print(f"{row['seconds']:6.0f} s  RSS {row['rss_mb']:7.1f} MB  uploads {row['uploads']}  explanation jobs "
                  f"{row['jobs_done']} (refused {row['jobs_refused']})  errors {row['errors']}", flush=True)
            if row["seconds"] >= args.soak or server.poll() is not None:
                break
            time.sleep(min(args.soak_every, max(0.0, args.soak - row["seconds"])))
    finally:
        load.stop.set()
        for t in threads:
            t.join(600)
        server.send_signal(2)  # Ctrl-C: a normal stop
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"\nstatuses seen: {dict(sorted(load.statuses.items()))}")
    print("\n| minutes | server RSS (MB) | images answered | explanation jobs done (4 methods each) | errors |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seconds'] / 60:.1f} | {r['rss_mb']:.0f} | {r['uploads']} | {r['jobs_done']} | {r['errors']} |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"checkpoint": args.checkpoint, "rows": rows, "statuses": load.statuses}, f, indent=1)
    return 0 if server.returncode in (0, -2, 130) and not load.counts["errors"] else 1


# ----------------------------------------------------------------------------- server side
def _rate(fn, x, repeats: int = 3) -> float:
    fn(x[:2])
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.soak:
        return soak(args)
    import numpy as np

    from tfxai.classifier import load_classifier
    from tfxai.data.folders import list_images
    from served import served
    from tfxai.serve.app import create_app
    from tfxai.serve.engine import Engine, ServeSettings

    t0 = time.perf_counter()
    clf = load_classifier(args.checkpoint)
    loaded = time.perf_counter() - t0
    engine = Engine(clf, ServeSettings(max_batch=args.batch_size, lime_samples=args.lime_samples)).start()
    warm = engine.warm_up()
    server = contextlib.ExitStack()  # closed when the measurements are done
    url = server.enter_context(served(create_app(engine)))
    port = int(url.rsplit(":", 1)[1])
    startup = time.perf_counter() - t0
    print(f"model {args.checkpoint}: {clf.image_size} px, {clf.channels} channel(s); loaded in {loaded:.1f} s, "
          f"warm-up {warm:.1f} s, serving on {url} after {startup:.1f} s", flush=True)

    paths = list_images(args.images)[:args.max_images]
    payloads = [(os.path.basename(p), open(p, "rb").read()) for p in paths]
    firsts = [p for p in args.first_images.split(",") if p] or paths[:1]
    out = {"checkpoint": args.checkpoint, "image_size": clf.image_size, "startup_seconds": startup,
           "images": len(paths), "cpus": os.cpu_count(), "first": [], "bare": {}, "load": [], "batch_endpoint": {}}

    # 1. first answers, then warm single-request latency
    import cv2

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for p in firsts:
        data = open(p, "rb").read()
        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).shape
        t = time.perf_counter()
        status, body = _post(conn, "/api/predict?original=true", os.path.basename(p), data)
        first = time.perf_counter() - t
        answer = json.loads(body)
        assert status == 200 and answer["overlay_png"], answer
        warm_times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            status, _ = _post(conn, "/api/predict?original=true", os.path.basename(p), data)
            warm_times.append(time.perf_counter() - t)
        row = {"file": os.path.basename(p), "width": w, "height": h, "first_seconds": first,
               "median_seconds": statistics.median(warm_times), "label": answer["label"]}
        out["first"].append(row)
        print(f"first answer for {row['file']} ({w}x{h}): {first:.3f} s; then median {row['median_seconds']:.3f} s "
              f"over {args.repeats}", flush=True)
    conn.close()

    # 2. the bare model on the same images, decoded and resized once
    uploads = [engine.prepare(d, n) for n, d in payloads]
    x = np.stack([u.x for u in uploads])
    b = args.batch_size
    out["bare"] = {
        "predict_proba": _rate(lambda v: clf.predict_proba(v, batch_size=b), x),
        "model.predict": _rate(lambda v: clf.model.predict(v.astype(np.float32), batch_size=b, verbose=0), x),
        "engine batch step (proba + OOD + Grad-CAM)": _rate(
            lambda v: [engine.run(uploads[i:i + b]) for i in range(0, len(v), b)], x),
    }
    for k, v in out["bare"].items():
        print(f"bare {k}: {v:.1f} img/s (batches of {b})", flush=True)

    # 3. load: concurrent clients in a second process
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(run_clients, port, "/api/health", payloads[:1], 1, 1).result()  # start the process
        for overlay in (True, False):
            path = "/api/predict" + ("" if overlay else "?overlay=false")
            for n in [int(c) for c in args.clients.split(",") if c]:
                calls = engine.batches
                res = pool.submit(run_clients, port, path, payloads, n, args.requests).result()
                calls = engine.batches - calls
                lat = sorted(res["latencies"])
                row = {"overlay": overlay, "clients": n, "requests": len(lat), "statuses": res["statuses"],
                       "requests_per_second": len(lat) / res["seconds"], "p50": statistics.median(lat),
                       "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))], "model_calls": calls,
                       "mean_batch": len(lat) / max(calls, 1)}
                out["load"].append(row)
                print(f"/api/predict overlay={overlay} clients={n}: {row['requests_per_second']:.1f} req/s, "
                      f"p50 {row['p50']:.3f} s, p95 {row['p95']:.3f} s, {calls} model calls "
                      f"(mean batch {row['mean_batch']:.1f}), statuses {res['statuses']}", flush=True)

    # 4. a folder the way the page sends it: chunks of 16 to /api/predict/batch, small overlays
    import httpx

    t = time.perf_counter()
    with httpx.Client(timeout=300) as client:
        for i in range(0, len(payloads), 16):
            r = client.post(url + "/api/predict/batch?overlay_size=160",
                            files=[("file", p) for p in payloads[i:i + 16]])
            assert r.status_code == 200
    dt = time.perf_counter() - t
    out["batch_endpoint"] = {"images": len(payloads), "seconds": dt, "images_per_second": len(payloads) / dt}
    print(f"/api/predict/batch, {len(payloads)} images in chunks of 16: {dt:.1f} s, "
          f"{len(payloads) / dt:.1f} img/s", flush=True)

    # 5. explanation methods side by side, twice
    out["explain"] = []
    if args.explain:
        name, data = os.path.basename(firsts[-1]), open(firsts[-1], "rb").read()
        with httpx.Client(timeout=600) as client:
            for attempt in (1, 2):
                t = time.perf_counter()
                job = client.post(url + "/api/explain", files={"file": (name, data)}).json()
                while job["status"] not in ("done", "error"):
                    time.sleep(0.2)
                    job = client.get(f"{url}/api/explain/{job['id']}").json()
                row = {"attempt": attempt, "seconds": time.perf_counter() - t, "error": job["error"],
                       "methods": {m: r["seconds"] for m, r in job["results"].items()}}
                out["explain"].append(row)
                print(f"/api/explain on {name}, run {attempt}: {row['seconds']:.1f} s; per method (incl. deletion/"
                      f"insertion): " + ", ".join(f"{m} {v:.1f} s" for m, v in row["methods"].items()), flush=True)

    server.close()
    engine.close()
    print("\n| measurement | clients | overlay | requests/s or img/s | p50 s | p95 s | mean batch |")
    print("|---|---|---|---|---|---|---|")
    for k, v in out["bare"].items():
        print(f"| bare {k} | - | - | {v:.1f} img/s | | | {b} |")
    for r in out["load"]:
        print(f"| /api/predict | {r['clients']} | {'yes' if r['overlay'] else 'no'} | "
              f"{r['requests_per_second']:.1f} req/s | {r['p50']:.3f} | {r['p95']:.3f} | {r['mean_batch']:.1f} |")
    e = out["batch_endpoint"]
    print(f"| /api/predict/batch (page, chunks of 16) | 1 | 160 px | {e['images_per_second']:.1f} img/s | | | 16 |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
