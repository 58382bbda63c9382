"""LiteRT.js, the in-browser runtime of ``tfxai export --target web``: where ``make install`` put it
(:func:`find_runtime`) and its copy into the app folder (:func:`copy_runtime`)."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import TfxaiError

RUNTIME_PACKAGE, RUNTIME_VERSION = "@litertjs/core", "2.5.3"  # pinned in web/package-lock.json
# The two CPU builds of LiteRT.js: with relaxed SIMD (Chrome 114+) or without ("compat"). The
# threaded build needs cross-origin isolation headers a plain static host does not send, and the
# JSPI build serves WebNN/WebGPU partitioning: neither is copied.
RUNTIME_VARIANTS = {"simd": "litert_wasm_internal", "compat": "litert_wasm_compat_internal"}
REPO_WEB_DIR = Path(__file__).resolve().parents[2] / "web"  # package.json + lock, node_modules after make install


@dataclass(frozen=True)
class Runtime:
    """Where LiteRT.js was installed (``make install``): ``core`` = .../@litertjs/core,
    ``utils`` = .../@litertjs/wasm-utils."""

    core: Path
    utils: Path


def find_runtime(node_modules: str | None = None) -> Runtime:
    """The installed LiteRT.js (``web/node_modules`` of this checkout, or ``$TFXAI_WEB_RUNTIME``,
    a ``node_modules`` folder). :class:`TfxaiError` in one line when it is missing or not the
    pinned version."""
    root = Path(node_modules or os.environ.get("TFXAI_WEB_RUNTIME") or REPO_WEB_DIR / "node_modules")
    core, utils = root / "@litertjs" / "core", root / "@litertjs" / "wasm-utils"
    needed = [core / "package.json", core / "dist" / "index.js", utils / "dist" / "index.js"]
    needed += [core / "wasm" / f"{stem}{ext}" for stem in RUNTIME_VARIANTS.values() for ext in (".js", ".wasm")]
    missing = [p for p in needed if not p.is_file()]
    if missing:
        raise TfxaiError(f"the in-browser runtime (LiteRT.js {RUNTIME_VERSION}) is not installed: {missing[0]} is "
                         f"missing; run `make install` (npm ci in web/) or set TFXAI_WEB_RUNTIME to a "
                         f"node_modules folder holding {RUNTIME_PACKAGE}")
    version = json.loads((core / "package.json").read_text()).get("version")
    if version != RUNTIME_VERSION:
        raise TfxaiError(f"{core} is {RUNTIME_PACKAGE} {version}, expected {RUNTIME_VERSION} "
                         f"(web/package-lock.json); run `make install`")
    return Runtime(core, utils)


def copy_runtime(runtime: Runtime, folder: str) -> list[str]:
    """Copy LiteRT.js into ``folder/runtime/litert``; returns the relative paths written.

    The ES module imports its helper by package name (``@litertjs/wasm-utils``), which a browser
    resolves only through an import map or a bundler: the copy imports it by relative path."""
    out = os.path.join(folder, "runtime", "litert")
    os.makedirs(os.path.join(out, "wasm"))
    index = (runtime.core / "dist" / "index.js").read_text(encoding="utf-8")
    spec = 'from "@litertjs/wasm-utils"'
    if index.count(spec) != 1:
        raise TfxaiError(f"{runtime.core / 'dist' / 'index.js'}: expected one import of @litertjs/wasm-utils, "
                         f"found {index.count(spec)}; is this {RUNTIME_PACKAGE} {RUNTIME_VERSION}?")
    with open(os.path.join(out, "index.js"), "w", encoding="utf-8") as f:
        f.write(index.replace(spec, 'from "./wasm-utils.js"'))
    shutil.copyfile(runtime.utils / "dist" / "index.js", os.path.join(out, "wasm-utils.js"))
    names = ["index.js", "wasm-utils.js"]
    for stem in RUNTIME_VARIANTS.values():
        for ext in (".js", ".wasm"):
            shutil.copyfile(runtime.core / "wasm" / f"{stem}{ext}", os.path.join(out, "wasm", f"{stem}{ext}"))
            names.append(f"wasm/{stem}{ext}")
    with open(os.path.join(out, "LICENSE.txt"), "w", encoding="utf-8") as f:
        f.write(f"{RUNTIME_PACKAGE} {RUNTIME_VERSION} and @litertjs/wasm-utils (LiteRT.js, Google LLC): "
                f"Apache License 2.0, https://www.apache.org/licenses/LICENSE-2.0\n"
                f"index.js imports ./wasm-utils.js instead of the package name '@litertjs/wasm-utils'; "
                f"nothing else is changed.\n")
    return [f"runtime/litert/{n}" for n in (*names, "LICENSE.txt")]
