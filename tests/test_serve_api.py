"""``tfxai serve``'s JSON API: answers equal ``tfxai predict``'s, bad uploads get a clear 4xx and the
server keeps serving, limits, token, Host check, concurrency, explanation jobs, CSV, the command."""
from __future__ import annotations

import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from serve_helpers import ServerThread, bad_uploads, decode_png, enlarged_png, expected_predictions, running_engine

BIG_HW = (520, 400)  # a non-square "original" in the 224-1000 px range


@pytest.fixture(scope="module")
def images(synthetic_dir) -> list[str]:
    root = Path(synthetic_dir) / "test"
    paths = sorted(str(p) for p in root.glob("*/*.png"))
    assert len(paths) >= 20
    return paths


@pytest.fixture(scope="module")
def served(trained_run):
    """One engine and app for the module (tiny synthetic custom_cnn, 32 px), warmed up."""
    from fastapi.testclient import TestClient

    from tfxai.serve.app import create_app

    with running_engine(trained_run.model_path) as (clf, engine, jobs):
        app = create_app(engine, jobs)
        yield SimpleNamespace(clf=clf, engine=engine, jobs=jobs, app=app,
                              client=TestClient(app, base_url="http://127.0.0.1"))


@pytest.fixture(scope="module")
def big_file(images, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("big") / "wide_xray.png"
    path.write_bytes(enlarged_png(images[0], *BIG_HW))
    return str(path)


def post_file(client, name: str, data: bytes, url: str = "/api/predict", **kw):
    return client.post(url, files={"file": (name, data, "application/octet-stream")}, **kw)


def assert_still_serving(served, path: str) -> None:
    assert served.client.get("/api/health").status_code == 200
    r = post_file(served.client, os.path.basename(path), Path(path).read_bytes(), params={"overlay": "false"})
    assert r.status_code == 200 and r.json()["label"] in served.clf.class_names


# ----------------------------------------------------------------------------- answers
def test_health_and_model_facts(served):
    health = served.client.get("/api/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    card = served.client.get("/api/model").json()
    clf = served.clf
    assert card["class_names"] == clf.class_names
    assert card["threshold"] == pytest.approx(clf.threshold)
    assert card["image_size"] == clf.image_size == 32
    assert card["val_metrics"]["roc_auc"] == pytest.approx(clf.facts["val_metrics"]["roc_auc"])
    assert card["trained"] == clf.facts["trained"] and card["data"]["train_counts"]
    assert card["ood_guard"]["present"] is True and card["gradcam"] is True
    assert "not a diagnosis" in card["intended_use"]


def test_model_card_route_answers_the_card_stored_with_the_model(served, trained_run, tmp_path):
    from test_model_card import _without_card

    from tfxai.model_card import SECTIONS, read_model_card
    from tfxai.serve.app import stored_card

    answer = served.client.get("/api/model-card")
    assert answer.status_code == 200
    card = answer.json()["model_card"]
    assert card == read_model_card(trained_run.model_path) and list(card) == list(SECTIONS)
    old = _without_card(trained_run.model_path, tmp_path / "old.keras")
    assert stored_card(old) == {"model_card": None, "message": stored_card(old)["message"]}
    assert "has no model card" in stored_card(old)["message"]


def test_predict_answers_equal_predict_files_on_the_same_images(served, images):
    want = expected_predictions(served.clf, images[:8])
    for path in images[:8]:
        name = os.path.basename(path)
        r = post_file(served.client, name, Path(path).read_bytes())
        assert r.status_code == 200, r.text
        body = r.json()
        label, proba = want[name]
        k = served.clf.class_names.index(label)
        assert body["name"] == name and body["label"] == label and body["class_index"] == k
        assert body["probability"] == pytest.approx(float(proba[k]), abs=1e-5)
        assert [body["probabilities"][c] for c in served.clf.class_names] == pytest.approx(proba.tolist(), abs=1e-5)
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert body["threshold"] == pytest.approx(served.clf.threshold)
        assert body["above_threshold"] == bool(proba[1] >= served.clf.threshold)
        assert body["uncertain"] == bool(abs(proba[1] - served.clf.threshold) <= 0.1)
        assert body["calibrated"] is False and body["uncalibrated_probabilities"] is None
        assert isinstance(body["ood_score"], float) and isinstance(body["ood_flag"], bool)


def test_overlay_is_grad_cam_on_the_original_resolution_image(served, big_file):
    from tfxai.data.decode import heatmap_to_original, load_image
    from tfxai.explain.figures import overlay
    from tfxai.explain.gradcam import GradCAM

    r = post_file(served.client, "wide_xray.png", Path(big_file).read_bytes(), params={"original": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    got = decode_png(body["overlay_png"])
    assert got.shape == (*BIG_HW, 3) and (body["height"], body["width"]) == BIG_HW
    assert decode_png(body["original_png"]).shape[:2] == BIG_HW
    clf = served.clf
    x, original, info = load_image(big_file, clf.image_size, clf.channels, clf.resize_mode)
    k = clf.class_names.index(body["label"])
    heat = GradCAM(clf.model).heatmaps(x[None].astype(np.float32), targets=[k])[0][0]
    want = overlay(original, heatmap_to_original(heat, info), alpha=0.4)
    assert body["explained_class"] == body["label"]
    assert np.abs(got.astype(np.int16) - want.astype(np.int16)).mean() < 1.0


def test_overlay_size_and_overlay_off_are_honoured(served, big_file):
    data = Path(big_file).read_bytes()
    small = post_file(served.client, "a.png", data, params={"overlay_size": "130"}).json()
    assert decode_png(small["overlay_png"]).shape[:2] == (130, 100)
    off = post_file(served.client, "a.png", data, params={"overlay": "false"}).json()
    assert off["overlay_png"] is None and off["label"] == small["label"]
    outcome = served.engine.run([served.engine.prepare(data, "a.png")] * 2, [False, True])
    assert outcome[0].heatmap is None and outcome[1].heatmap.shape == (32, 32)  # Grad-CAM only when asked
    bad = post_file(served.client, "a.png", data, params={"overlay_size": "-3"})
    assert bad.status_code == 400 and "overlay_size" in bad.json()["error"]


def test_batch_answers_each_file_in_order_and_reports_bad_ones(served, images):
    want = expected_predictions(served.clf, images[:5])
    bad = bad_uploads()
    files = [("file", (os.path.basename(p), Path(p).read_bytes())) for p in images[:5]]
    files.insert(2, ("file", bad["truncated"][:2]))
    files.append(("file", bad["empty"][:2]))
    r = served.client.post("/api/predict/batch", files=files, params={"overlay_size": "16"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["name"] for x in results] == [f[1][0] for f in files]
    assert results[2]["status"] == 422 and "truncated" in results[2]["error"]
    assert results[-1]["status"] == 422 and "empty" in results[-1]["error"]
    for res in results[:2] + results[3:-1]:
        label, proba = want[res["name"]]
        assert res["label"] == label and res["positive_probability"] == pytest.approx(float(proba[1]), abs=1e-5)
        assert decode_png(res["overlay_png"]).shape[:2] == (16, 16)  # overlay_size is the longest side


def test_a_model_with_a_temperature_answers_calibrated_probabilities(served, images):
    import dataclasses

    from fastapi.testclient import TestClient

    from tfxai.metrics import apply_temperature
    from tfxai.serve.app import create_app
    from tfxai.serve.engine import Engine

    calibrated = dataclasses.replace(served.clf, temperature=2.5)
    with Engine(calibrated) as engine:
        client = TestClient(create_app(engine), base_url="http://127.0.0.1")
        body = post_file(client, "a.png", Path(images[0]).read_bytes(), params={"overlay": "false"}).json()
        card = client.get("/api/model").json()
    names = served.clf.class_names
    raw = np.array([[body["uncalibrated_probabilities"][c] for c in names]], np.float32)
    want = expected_predictions(served.clf, images[:1])[os.path.basename(images[0])][1]
    assert raw[0] == pytest.approx(want.tolist(), abs=1e-5)  # before temperature: the uncalibrated model
    scaled = apply_temperature(raw, 2.5)[0]
    assert [body["probabilities"][c] for c in names] == pytest.approx(scaled.tolist(), abs=1e-5)
    assert body["calibrated"] is True and body["temperature"] == 2.5 and card["temperature"] == 2.5
    assert abs(body["positive_probability"] - 0.5) < abs(float(want[1]) - 0.5) + 1e-6  # T > 1 softens


def test_a_blank_image_is_flagged_out_of_distribution(served):
    from serve_helpers import jpeg_bytes

    body = post_file(served.client, "blank.jpeg", jpeg_bytes(np.full((256, 256), 128, np.uint8))).json()
    assert body["ood_flag"] is True and "blank" in body["ood_reason"]
    assert body["label"] in served.clf.class_names  # still answered, with the warning


# ----------------------------------------------------------------------------- bad uploads
@pytest.mark.parametrize("case", list(bad_uploads()))
def test_bad_upload_gets_a_clear_4xx_and_the_server_keeps_serving(served, images, case):
    name, data, words = bad_uploads()[case]
    r = post_file(served.client, name, data)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]
    assert words in message and name in message  # names the file, says what is wrong
    assert "Traceback" not in r.text
    assert_still_serving(served, images[0])


def test_a_script_name_is_echoed_as_plain_data(served, images):
    name = '<img src=x onerror=alert(1)>.png'
    r = post_file(served.client, name, Path(images[0]).read_bytes())
    assert r.status_code == 200 and r.json()["name"] == name
    assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("make, words", [
    (lambda c: c.post("/api/predict", data={"note": "hello"}), "multipart/form-data"),
    (lambda c: c.post("/api/predict", files={"other": ("a.png", b"x")}), "no field 'file'"),
    (lambda c: c.post("/api/predict", files=[("file", ("a.png", b"x")), ("file", ("b.png", b"y"))]), "takes one"),
    (lambda c: c.post("/api/predict", files={"file": (None, "just text")}), "file upload"),
    (lambda c: c.post("/api/predict", params={"overlay": "maybe"}, files={"file": ("a.png", b"x")}), "true or false"),
    (lambda c: c.post("/api/predict/batch", files=[("file", (f"{i}.png", b"x")) for i in range(65)]),
     "over the limit of 64"),
], ids=["not_multipart", "no_file_field", "two_files", "text_field", "bad_flag", "too_many_files"])
def test_malformed_requests_get_400_with_what_to_send(served, images, make, words):
    r = make(served.client)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]
    assert_still_serving(served, images[0])


def test_unknown_route_and_interactive_docs_are_404_but_openapi_is_served(served):
    assert served.client.get("/docs").status_code == 404
    assert served.client.get("/api/nothing").status_code == 404
    spec = served.client.get("/api/openapi.json").json()
    assert "/api/predict" in spec["paths"] and "multipart/form-data" in str(spec["paths"]["/api/predict"])


# ----------------------------------------------------------------------------- limits, token, host
@pytest.fixture(scope="module")
def strict(served):
    """An app on the same classifier with a token and a 1 MB upload limit."""
    from fastapi.testclient import TestClient

    from tfxai.serve.app import create_app
    from tfxai.serve.engine import Engine, ServeSettings

    engine = Engine(served.clf, ServeSettings(token="test-token-1234", max_upload_mb=1)).start()
    yield SimpleNamespace(engine=engine, client=TestClient(create_app(engine), base_url="http://127.0.0.1"),
                          auth={"Authorization": "Bearer test-token-1234"})
    engine.close()


def test_token_is_required_by_the_api_but_not_by_health_or_the_page(strict, images):
    c = strict.client
    data = Path(images[0]).read_bytes()
    assert c.get("/api/model").status_code == 401
    assert c.get("/api/model", headers={"Authorization": "Bearer wrong-token-000"}).status_code == 401
    denied = post_file(c, "a.png", data)
    assert denied.status_code == 401 and "token" in denied.json()["error"]
    assert c.get("/api/model", headers=strict.auth).json()["token_required"] is True
    assert post_file(c, "a.png", data, headers=strict.auth).status_code == 200
    assert c.get("/api/health").status_code == 200
    assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200


def test_upload_over_the_size_limit_is_refused_with_413(strict, images):
    big = b"\x89PNG" + os.urandom(int(1.5 * 2**20))
    r = post_file(strict.client, "big.png", big, headers=strict.auth)
    assert r.status_code == 413 and "1 MB" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is counted while reading
        yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(4):
            yield os.urandom(2**19)

    r = strict.client.post("/api/predict", content=chunks(),
                           headers={**strict.auth, "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert post_file(strict.client, "a.png", Path(images[0]).read_bytes(), headers=strict.auth).status_code == 200


def test_requests_for_another_host_name_are_refused(served):
    r = served.client.get("/api/health", headers={"Host": "attacker.example:8000"})
    assert r.status_code == 400 and "attacker.example" in r.json()["error"]
    assert served.client.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200
    assert served.client.get("/api/health", headers={"Host": "[::1]:8000"}).status_code == 200


def test_page_and_static_files_load_nothing_from_elsewhere(served):
    page = served.client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    static = Path(__file__).resolve().parents[1] / "tfxai" / "serve" / "static"
    texts = {p.name: p.read_text(encoding="utf-8") for p in static.iterdir()}
    assert {"index.html", "app.js", "style.css"} <= set(texts)
    external = re.compile(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?(https?:)?//|"""
                          r"""fetch\(\s*["'`]https?:|@import""", re.I)
    for name, text in texts.items():
        assert not external.search(text), f"{name} loads something from another origin"
    assert "innerHTML" not in texts["app.js"] and "insertAdjacentHTML" not in texts["app.js"]


def test_settings_are_checked_at_the_boundary():
    from tfxai.serve.engine import ServeSettings

    with pytest.raises(ValueError, match="max_batch.*0"):
        ServeSettings(max_batch=0)
    with pytest.raises(ValueError, match="uncertain_band.*0.7"):
        ServeSettings(uncertain_band=0.7)
    with pytest.raises(ValueError, match="token"):
        ServeSettings(token="short")


# ----------------------------------------------------------------------------- concurrency
def test_twenty_concurrent_requests_are_all_answered_correctly(served, images):
    import httpx

    good = images[:16]
    want = expected_predictions(served.clf, good)
    uploads = [(os.path.basename(p), Path(p).read_bytes()) for p in good]
    uploads += [(n, d) for n, d, _ in list(bad_uploads().values())[:4]]
    assert len(uploads) == 20
    before = served.engine.images
    with ServerThread(served.app) as server:
        assert server.url.startswith("http://127.0.0.1:")

        def post(item):
            with httpx.Client(timeout=60) as c:
                return c.post(server.url + "/api/predict", files={"file": item})

        start = time.monotonic()
        with ThreadPoolExecutor(len(uploads)) as pool:
            answers = list(pool.map(post, uploads))
        elapsed = time.monotonic() - start
    assert elapsed < 60
    for (name, _), r in zip(uploads[:16], answers[:16]):
        assert r.status_code == 200, r.text
        label, proba = want[name]
        body = r.json()
        assert body["name"] == name and body["label"] == label
        assert body["positive_probability"] == pytest.approx(float(proba[1]), abs=1e-4)
        assert decode_png(body["overlay_png"]).shape[:2] == (32, 32)
    for r in answers[16:]:
        assert r.status_code == 422 and r.json()["error"]
    assert served.engine.images - before == 16


def test_a_failing_batch_is_retried_image_by_image(served, images):
    engine = served.engine
    uploads = [engine.prepare(Path(p).read_bytes(), os.path.basename(p)) for p in images[:4]]
    poison = engine.prepare(Path(images[4]).read_bytes(), "poison.png")
    real_run, sizes = engine.run, []

    def run(batch, heatmaps=None):
        sizes.append(len(batch))
        if any(u.name == "poison.png" for u in batch):
            raise RuntimeError("this image breaks the model")
        return real_run(batch, heatmaps)

    engine.run = run
    try:
        with engine.model_lock:  # hold the worker on the first image while the others queue up
            first = engine.submit(uploads[0])
            time.sleep(0.2)
            rest = [engine.submit(u) for u in (uploads[1], poison, *uploads[2:])]
            time.sleep(0.1)
        outcomes = [first.result(30)] + [f.result(30) for i, f in enumerate(rest) if i != 1]
        with pytest.raises(RuntimeError, match="breaks the model"):
            rest[1].result(30)
    finally:
        del engine.run  # the class method again
    assert max(sizes) >= 2 and sizes.count(1) >= 2  # one batch failed, then one by one
    want = expected_predictions(served.clf, images[:4])
    for u, o in zip(uploads, outcomes):
        assert served.clf.class_names[o.decided] == want[u.name][0]


# ----------------------------------------------------------------------------- explanations, CSV
def test_explain_job_compares_four_methods_with_faithfulness_scores(served, big_file):
    c = served.client
    data = Path(big_file).read_bytes()
    predicted = post_file(c, "wide_xray.png", data).json()
    r = post_file(c, "wide_xray.png", data, url="/api/explain")
    assert r.status_code == 202, r.text
    job = r.json()
    deadline = time.monotonic() + 120
    while job["status"] not in ("done", "error") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = c.get(f"/api/explain/{job['id']}").json()
    assert job["status"] == "done", job["error"]
    assert list(job["results"]) == ["gradcam", "gradcam++", "faster-scorecam", "lime"]
    assert job["explained_class"] == predicted["label"] and job["overall_progress"] == 1.0
    for method, res in job["results"].items():
        assert 0.0 <= res["deletion_auc"] <= 1.0 and 0.0 <= res["insertion_auc"] <= 1.0, method
        assert decode_png(res["overlay_png"]).shape[:2] == BIG_HW
    same = np.abs(decode_png(job["results"]["gradcam"]["overlay_png"]).astype(np.int16)
                  - decode_png(predicted["overlay_png"]).astype(np.int16)).mean()
    assert same < 1.0  # the job's Grad-CAM is the overlay /api/predict gave


def test_explain_rejects_unknown_methods_and_jobs(served, images):
    r = post_file(served.client, "a.png", Path(images[0]).read_bytes(), url="/api/explain",
                  params={"methods": "gradcam,occlusion"})
    assert r.status_code == 400 and "occlusion" in r.json()["error"]
    assert served.client.get("/api/explain/no-such-job").status_code == 404


def test_csv_neutralises_formulas_and_keeps_the_numbers(served, images):
    answer = post_file(served.client, "=HYPERLINK(1).png", Path(images[0]).read_bytes()).json()
    rows = [answer, {"name": "@cmd.png", "error": "-1+2 not readable"}]
    r = served.client.post("/api/csv", json={"results": rows})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [t["file"] for t in table] == ["'=HYPERLINK(1).png", "'@cmd.png"]
    assert table[1]["error"] == "'-1+2 not readable"
    assert float(table[0]["positive_probability"]) == pytest.approx(answer["positive_probability"], abs=1e-4)
    assert float(table[0]["p_NORMAL"]) == pytest.approx(answer["probabilities"]["NORMAL"], abs=1e-4)
    assert table[0]["label"] == answer["label"]
    assert served.client.post("/api/csv", json={"rows": 3}).status_code == 400


# ----------------------------------------------------------------------------- the command
def test_serve_access_rules():
    from tfxai.commands.serve import access

    assert access("127.0.0.1", None) == (None, ("127.0.0.1", "localhost", "::1"))
    token, hosts = access("0.0.0.0", None)
    assert hosts == ("*",) and len(token) >= 16
    assert access("0.0.0.0", None, no_token=True) == (None, ("*",))
    assert access("192.168.1.5", "my-secret-token")[0] == "my-secret-token"


def test_a_short_token_stops_serve_in_one_line_before_the_model_loads(tmp_path, capsys):
    from tfxai.cli import main

    assert main(["serve", "--checkpoint", str(tmp_path / "absent.keras"), "--token", "short"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "token" in err and "absent.keras" not in err


def test_serve_refuses_a_port_in_use_in_one_line(trained_run, capsys):
    from tfxai.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--checkpoint", trained_run.model_path, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "--port" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", "--checkpoint", trained_run.model_path, "--port", "70000"]) == 2


@pytest.mark.slow
def test_serve_command_answers_over_http_and_stops_on_ctrl_c(trained_run, images):
    import httpx

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "tfxai", "serve", "--checkpoint", trained_run.model_path,
                             "--port", "0", "--token", "test-token-5678"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    url = None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = [re.search(r"open (http://127\.0\.0\.1:\d+/)#token=test-token-5678", x) for x in lines]
            url = next((m.group(1) for m in found if m), None)
            time.sleep(0.1)
        assert url, "".join(lines)
        auth = {"Authorization": "Bearer test-token-5678"}
        assert httpx.get(url + "api/health", timeout=10).status_code == 200
        assert httpx.get(url + "api/model", timeout=10).status_code == 401
        r = httpx.post(url + "api/predict", files={"file": ("x.png", Path(images[0]).read_bytes())},
                       headers=auth, timeout=30)
        assert r.status_code == 200 and r.json()["label"] in ("NORMAL", "PNEUMONIA")
        assert any("curl -F file=@xray.jpeg" in x for x in lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    reader.join(5)
    assert proc.returncode == 0, "".join(lines)
    assert "tfxai serve: stopped" in "".join(lines)


def test_serve_caps_malloc_arenas_unless_the_environment_sets_them(monkeypatch):
    """Issue 22: one glibc malloc arena per thread let the server's memory grow under load."""
    import platform

    from tfxai.commands.serve import cap_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False  # the user's setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert cap_malloc_arenas() is (platform.libc_ver()[0] == "glibc")
