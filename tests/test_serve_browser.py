"""The ``tfxai serve`` page driven in a real headless Chromium (Debian's chromium + chromium-driver,
through Selenium; nothing downloads a browser). Without them the tests skip, naming the packages;
under CI=true they fail instead (``make test`` installs them when it runs as root)."""
from __future__ import annotations

import base64
import csv
import os
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from serve_helpers import ServerThread, enlarged_png, expected_predictions, running_engine

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT = 60  # seconds for anything on the page


def _find(candidates, name):
    return next((p for p in candidates if os.path.exists(p)), None) or shutil.which(name)


@pytest.fixture(scope="module")
def browser_paths():
    chromium, driver = _find(CHROMIUM, "chromium"), _find(CHROMEDRIVER, "chromedriver")
    missing = [pkg for pkg, path in (("chromium", chromium), ("chromium-driver", driver)) if not path]
    if missing:
        message = (f"the browser test needs the Debian packages {' and '.join(missing)} "
                   f"(apt-get install chromium chromium-driver; make test installs them when run as root)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " -- missing under CI=true")
        pytest.skip(message)
    pytest.importorskip("selenium", reason="pip install selenium (requirements.txt)")
    return chromium, driver


@pytest.fixture(scope="module")
def site(trained_run):
    """The app on a free loopback port, in a thread (tiny synthetic custom_cnn, 32 px)."""
    from tfxai.serve.app import create_app

    with running_engine(trained_run.model_path) as (clf, engine, jobs):
        server = ServerThread(create_app(engine, jobs))
        yield SimpleNamespace(url=server.url, clf=clf, engine=engine)
        server.stop()


@pytest.fixture(scope="module")
def driver(browser_paths, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in HEADLESS_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path: Selenium Manager (which may download) is never called.
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    drv.set_page_load_timeout(WAIT)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def files(synthetic_dir, tmp_path_factory):
    """Synthetic X-rays (one enlarged to 400 x 520 px), a corrupt file with a hostile name."""
    folder = tmp_path_factory.mktemp("uploads")
    tests = sorted(Path(synthetic_dir, "test").glob("*/*.png"))
    big = folder / "synthetic_xray.png"
    big.write_bytes(enlarged_png(str(tests[0]), 520, 400))
    hostile = folder / '<img src=x onerror=window.__xss=1>.png'
    hostile.write_bytes(b"this is not an image\n" * 10)
    return SimpleNamespace(big=str(big), batch=[str(p) for p in tests[:6]], hostile=str(hostile))


def open_page(driver, site):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(site.url + "/")
    WebDriverWait(driver, WAIT).until(lambda d: d.find_element("id", "facts").text.strip())


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception as err:  # noqa: BLE001 - re-raised with what we waited for and the page's errors
        errors = driver.find_element("id", "errors").text
        raise AssertionError(f"timed out waiting for {what}; errors shown: {errors!r}") from err


def upload(driver, *paths: str) -> None:
    driver.find_element("id", "file-input").send_keys("\n".join(paths))


def detail_shown_for(driver, name: str) -> bool:
    return (driver.find_element("id", "detail-name").text == name
            and driver.execute_script("const i = document.getElementById('overlay-img');"
                                      "return i.complete && i.naturalWidth > 0;"))


def img_size(driver, element_id: str) -> tuple[int, int]:
    return tuple(driver.execute_script(
        f"const i = document.getElementById('{element_id}'); return [i.naturalHeight, i.naturalWidth];"))


def pct(p: float) -> str:
    return f"{100 * p:.1f} %"


def test_page_shows_model_facts_and_the_intended_use_warning(driver, site):
    open_page(driver, site)
    facts = driver.find_element("id", "facts").text
    clf = site.clf
    assert "NORMAL, PNEUMONIA" in facts and f"{clf.threshold:.3f}" in facts
    assert f"{clf.image_size} × {clf.image_size} px" in facts
    assert f"ROC-AUC {clf.facts['val_metrics']['roc_auc']:.3f}" in facts and clf.facts["trained"] in facts
    warning = driver.find_element("id", "intended-use")
    assert warning.is_displayed() and "not a diagnosis" in warning.text
    driver.find_element("css selector", "#model-card summary").click()  # the collapsible model card
    wait_for(driver, lambda d: "Out of scope uses" in d.find_element("id", "card-body").text, "the model card")
    card = driver.find_element("id", "card-body").text
    assert "Mitchell et al. 2019" in driver.find_element("id", "card-status").text
    assert "Limitations" in card and "Class counts" in card and "False alarm rate on validation" in card
    origins = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin);")
    assert origins and set(origins) == {site.url}  # the script, style and API: nothing from elsewhere


def test_synthetic_xray_upload_shows_class_probability_and_overlay(driver, site, files, tmp_path):
    open_page(driver, site)
    upload(driver, files.big)
    wait_for(driver, lambda d: detail_shown_for(d, "synthetic_xray.png"), "the detail of synthetic_xray.png")
    label, proba = expected_predictions(site.clf, [files.big])["synthetic_xray.png"]
    k = site.clf.class_names.index(label)
    assert driver.find_element("id", "detail-label").text == label
    assert driver.find_element("id", "detail-probability").text == pct(float(proba[k]))
    assert img_size(driver, "overlay-img") == (520, 400)  # on the original-resolution image
    assert img_size(driver, "original-img") == (520, 400)
    assert f"Grad-CAM for {label}" in driver.find_element("id", "overlay-caption").text
    facts = driver.find_element("id", "detail-facts").text
    assert f"{site.clf.threshold:.3f}" in facts and ("above it" in facts or "below it" in facts)
    assert "no temperature" in facts  # this model is not calibrated, and the page says so
    shot = tmp_path / "serve_synthetic.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_real_xray_upload_shows_class_probability_and_overlay(driver, site, shared_data, tmp_path):
    real = sorted((shared_data / "chest_xray_original" / "val" / "PNEUMONIA").glob("*.jpeg"))[0]
    open_page(driver, site)
    upload(driver, str(real))
    wait_for(driver, lambda d: detail_shown_for(d, real.name), f"the detail of {real.name}")
    label, proba = expected_predictions(site.clf, [str(real)])[real.name]
    assert driver.find_element("id", "detail-label").text == label
    k = site.clf.class_names.index(label)
    assert driver.find_element("id", "detail-probability").text == pct(float(proba[k]))
    import cv2

    h, w = cv2.imread(str(real), cv2.IMREAD_GRAYSCALE).shape
    assert img_size(driver, "overlay-img") == (h, w)  # the real X-ray's own resolution (under 2048 px)
    assert driver.save_screenshot(str(tmp_path / "serve_real.png"))


def test_corrupt_file_with_a_hostile_name_gets_a_clear_message_and_the_page_keeps_working(driver, site, files):
    open_page(driver, site)
    upload(driver, files.hostile)
    name = os.path.basename(files.hostile)
    wait_for(driver, lambda d: "not a readable image" in d.find_element("id", "errors").text, "the error message")
    message = driver.find_element("id", "errors").text
    assert name in message  # shown as text, escaped
    assert driver.execute_script("return window.__xss === undefined && "
                                 "document.querySelectorAll('img[src=\"x\"]').length === 0;")
    row = driver.find_element("css selector", "#worklist tbody tr.error")
    assert name in row.text and "not a readable image" in row.text
    upload(driver, files.big)
    wait_for(driver, lambda d: detail_shown_for(d, "synthetic_xray.png"), "a good upload after the bad one")


def test_several_files_give_a_worklist_sorted_by_probability_with_the_uncertain_band_and_a_csv(
        driver, site, files, tmp_path):
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    open_page(driver, site)
    upload(driver, *files.batch)
    n = len(files.batch)
    wait_for(driver, lambda d: d.find_element("id", "progress-text").text == f"{n} of {n} images processed",
             "the batch progress to finish")
    want = expected_predictions(site.clf, files.batch)
    rows = driver.find_elements("css selector", "#worklist tbody tr")
    names = [r.get_attribute("data-name") for r in rows]
    order = sorted(want, key=lambda k: -float(want[k][1][1]))
    assert names == order
    thr, band = site.clf.threshold, 0.1
    for row, name in zip(rows, names):
        p = float(want[name][1][1])
        assert ("uncertain" in row.get_attribute("class").split()) == (abs(p - thr) <= band), name
        assert pct(p) in row.text
    wait_for(driver, lambda d: detail_shown_for(d, order[0]), "the top of the worklist in detail")
    driver.find_element("id", "csv-button").click()
    target = tmp_path / "tfxai_predictions.csv"
    wait_for(driver, lambda d: target.exists() and target.stat().st_size > 0, "the CSV download")
    table = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [t["file"] for t in table] == order
    assert [t["label"] for t in table] == [want[k][0] for k in order]


def test_a_dropped_file_is_processed(driver, site, files):
    open_page(driver, site)
    data = base64.b64encode(Path(files.big).read_bytes()).decode()
    driver.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'dropped_xray.png', {type: 'image/png'}));
        const zone = document.getElementById('drop-zone');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    """, data)
    wait_for(driver, lambda d: detail_shown_for(d, "dropped_xray.png"), "the dropped file's detail")
    assert img_size(driver, "overlay-img") == (520, 400)


def test_explanation_methods_appear_side_by_side_with_deletion_and_insertion_scores(driver, site, files, tmp_path):
    open_page(driver, site)
    upload(driver, files.big)
    wait_for(driver, lambda d: detail_shown_for(d, "synthetic_xray.png"), "the detail")
    start = time.monotonic()
    driver.find_element("id", "explain-button").click()
    wait_for(driver, lambda d: d.find_element("id", "explain-text").text.startswith("done"), "the explanations")
    figures = driver.find_elements("css selector", "#methods figure.method")
    assert [f.get_attribute("data-method") for f in figures] == ["gradcam", "gradcam++", "faster-scorecam", "lime"]
    for f in figures:
        scores = re.search(r"deletion (\d\.\d{3}) · insertion (\d\.\d{3})", f.text)
        assert scores, f.text
        assert 0 <= float(scores.group(1)) <= 1 and 0 <= float(scores.group(2)) <= 1
        assert driver.execute_script("return arguments[0].querySelector('img').naturalWidth;", f) == 400
    assert time.monotonic() - start < WAIT
    driver.execute_script("document.getElementById('explain-button').scrollIntoView();")
    assert driver.save_screenshot(str(tmp_path / "serve_methods.png"))
