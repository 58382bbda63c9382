"""Benchmark ``tfxai export --target web``: what a phone downloads, and the app's speed in headless
Chromium against Python's LiteRT on the same machine, in one process.

1. Export the web app of ``--checkpoint``, or (default) of the default recipe's model built
   untrained (custom_cnn width 16, depth 4, 128 px grey, in-model equalisation: the weights do not
   change the time), with a scores-only float32 ``.tflite`` beside it for comparison.
2. Bytes a browser downloads to install the app (raw and gzipped), for each LiteRT.js build.
3. In Chromium (Debian's chromium + chromedriver, a loopback server, a fresh profile): the time to
   load the runtime and to load and compile the model, on ``--loads`` cold page loads (new profile)
   and as many warm reloads; ms per image for the model alone (scores only, and scores + Grad-CAM,
   median of ``--runs`` calls on one input) and for the whole page pipeline on each of ``--images``
   (decode, grey, area resize, model + Grad-CAM, OOD guard); the same with the phone profile (CPU
   slowed four times, a 360 px viewport).
4. The same model files under ``ai_edge_litert`` in this process (one thread, as the browser's
   WebAssembly build, and its default), and tfxai's own decode + resize of the same images.
5. Agreement on ``--images``: the page's model input against ``tfxai.data`` (the model's own size
   and resize mode, and 128 px pad / 224 px pad / 128 px squash / 128 px crop): pixels that
   differ and the largest difference; the page's labels and probabilities against ``tfxai predict``.

Prints Markdown tables with ratios to the Python baseline (and writes ``--output`` JSON when
given). Example::

    python scripts/benchmark_web.py --images chest_xray/val/PNEUMONIA --output-dir runs/benchmark_web
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a trained .keras model (default: the default recipe's model, untrained)")
    p.add_argument("--images", help="a folder of X-rays (JPEG/PNG) timed through the page (default: "
                                    "synthetic films of 1776 x 1416 px)")
    p.add_argument("--max-images", type=int, default=8, help="images taken from --images (default 8)")
    p.add_argument("--runs", type=int, default=30, help="model calls per median (default 30)")
    p.add_argument("--loads", type=int, default=3, help="cold page loads, each with a new profile (default 3)")
    p.add_argument("--output-dir", default=os.path.join("runs", "benchmark_web"), help="where the app goes")
    p.add_argument("--output", help="also write the numbers to this JSON file")
    return p


def default_model(folder: str) -> str:
    """The default recipe's architecture, untrained, saved with facts (threshold 0.5, pad)."""
    from tfxai.classifier import model_facts
    from tfxai.io.model_files import save_model
    from tfxai.models import build_model

    model = build_model("custom_cnn", (128, 128, 1), 2, width=16, depth=4, preprocessing="equalize")
    path = os.path.join(folder, "default_untrained.keras")
    save_model(model, path, model_facts(["NORMAL", "PNEUMONIA"], 128, 1, "pad", 0.5,
                                        model_type="custom_cnn", trained="untrained (benchmark)"))
    return path


def image_files(args, folder: str) -> list[str]:
    if args.images:
        root = Path(args.images)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return [str(p) for p in files[:args.max_images]]
    import cv2
    from tfxai.synthetic import make_synthetic_xrays

    out = []
    for i, img in enumerate(make_synthetic_xrays(args.max_images, 256, seed=0).images):
        path = os.path.join(folder, f"synthetic_film_{i}.jpeg")
        cv2.imwrite(path, cv2.resize(img, (1776, 1416), interpolation=cv2.INTER_CUBIC))
        out.append(path)
    return out


# ----------------------------------------------------------------------------- Python baseline
def python_baseline(app: str, scores_only: str, files: list[str], runs: int, size: int, mode: str) -> dict:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from tfxai.data import decode_image, resize_image

    def median_ms(fn, n):
        fn()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    x = resize_image(decode_image(files[0], 1), size, mode)[0].astype(np.float32)[None]
    out = {}
    for threads, label in ((1, "1 thread"), (None, "default threads")):
        for name, path in (("scores", scores_only), ("gradcam", os.path.join(app, "model.tflite"))):
            interp = Interpreter(model_path=path, num_threads=threads)
            runner = interp.get_signature_runner() if name == "gradcam" else None
            if runner is None:
                interp.allocate_tensors()
                index = interp.get_input_details()[0]["index"]

                def call(interp=interp, index=index):
                    interp.set_tensor(index, x)
                    interp.invoke()
            else:
                def call(runner=runner):
                    runner(image=x)
            out[f"{name} ({label})"] = median_ms(call, runs)
    out["decode + resize (tfxai.data)"] = statistics.median(
        median_ms(lambda f=f: resize_image(decode_image(f, 1), size, mode), 3) for f in files)
    t0 = time.perf_counter()
    Interpreter(model_path=os.path.join(app, "model.tflite")).get_signature_runner()
    out["load model"] = (time.perf_counter() - t0) * 1000
    return out


# ----------------------------------------------------------------------------- the browser
def chromium(profile: str, phone: bool = False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if phone:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": 360, "height": 740,
                                                                              "pixelRatio": 3.0, "touch": True}})
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(600)
    if phone:
        driver.execute_cdp_cmd("Emulation.setCPUThrottlingRate", {"rate": 4})
    return driver


READY = ("const done = arguments[arguments.length - 1];"
         "const wait = () => window.tfxai && window.tfxai.ready ? window.tfxai.ready.then("
         "() => done(window.tfxai.timings), (e) => done({error: String(e)})) : setTimeout(wait, 20); wait();")

# Model calls on one prepared input: the app's file (scores + Grad-CAM) and the scores-only file.
MODEL_TIMES = """
const [runs, done] = arguments;
(async () => {
  const lite = await import('./runtime/litert/index.js');
  const engine = window.tfxai.engine, size = engine.size;
  const input = new Uint8Array(size * size * engine.channels).map((_, i) => (i * 7) % 256);
  const scoresOnly = await lite.loadAndCompile('bench/scores_only.tflite', {accelerator: 'wasm'});
  const time = async (call) => {
    await call();
    const ms = [];
    for (let i = 0; i < runs; i++) { const t0 = performance.now(); await call(); ms.push(performance.now() - t0); }
    ms.sort((a, b) => a - b);
    return ms[Math.floor(ms.length / 2)];
  };
  const gradcam = await time(() => engine.run(input));
  const scores = await time(async () => {
    const x = new Float32Array(input);
    const t = new lite.Tensor(x, [1, size, size, engine.channels]);
    const out = await scoresOnly.run(t);
    t.delete();
    out[0].toTypedArray();
    out.forEach((o) => o.delete());
  });
  done({gradcam, scores});
})().catch((e) => done({error: String(e)}));
"""

PREPARE = """
const [b64, name, size, mode, done] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
window.tfxai.prepare(new File([bytes], name), size, mode).then((r) => done(r.pixels), (e) => done({error: e.message}));
"""

RESULT = """
const [b64, name, done] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
window.tfxai.engine.classify(new File([bytes], name)).then((r) => done({label: r.label, scores: r.scores}),
  (e) => done({error: e.message}));
"""

PIPELINE = """
const [b64, name, done] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
window.tfxai.engine.classify(new File([bytes], name)).then((r) => done(r.ms), (e) => done({error: e.message}));
"""


def agreement(url: str, files: list[str], clf) -> dict:
    """The page's preprocessing and labels against tfxai's on ``files`` (see the module docstring)."""
    import numpy as np
    from tfxai.data import decode_image, resize_image
    from tfxai.predict import predict_files

    modes = {(clf.image_size, clf.resize_mode), (128, "pad"), (224, "pad"), (128, "squash"), (128, "crop")}
    differing, largest, pixels = 0, 0, 0
    preds = {p.path: p for p in predict_files(clf, files, gradcam=False, progress=False)[0]}
    same_label, prob_diff = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="tfxai-bench-profile-") as profile:
        driver = chromium(profile)
        try:
            driver.get(url + "/")
            driver.execute_async_script(READY)
            for f in files:
                data = base64.b64encode(Path(f).read_bytes()).decode()
                grey = decode_image(f, 1)
                for size, mode in sorted(modes):
                    page = driver.execute_async_script(PREPARE, data, os.path.basename(f), size, mode)
                    diff = np.abs(np.reshape(page, (size, size)).astype(int) - resize_image(grey, size, mode)[0][..., 0])
                    differing, largest, pixels = differing + int((diff > 0).sum()), max(largest, int(diff.max())), pixels + diff.size
                result = driver.execute_async_script(RESULT, data, os.path.basename(f))
                same_label += result["label"] == preds[f].label
                prob_diff = max(prob_diff, float(np.abs(np.asarray(result["scores"]) - preds[f].proba).max()))
        finally:
            driver.quit()
    return {"images": len(files), "pixels_compared": pixels, "pixels_differing": differing, "largest_difference": largest,
            "same_label": same_label, "max_probability_difference": prob_diff}


def browser_numbers(url: str, files: list[str], runs: int, loads: int, phone: bool = False) -> dict:
    cold, warm = [], []
    pipeline = []
    models = None
    for i in range(loads):
        with tempfile.TemporaryDirectory(prefix="tfxai-bench-profile-") as profile:
            driver = chromium(profile, phone)
            try:
                driver.get(url + "/")
                cold.append(driver.execute_async_script(READY))
                driver.refresh()
                warm.append(driver.execute_async_script(READY))
                if i == 0:
                    models = driver.execute_async_script(MODEL_TIMES, runs)
                    for f in files:
                        data = base64.b64encode(Path(f).read_bytes()).decode()
                        driver.execute_async_script(PIPELINE, data, os.path.basename(f))  # warm-up
                        pipeline.append(driver.execute_async_script(PIPELINE, data, os.path.basename(f)))
            finally:
                driver.quit()
    for t in cold + warm + pipeline + [models]:
        if "error" in t:
            raise RuntimeError(f"the page failed: {t['error']}")
    med = statistics.median
    return {"cold_runtime_ms": med(t["runtimeMs"] for t in cold), "cold_model_ms": med(t["modelMs"] for t in cold),
            "warm_runtime_ms": med(t["runtimeMs"] for t in warm), "warm_model_ms": med(t["modelMs"] for t in warm),
            "model_scores_ms": models["scores"], "model_gradcam_ms": models["gradcam"],
            **{f"pipeline_{k}_ms": med(p[k] for p in pipeline) for k in ("decode", "preprocess", "model", "total")}}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tfxai._keras import keras
    from tfxai.classifier import load_classifier
    from tfxai.compress.tflite import convert_tflite
    from tfxai.compress.web import download_sizes, export_web
    from served import served
    from tfxai.serve.site import create_site

    work = os.path.abspath(args.output_dir)
    bench = os.path.join(work, "bench")
    os.makedirs(bench, exist_ok=True)
    checkpoint = args.checkpoint or default_model(bench)
    what = args.checkpoint or "default recipe's model, untrained (custom_cnn width 16 depth 4, 128 px, equalize)"
    clf = load_classifier(checkpoint)
    t0 = time.perf_counter()
    export = export_web(checkpoint, os.path.join(work, "app"), clf=clf)
    export_s = time.perf_counter() - t0
    scores_only = os.path.join(bench, "scores_only.tflite")
    image = keras.Input(clf.model.input_shape[1:], batch_size=1, name="image")  # LiteRT.js needs a fixed batch
    Path(scores_only).write_bytes(convert_tflite(keras.Model(image, clf.model(image)), "float32"))
    files = image_files(args, bench)
    sizes = download_sizes(export.folder)

    with served(create_site(export.folder, extra=(("/bench", bench),))) as url:
        desktop = browser_numbers(url, files, args.runs, args.loads)
        phone = browser_numbers(url, files, args.runs, 1, phone=True)
        agree = agreement(url, files, clf)
    python = python_baseline(export.folder, scores_only, files, args.runs, clf.image_size, clf.resize_mode)

    mb = 1e6
    print(f"model: {what}; {len(files)} image(s): {args.images or 'synthetic 1776 x 1416 JPEG films'}; export {export_s:.1f} s")
    print(f"model.tflite (scores + Grad-CAM + features) {os.path.getsize(os.path.join(export.folder, 'model.tflite')) / mb:.2f} MB, "
          f"scores only {os.path.getsize(scores_only) / mb:.2f} MB\n")
    print("| a browser downloads once | raw MB | gzip MB |\n|---|---|---|")
    for variant, label in (("simd", "with relaxed SIMD (Chrome/Edge 114+)"), ("compat", "without (older browsers)")):
        print(f"| the app, LiteRT.js build {label} | {sizes[variant]['raw'] / mb:.2f} | {sizes[variant]['gzip'] / mb:.2f} |")
    print("\n| what | browser (desktop) | browser (phone profile, CPU / 4) | Python LiteRT, 1 thread | browser / Python |")
    print("|---|---|---|---|---|")
    rows = [("load the runtime, first visit (ms)", "cold_runtime_ms", None),
            ("load the runtime, next visits (ms)", "warm_runtime_ms", None),
            ("load + compile the model, first visit (ms; Python: interpreter + allocation)", "cold_model_ms", "load model"),
            ("load + compile the model, next visits (ms)", "warm_model_ms", "load model"),
            ("model, scores only (ms / image)", "model_scores_ms", "scores (1 thread)"),
            ("model, scores + Grad-CAM (ms / image)", "model_gradcam_ms", "gradcam (1 thread)"),
            ("decode + grey + area resize of a film (ms)", "pipeline_decode_ms", None),
            ("whole page pipeline per film (ms)", "pipeline_total_ms", None)]
    for label, key, base in rows:
        b = python.get(base) if base else None
        if key == "pipeline_decode_ms":
            value = desktop["pipeline_decode_ms"] + desktop["pipeline_preprocess_ms"]
            phone_value = phone["pipeline_decode_ms"] + phone["pipeline_preprocess_ms"]
            b = python["decode + resize (tfxai.data)"]
        else:
            value, phone_value = desktop[key], phone[key]
        ratio = f"{value / b:.1f}x" if b else ""
        print(f"| {label} | {value:.1f} | {phone_value:.1f} | {'' if b is None else f'{b:.1f}'} | {ratio} |")
    print(f"\nthe page against tfxai on {agree['images']} image(s): model inputs differ in {agree['pixels_differing']} of "
          f"{agree['pixels_compared']} pixels (largest difference {agree['largest_difference']} grey levels); "
          f"labels equal tfxai predict's on {agree['same_label']} of {agree['images']}, largest probability "
          f"difference {agree['max_probability_difference']:.1e}")
    print("Python LiteRT with its default threads: "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in python.items() if "default" in k))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"model": what, "images": files, "sizes": sizes, "desktop": desktop, "phone": phone,
                       "python": python, "export_s": export_s, "agreement": agree}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
