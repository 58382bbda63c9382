"""``tfxai export --target web``: the exported app, and the page driven in a real headless Chromium
(Debian's chromium + chromium-driver through Selenium, as tests/test_serve_browser.py; a static
server on a loopback port; nothing downloads anything).

One tiny custom_cnn *with in-model histogram equalisation* (the default recipe's preprocessing),
trained on synthetic X-rays, is exported once; one browser serves the tests of the page, a second
one emulates a phone. Real X-rays from ../shared/data are used when present (skipped otherwise).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from serve_helpers import ServerThread, enlarged_png, expected_predictions, jpeg_bytes, truncated_jpeg
from test_serve_browser import HEADLESS_FLAGS, browser_paths  # noqa: F401 (a fixture)

WAIT = 60
SIZE = 48  # the model's input; the synthetic X-rays are 72 px and larger, so every resize shrinks


# ----------------------------------------------------------------------------- the model and the app
@pytest.fixture(scope="module")
def web_model(tmp_path_factory):
    """A custom_cnn with in-model equalisation, calibrated (a temperature) and a Youden threshold."""
    from tfxai.synthetic import write_synthetic_dataset
    from tfxai.training import TrainConfig, train

    root = str(tmp_path_factory.mktemp("web-synthetic") / "chest_xray")
    write_synthetic_dataset(root, {"train": 160, "val": 60, "test": 20}, image_size=72, seed=0)
    out = str(tmp_path_factory.mktemp("web-run") / "tiny_equalize")
    result = train(TrainConfig(root, "custom_cnn", out, epochs=2, image_size=SIZE, batch_size=32,
                               model_options={"width": 8, "depth": 2, "preprocessing": "equalize"},
                               threshold_policy="youden", calibrate=True, cache_dir=None, verbose=0,
                               resize_mode="pad"))  # the letterbox path; squash has its own test
    return SimpleNamespace(path=result.model_path, data=root)


def one_line_error(capsys) -> str:
    """The CLI's error for a user mistake: one line on stderr, no traceback."""
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def web_runtime():
    """LiteRT.js as `make install` puts it (web/node_modules); skip without it, fail under CI."""
    from tfxai.compress.web_runtime import find_runtime
    from tfxai.errors import TfxaiError

    try:
        return find_runtime()
    except TfxaiError as err:  # `make install` (and so `make test`) installs it; CI must have it
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{err} -- missing under CI=true")
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def app(web_model, web_runtime, tmp_path_factory):
    """The app exported by the CLI (in this process: the model is already loaded by TensorFlow)."""
    from tfxai.classifier import load_classifier
    from tfxai.cli import main

    folder = str(tmp_path_factory.mktemp("web-export") / "app")
    assert main(["export", "--checkpoint", web_model.path, "--target", "web", "--output-dir", folder]) == 0
    return SimpleNamespace(folder=folder, clf=load_classifier(web_model.path), model_path=web_model.path,
                           facts=json.loads(Path(folder, "model.json").read_text()))


@pytest.fixture(scope="module")
def files(web_model, tmp_path_factory):
    """Synthetic X-rays as PNG (72 px), enlarged to non-square sizes, and as JPEG."""
    import cv2

    folder = tmp_path_factory.mktemp("web-files")
    tests = sorted(Path(web_model.data, "test").glob("*/*.png"))
    paths = [str(p) for p in tests[:4]]
    for name, (h, w) in {"tall.png": (301, 203), "wide.png": (180, 333)}.items():
        (folder / name).write_bytes(enlarged_png(str(tests[5]), h, w))
        paths.append(str(folder / name))
    (folder / "synthetic.jpeg").write_bytes(jpeg_bytes(cv2.imread(str(tests[6]), cv2.IMREAD_GRAYSCALE)))
    paths.append(str(folder / "synthetic.jpeg"))
    hostile = folder / "<img src=x onerror=window.__xss=1>.png"
    hostile.write_bytes(b"this is not an image\n" * 10)
    (folder / "cut.jpeg").write_bytes(truncated_jpeg())
    return SimpleNamespace(good=paths, hostile=str(hostile), truncated=str(folder / "cut.jpeg"))


def litert_outputs(model_file: str, pixels: np.ndarray) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=model_file).get_signature_runner("serving_default")
    return runner(image=pixels.astype(np.float32)[None])


# ----------------------------------------------------------------------------- the export
def test_export_writes_a_complete_app_whose_checksums_and_cache_name_hold(app):
    folder = Path(app.folder)
    facts = app.facts
    for name in ("index.html", "app.js", "engine.js", "imaging.js", "dicom.js", "sw.js", "style.css",
                 "manifest.webmanifest", "icon-192.png", "icon-512.png", "model.tflite", "model_card.json",
                 "ood.json", "SHA256SUMS", "runtime/litert/index.js", "runtime/litert/wasm-utils.js",
                 "runtime/litert/wasm/litert_wasm_internal.wasm", "runtime/litert/wasm/litert_wasm_compat_internal.js"):
        assert (folder / name).is_file(), name
    clf = app.clf
    assert facts["class_names"] == clf.class_names and facts["threshold"] == pytest.approx(clf.threshold)
    assert facts["resize_mode"] == clf.resize_mode and facts["image_size"] == SIZE and facts["channels"] == 1
    assert facts["temperature"] == pytest.approx(clf.temperature) and facts["temperature_inside"]
    assert "equalize" in facts["preprocessing"] and facts["gradcam_layer"] == "block2b_relu"
    low, high = facts["validation"]["ci95"]["accuracy"]
    assert low < facts["validation"]["metrics"]["accuracy"] < high
    assert "not a diagnosis" in facts["intended_use"]
    for line in (folder / "SHA256SUMS").read_text().splitlines():  # what `sha256sum -c SHA256SUMS` checks
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    for name, entry in facts["files"].items():
        assert entry["bytes"] == (folder / name).stat().st_size, name
    sw = (folder / "sw.js").read_text()
    precache = json.loads(sw.split("const PRECACHE = ", 1)[1].split(";\n", 1)[0])
    assert precache["cache"].startswith("tfxai-") and len(precache["cache"]) == len("tfxai-") + 16
    assert {*precache["shell"], *precache["variants"]["simd"], *precache["variants"]["compat"]} == \
        {"./", *[n for n in facts["files"] if not n.endswith("LICENSE.txt")], "model.json"}
    assert "unpkg" not in sw and "cdn" not in (folder / "index.html").read_text().lower()
    card = json.loads((folder / "model_card.json").read_text())  # this model has no card: a minimal one
    assert {"intended_use", "limitations", "decision_threshold"} <= set(card)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_tflite_scores_and_gradcam_equal_tfxai_keras(app, files):
    from tfxai.data import load_image
    from tfxai.explain.gradcam import GradCAM
    from tfxai.explain.types import normalize_heatmap

    from tfxai.compress.web_model import tflite_ops

    assert not {"FlexReluGrad", "CUSTOM"} & set(tflite_ops(os.path.join(app.folder, "model.tflite")))
    x = np.stack([load_image(p, SIZE, 1, app.clf.resize_mode)[0] for p in files.good]).astype(np.float32)
    proba = app.clf.predict_proba(x)
    ood = app.clf.check_ood(x)
    gradcam = GradCAM(app.clf.model)
    for k in range(2):
        maps = gradcam.heatmaps(x, targets=np.full(len(x), k))[0]
        for i in range(len(x)):
            out = litert_outputs(os.path.join(app.folder, "model.tflite"), x[i])
            np.testing.assert_allclose(out["scores"][0], proba[i], atol=1e-5)
            np.testing.assert_allclose(normalize_heatmap(out["gradcam"][0, k]), maps[i], atol=1e-4)
            from tfxai.ood import OODGuard
            assert isinstance(app.clf.ood, OODGuard)
            assert app.clf.ood.score(out["features"])[0] == pytest.approx(ood[i].score, rel=1e-4)


def test_export_of_a_model_without_a_gradcam_layer_stops_with_one_line_and_writes_nothing(web_runtime, tmp_path,
                                                                                          capsys):
    from tfxai._keras import keras
    from tfxai.classifier import model_facts
    from tfxai.cli import main
    from tfxai.io.model_files import save_model

    inputs = keras.Input((16, 16, 1), name="image")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    path = str(tmp_path / "dense.keras")
    save_model(model, path, model_facts(["NORMAL", "PNEUMONIA"], 16, 1))
    assert main(["export", "--checkpoint", path, "--target", "web", "--output-dir", str(tmp_path / "app")]) == 2
    line = one_line_error(capsys)
    assert "Grad-CAM layer" in line and path in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.keras"]  # no app, no temporary folder


def test_export_without_the_runtime_says_to_run_make_install_and_writes_nothing(app, tmp_path, monkeypatch, capsys):
    from tfxai.cli import main

    monkeypatch.setenv("TFXAI_WEB_RUNTIME", str(tmp_path / "no_node_modules"))
    assert main(["export", "--checkpoint", app.model_path, "--target", "web", "--output-dir", str(tmp_path / "app")]) == 2
    assert "make install" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_export_replaces_its_own_app_but_not_a_folder_it_did_not_write(app, tmp_path):
    from tfxai.compress.web import export_web
    from tfxai.errors import OutputError

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="notes.txt"):
        export_web(app.model_path, str(theirs), clf=app.clf)
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
    ours = tmp_path / "ours"
    first = export_web(app.model_path, str(ours), clf=app.clf)
    (ours / "model.tflite").write_bytes(b"stale")
    export_web(app.model_path, str(ours), clf=app.clf)
    assert (ours / "model.tflite").stat().st_size == first.facts["files"]["model.tflite"]["bytes"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours", "theirs"]


# ----------------------------------------------------------------------------- the browser
def _options(chromium: str, profile: Path, extra: tuple[str, ...] = ()):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*HEADLESS_FLAGS, *extra, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return options


def _chrome(browser_paths, options):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # An explicit driver path: Selenium Manager (which may download) is never called.
    drv = webdriver.Chrome(service=Service(executable_path=browser_paths[1]), options=options)
    drv.set_page_load_timeout(WAIT)
    drv.set_script_timeout(WAIT)
    return drv


# Any host name maps to this machine's loopback: "http://tfxai.test" is then a real, non-secure origin
# (as http://<laptop-ip> is for a phone) whose traffic never leaves the machine.
INSECURE_HOST = "tfxai.test"


@pytest.fixture(scope="module")
def driver(browser_paths, tmp_path_factory):
    options = _options(browser_paths[0], tmp_path_factory.mktemp("web-chromium"),
                       (f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",))
    drv = _chrome(browser_paths, options)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def site(app):
    from tfxai.serve.site import create_site

    server = ServerThread(create_site(app.folder, allowed_hosts=("127.0.0.1", INSECURE_HOST)))
    yield server
    server.stop()


def open_app(driver, url: str) -> dict:
    driver.get(url + "/")
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const wait = () => window.tfxai && window.tfxai.ready ? window.tfxai.ready.then(() => done(window.tfxai.timings),"
        " (e) => done({error: String(e)})) : setTimeout(wait, 20); wait();")


def classify(driver, paths: list[str]) -> dict[str, dict]:
    """Choose ``paths`` in the page; {file name: the page's result (plain arrays)}."""
    from selenium.webdriver.support.ui import WebDriverWait

    before = driver.execute_script("return window.tfxai.results.size + window.tfxai.errors.length")
    driver.find_element("id", "file-input").send_keys("\n".join(paths))
    WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: d.execute_script(
        "return window.tfxai.results.size + window.tfxai.errors.length") >= before + len(paths))
    names = [os.path.basename(p) for p in paths]
    return {n: driver.execute_script("return window.tfxai.dump(arguments[0])", n) for n in names}


def reload_page(driver):
    """Reload the page and wait until the app is ready: True, or the error the page gave."""
    driver.refresh()
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const wait = () => window.tfxai && window.tfxai.ready ? window.tfxai.ready.then(() => done(true),"
        " (e) => done(String(e))) : setTimeout(wait, 20); wait();")


def wait_installed(driver) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT, poll_frequency=0.1).until(
        lambda d: d.execute_script("return window.tfxai.offline.state") != "pending")
    return driver.execute_script("return window.tfxai.offline")


def assert_matches_python(app, results: dict[str, dict], paths: list[str], proba_atol: float = 1e-4):
    """The page's input equals tfxai.data's, its scores LiteRT's on that input (1e-5), its label
    tfxai predict's, its Grad-CAM map tfxai's GradCAM (1e-4) and its OOD verdict the guard's."""
    from tfxai.data import load_image
    from tfxai.explain.gradcam import GradCAM

    want = expected_predictions(app.clf, paths)
    gradcam = GradCAM(app.clf.model)
    for path in paths:
        name = os.path.basename(path)
        page = results[name]
        assert page is not None, name
        size = app.clf.image_size
        x = np.asarray(page["input"], np.float32).reshape(size, size, 1)
        ours = load_image(path, size, 1, app.clf.resize_mode)[0]
        assert np.abs(x - ours).max() <= 1, name  # OpenCV's INTER_AREA in JavaScript
        out = litert_outputs(os.path.join(app.folder, "model.tflite"), x)
        np.testing.assert_allclose(page["scores"], out["scores"][0], atol=1e-5, err_msg=name)
        label, proba = want[name]
        assert page["label"] == label, name
        np.testing.assert_allclose(page["scores"], proba, atol=proba_atol, err_msg=name)
        heat = gradcam.heatmaps(x[None], targets=[page["index"]])[0][0]
        np.testing.assert_allclose(np.reshape(page["heatmap"], (size, size)), heat, atol=1e-4, err_msg=name)
        verdict = app.clf.check_ood(x[None])[0]
        assert page["ood"]["flag"] == verdict.flag and page["ood"]["reason"] == verdict.reason, name
        assert page["ood"]["score"] == pytest.approx(verdict.score, rel=1e-4), name
        assert page["ood"]["pixelScore"] == pytest.approx(verdict.pixel_score, rel=1e-4), name


def test_page_classifies_like_tfxai_with_the_same_grad_cam(driver, site, app, files):
    timings = open_app(driver, site.url)
    assert "error" not in timings, timings
    results = classify(driver, files.good)
    assert_matches_python(app, results, files.good)
    for name in ("tall.png", "wide.png"):  # non-square: padded as tfxai pads, overlay at the original size
        assert results[name]["info"]["mode"] == "pad" and results[name]["info"]["h"] != results[name]["info"]["w"]
    facts = driver.find_element("id", "facts").text
    assert f"{app.clf.threshold:.3f}" in facts and "equalize" in facts
    assert "not a diagnosis" in driver.find_element("id", "intended-use").text
    shown = driver.execute_script("const c = document.getElementById('overlay-canvas'); return [c.height, c.width];")
    last = driver.find_element("id", "detail-name").text
    assert shown == [results[last]["height"], results[last]["width"]]  # the original's size (under 1280 px)
    card = driver.find_element("id", "card-box")
    card.click()
    assert "limitations" in card.text.lower() and "intended use" in card.text.lower()


def test_network_log_shows_only_the_page_origin_and_no_csp_violation(driver, site, files):
    driver.get("about:blank")
    driver.get_log("performance")  # reading empties it: only what the app does from here on counts
    driver.get_log("browser")
    open_app(driver, site.url)
    classify(driver, files.good[:2])
    requested = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    outside = {u for u in requested if not u.startswith((site.url + "/", "data:", "blob:"))}
    assert requested and not outside, outside
    console = [e["message"] for e in driver.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m or "Content-Security-Policy" in m]
    assert driver.execute_script("return window.tfxai.cspViolations") == []
    assert driver.execute_script("return document.querySelector('meta[http-equiv=Content-Security-Policy]')"
                                 ".content").startswith("default-src 'self'")


def test_unreadable_files_get_a_message_and_the_page_keeps_working(driver, site, files):
    open_app(driver, site.url)
    classify(driver, [files.hostile, files.truncated])
    errors = driver.find_element("id", "errors").text
    assert f"{os.path.basename(files.hostile)}: not a readable image" in errors  # shown as text
    assert "cut.jpeg: truncated JPEG" in errors
    assert driver.execute_script("return window.__xss === undefined && document.querySelectorAll('img[src=\"x\"]').length === 0")
    good = classify(driver, files.good[:1])
    assert good[os.path.basename(files.good[0])]["label"]


def test_page_says_plainly_when_it_is_not_installed_for_offline_use(driver, site):
    port = site.url.rsplit(":", 1)[1]
    open_app(driver, f"http://{INSECURE_HOST}:{port}")
    status = wait_installed(driver)
    assert status["state"] == "not-installed" and "plain http" in status["detail"]
    assert "Not installed for offline use" in driver.find_element("id", "offline-status").text


def test_reload_with_the_server_stopped_still_classifies(driver, app, files):
    from tfxai.serve.site import create_site

    server = ServerThread(create_site(app.folder))
    try:
        open_app(driver, server.url)
        assert wait_installed(driver)["state"] == "installed"
        online = classify(driver, files.good[:2])
    finally:
        server.stop()
    with pytest.raises(OSError):  # the server is really gone
        import urllib.request
        urllib.request.urlopen(server.url + "/", timeout=5)
    assert reload_page(driver) is True
    offline = classify(driver, files.good[:2])
    for name, result in online.items():
        assert offline[name]["scores"] == result["scores"] and offline[name]["label"] == result["label"]


@pytest.fixture(scope="module")
def phone(browser_paths, tmp_path_factory):
    """A phone: mobile emulation (360 x 740 CSS px, touch, a phone's user agent), the CPU slowed
    four times, and no WebGPU."""
    options = _options(browser_paths[0], tmp_path_factory.mktemp("web-phone"))
    options.add_experimental_option("mobileEmulation", {
        "deviceMetrics": {"width": 360, "height": 740, "pixelRatio": 3.0, "touch": True},
        "userAgent": "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/120.0 Mobile Safari/537.36"})
    drv = _chrome(browser_paths, options)
    drv.execute_cdp_cmd("Emulation.setCPUThrottlingRate", {"rate": 4})
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                        {"source": "delete Navigator.prototype.gpu; delete WorkerNavigator.prototype.gpu;"})
    yield drv
    drv.quit()


def test_phone_profile_gives_the_same_results(phone, driver, site, files, tmp_path):
    open_app(driver, site.url)
    desktop = classify(driver, files.good)
    timings = open_app(phone, site.url)
    assert "error" not in timings, timings
    assert phone.execute_script("return navigator.gpu === undefined && window.innerWidth") == 360
    results = classify(phone, files.good)
    for name, result in desktop.items():
        assert results[name]["label"] == result["label"], name
        np.testing.assert_allclose(results[name]["scores"], result["scores"], atol=1e-6)
        np.testing.assert_allclose(results[name]["heatmap"], result["heatmap"], atol=1e-6)
    # usable on the small screen: nothing wider than the viewport, the buttons big enough to tap
    assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert phone.execute_script("return document.querySelector('label.button').getBoundingClientRect().height") >= 40
    assert phone.save_screenshot(str(tmp_path / "phone.png"))


def _file_in_page(driver, data: bytes, name: str, size: int, mode: str) -> dict:
    return driver.execute_async_script("""
        const [b64, name, size, mode, done] = arguments;
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        window.tfxai.prepare(new File([bytes], name), size, mode).then(done, (e) => done({error: e.message}));
    """, base64.b64encode(data).decode(), name, size, mode)


@pytest.mark.realdata
def test_real_films_preprocess_and_classify_as_tfxai_does(driver, site, app, shared_data):
    """Native-resolution Kermany films (up to 1776 x 1416, grey and RGB JPEGs) and their 224-px copies."""
    from tfxai.data import decode_image, resize_image

    original = shared_data / "chest_xray_original"
    films = sorted((original / "val" / "NORMAL").glob("*.jpeg"))[:2] + sorted((original / "val" / "PNEUMONIA").glob("*.jpeg"))[:2]
    films += sorted((original / "train" / "PNEUMONIA").glob("person1177_virus_1999.jpeg"))  # an RGB JPEG
    films += sorted((shared_data / "chest_xray_224" / "val" / "PNEUMONIA").glob("*.jpeg"))[:2]
    open_app(driver, site.url)
    for film in films:
        grey = decode_image(str(film), 1)
        for size, mode in ((128, "pad"), (224, "squash"), (96, "crop"), (SIZE, "pad")):
            page = _file_in_page(driver, film.read_bytes(), film.name, size, mode)
            assert "error" not in page, page
            ours = resize_image(grey, size, mode)[0][..., 0]
            diff = np.abs(np.reshape(page["pixels"], (size, size)).astype(int) - ours)
            assert diff.max() <= 1 and diff.mean() < 0.01, (film.name, size, mode, diff.max(), diff.mean())
    paths = [str(f) for f in films]
    assert_matches_python(app, classify(driver, paths), paths)


def _dicom(path: Path, pixels: np.ndarray, syntax: str = "1.2.840.10008.1.2.1", **extra) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(syntax)
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, extra.pop("photometric", "MONOCHROME2")
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    for key, value in extra.items():
        setattr(ds, key, value)
    if UID(syntax).is_compressed:  # a stand-in compressed frame: the page must refuse it by its syntax
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\xff\xd8" + pixels.tobytes()[:64] + b"\xff\xd9"])
    else:
        ds.PixelData = pixels.tobytes()
    ds.save_as(str(path), implicit_vr=syntax == "1.2.840.10008.1.2", little_endian=True)


def test_uncompressed_dicom_reads_as_tfxai_reads_it_and_compressed_says_so(driver, site, tmp_path):
    from tfxai.data import decode_image

    rng = np.random.default_rng(0)
    film = (rng.normal(2000, 600, (90, 70)).clip(0, 4095)).astype(np.uint16)
    cases = {
        "explicit16.dcm": dict(pixels=film, RescaleSlope="1.5", RescaleIntercept="-100", WindowCenter="2500",
                               WindowWidth="3000"),
        "implicit16_mono1.dcm": dict(pixels=film, syntax="1.2.840.10008.1.2", photometric="MONOCHROME1"),
        "explicit8.dcm": dict(pixels=(film >> 4).astype(np.uint8)),
    }
    open_app(driver, site.url)
    for name, spec in cases.items():
        path = tmp_path / name
        _dicom(path, **spec)
        page = _file_in_page(driver, path.read_bytes(), name, 64, "squash")
        assert "error" not in page, page
        from tfxai.data import resize_image
        ours = resize_image(decode_image(str(path), 1), 64, "squash")[0][..., 0]
        assert np.abs(np.reshape(page["pixels"], (64, 64)).astype(int) - ours).max() <= 1, name
    _dicom(tmp_path / "jpeg.dcm", film, syntax="1.2.840.10008.1.2.4.50")
    page = _file_in_page(driver, (tmp_path / "jpeg.dcm").read_bytes(), "jpeg.dcm", 64, "squash")
    assert "transfer syntax 1.2.840.10008.1.2.4.50" in page["error"] and "browser" in page["error"]


def test_serve_web_over_https_sends_the_page_and_its_csp(app, tmp_path, capsys):
    import ssl
    import urllib.request

    from tfxai.serve.site import create_site

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True, timeout=60)
    server = ServerThread(create_site(app.folder), tls={"ssl_certfile": str(cert), "ssl_keyfile": str(key)})
    try:
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(server.url + "/", context=context, timeout=10) as response:
            page, csp = response.read().decode(), response.headers["Content-Security-Policy"]
        with urllib.request.urlopen(server.url + "/runtime/litert/wasm/litert_wasm_internal.wasm", context=context,
                                    timeout=10) as response:
            assert response.headers["Content-Type"] == "application/wasm"
    finally:
        server.stop()
    assert server.url.startswith("https://") and "<title>tfxai" in page
    assert csp.startswith("default-src 'self'") and "'wasm-unsafe-eval'" in csp and "frame-ancestors 'none'" in csp
    from tfxai.cli import main

    assert main(["serve", "--web", app.folder, "--https"]) == 2
    assert "--cert" in one_line_error(capsys)


def test_a_squash_model_is_squashed_like_tfxai_and_its_own_model_card_is_shown(driver, app, files, tmp_path):
    """Models trained on pre-squashed square copies store resize mode "squash": the page follows the
    facts. A model card stored in the model travels into the app and is shown whatever its fields."""
    import shutil

    from tfxai.classifier import load_classifier
    from tfxai.compress.web import export_web
    from tfxai.io.atomic import dumps_json
    from tfxai.io.model_files import read_model_facts, set_model_entry, update_model_facts
    from tfxai.serve.site import create_site

    model = str(tmp_path / "squash.keras")
    shutil.copyfile(app.model_path, model)
    update_model_facts(model, {**read_model_facts(model), "resize_mode": "squash"})
    card = {"schema": "test card", "intended_use": {"primary": "teaching"},
            "a_field_added_later": ["first finding", {"nested": 0.25}]}
    set_model_entry(model, "model_card.json", dumps_json(card).encode())
    clf = load_classifier(model)
    export_web(model, str(tmp_path / "app"), clf=clf)
    server = ServerThread(create_site(str(tmp_path / "app")))
    try:
        open_app(driver, server.url)
        paths = [p for p in files.good if os.path.basename(p) in ("tall.png", "wide.png")]
        results = classify(driver, paths)
        box = driver.find_element("id", "card-box")
        box.click()
        assert "a field added later" in box.text.lower() and "first finding" in box.text and "nested: 0.25" in box.text
    finally:
        server.stop()
    squashed = SimpleNamespace(clf=clf, folder=str(tmp_path / "app"), model_path=model)
    assert_matches_python(squashed, results, paths)
    for result in results.values():
        assert result["info"]["mode"] == "squash" and result["info"]["h"] == result["info"]["w"] == SIZE
    assert json.loads((tmp_path / "app" / "model_card.json").read_text()) == card


def test_serve_web_prints_its_address_and_serves_the_app(app, tmp_path):
    import re
    import signal
    import urllib.request

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "tfxai", "serve", "--web", app.folder, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        first = proc.stdout.readline()  # printed once the socket listens
        url = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert url, first
        with urllib.request.urlopen(url.group(0), timeout=10) as response:
            assert "<title>tfxai" in response.read().decode()
            assert "'wasm-unsafe-eval'" in response.headers["Content-Security-Policy"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert "stopped" in proc.stdout.read()


def test_export_refuses_to_replace_the_current_directory(app, tmp_path, monkeypatch):
    from tfxai.compress.web import export_web
    from tfxai.errors import OutputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="current directory"):
        export_web(app.model_path, str(tmp_path), clf=app.clf)


@pytest.mark.parametrize("mode", ["pad", "squash", "crop"])
def test_page_resizes_to_the_bit_as_tfxai_when_shrinking_enlarging_or_both(driver, site, mode):
    """PNG (decoded alike everywhere): the page's model input equals tfxai.data.resize_image's exactly,
    OpenCV's INTER_AREA included: its area table for a shrink, its fixed-point bilinear for an enlargement."""
    import cv2

    from tfxai.data import resize_image

    open_app(driver, site.url)
    rng = np.random.default_rng(0)
    for h, w, size in ((1416, 1776, 128), (257, 129, 64), (30, 40, 48), (10, 90, 48), (300, 40, 128), (33, 33, 48)):
        image = cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (3, 3), 0)
        page = _file_in_page(driver, cv2.imencode(".png", image)[1].tobytes(), "x.png", size, mode)
        want = resize_image(image[..., None], size, mode)[0][..., 0]
        np.testing.assert_array_equal(np.reshape(page["pixels"], (size, size)), want, err_msg=f"{h}x{w} -> {size}")


def test_the_default_recipe_exported_for_the_web_classifies_real_films_and_keeps_working_offline(
        driver, web_runtime, files, tmp_path):
    """Issue 21's path as a user walks it: the default recipe (its architecture, input size,
    preprocessing, guard and threshold policy; one epoch on synthetic X-rays), `tfxai export
    --target web`, the folder served on loopback, real native-resolution films (synthetic ones
    without ../shared/data) matched against Python, then the same with the server stopped."""
    from conftest import SHARED_DATA

    from tfxai.classifier import load_classifier
    from tfxai.cli import main
    from tfxai.serve.site import create_site
    from tfxai.synthetic import write_synthetic_dataset
    from tfxai.training import train
    from tfxai.training.recipes import DEFAULT_RECIPE, get_recipe

    root = str(tmp_path / "chest_xray")
    write_synthetic_dataset(root, {"train": 96, "val": 48, "test": 8}, image_size=72, seed=1)
    config = get_recipe(DEFAULT_RECIPE).train_config(root, output_dir=str(tmp_path / "run"), epochs=1,
                                                     cache_dir=None, verbose=0)
    model_path = train(config).model_path
    folder = str(tmp_path / "app")
    assert main(["export", "--checkpoint", model_path, "--target", "web", "--output-dir", folder]) == 0
    default = SimpleNamespace(clf=load_classifier(model_path), folder=folder, model_path=model_path)
    assert default.clf.facts["arguments"]["recipe"] == DEFAULT_RECIPE and default.clf.image_size == config.image_size
    films = sorted(SHARED_DATA.glob("chest_xray_original/val/*/*.jpeg"))[::4]
    paths = [str(f) for f in films] or files.good[:3]
    server = ServerThread(create_site(folder))
    try:
        assert "error" not in open_app(driver, server.url)
        assert wait_installed(driver)["state"] == "installed"
        online = classify(driver, paths)
    finally:
        server.stop()
    assert_matches_python(default, online, paths)
    assert all(result["heatmap"] is not None for result in online.values())
    assert reload_page(driver) is True
    offline = classify(driver, paths)
    for name, result in online.items():
        assert offline[name]["scores"] == result["scores"] and offline[name]["label"] == result["label"]
