"""``tfxai serve``: a local triage page and JSON API for a trained model (FastAPI + uvicorn), or
(``--web DIR``) the static web app that ``tfxai export --target web`` wrote, optionally over HTTPS."""
from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import time

from ..errors import TfxaiError
from . import _args

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# glibc gives threads their own malloc arenas (up to 8 per core), each keeping the memory freed in
# it; with uvicorn's, the decoding pool's and TensorFlow's threads a server's resident memory kept
# growing under load (+70 MB in 12 minutes of the README's soak). Two arenas keep it flat.
MALLOC_ARENAS = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    _args.add_checkpoint(p, help="the model to serve: best_model.keras (Grad-CAM and all methods) or a .tflite file",
                         required=False)
    p.add_argument("--web", metavar="DIR", help="instead of a model: serve the web app folder that `tfxai export "
                   "--target web` wrote, as static files (the model then runs in each visitor's browser)")
    p.add_argument("--https", action=argparse.BooleanOptionalAction, default=False,
                   help="--web over HTTPS with your own certificate (--cert, --key): browsers keep a web app for "
                        "offline use only over https or on localhost")
    p.add_argument("--cert", metavar="PEM", help="--https: the certificate (chain) file")
    p.add_argument("--key", metavar="PEM", help="--https: the certificate's private key file")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only). Another address, e.g. "
                        "0.0.0.0, lets phones and tablets on the network in; then a token is required (see --token)")
    p.add_argument("--port", type=_args.int_range(0, 65535), default=8000,
                   help="TCP port (default 8000; 0: any free port, printed at start-up)")
    p.add_argument("--token", default=os.environ.get("TFXAI_TOKEN") or None,
                   help="access token the API requires (Authorization: Bearer <token>); default $TFXAI_TOKEN. "
                        "With a --host other than loopback and no token, a random one is made and printed")
    p.add_argument("--no-token", action="store_true",
                   help="serve a non-loopback --host without a token (anyone on the network can use it)")
    p.add_argument("--max-upload-mb", type=_args.int_range(1, 4096), default=64,
                   help="largest upload per request, in MB (default 64; also capped by $TFXAI_MAX_FILE_MB); "
                        "pixels per image are capped by $TFXAI_MAX_PIXELS (default 50,000,000)")
    p.add_argument("--batch-size", dest="max_batch", type=_args.int_range(1, 256), default=16,
                   help="most images per model call; concurrent requests share calls (default 16)")
    p.add_argument("--uncertain-band", type=_args.float_range(0.0, 0.5), default=0.1,
                   help="highlight predictions whose probability is within this distance of the threshold "
                        "(default 0.1)")
    p.add_argument("--lime-samples", type=_args.int_range(10, 100000), default=1000,
                   help="LIME perturbations when the page compares explanation methods (default 1000)")
    _args.add_seed(p)
    _args.add_threshold(p)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access(host: str, token: str | None, no_token: bool = False) -> tuple[str | None, tuple[str, ...]]:
    """(token, Host headers to answer) for a server on ``host``: loopback answers only loopback
    names (a page on another site cannot reach it by DNS rebinding) and needs no token; any other
    address answers any Host and gets a random token unless one is given or ``no_token``. A given
    token is checked where it is used (:class:`tfxai.serve.engine.ServeSettings`)."""
    if _is_loopback(host):
        return token, tuple(dict.fromkeys((*LOOPBACK_HOSTS, host.strip("[]"))))
    if token is None and not no_token:
        token = secrets.token_urlsafe(18)
    return token, ("*",)


def _browser_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def cap_malloc_arenas(limit: int = MALLOC_ARENAS) -> bool:
    """Set glibc's M_ARENA_MAX for this process, unless $MALLOC_ARENA_MAX already does; call it
    before TensorFlow starts its threads. False where there is no glibc (macOS) or it refuses."""
    import ctypes
    import ctypes.util

    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, int(limit)))  # -8: M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        return False


def _run_web(args) -> int:
    from ..serve.app import bind_socket, serve_forever
    from ..serve.site import create_site

    tls = None
    if args.https:
        for flag, path in (("--cert", args.cert), ("--key", args.key)):
            if not path or not os.path.isfile(path):
                raise TfxaiError(f"--https needs {flag} naming an existing PEM file, got {path!r}")
        tls = {"ssl_certfile": args.cert, "ssl_keyfile": args.key}
    elif args.cert or args.key:
        raise TfxaiError("--cert/--key are for --https; add --https")
    _, allowed_hosts = access(args.host, None, no_token=True)
    app = create_site(args.web, allowed_hosts)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as err:
        raise TfxaiError(f"{err.strerror}; choose another --port (or --port 0 for any free one)") from None
    scheme = "https" if tls else "http"
    url = f"{scheme}://{_browser_host(args.host)}:{sock.getsockname()[1]}/"
    print(f"tfxai serve: the web app in {args.web} at {url} (static files; the model runs in the browser; Ctrl-C stops)")
    if not tls and not _is_loopback(args.host):
        print("note: over plain http another device gets the page but not the offline copy (browsers keep web apps "
              "offline only over https or on localhost): use --https with a certificate that device trusts; see "
              "'On a phone, offline' in the README")
    try:
        serve_forever(app, sock, tls=tls)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("tfxai serve: stopped")
    return 0


def run(args) -> int:
    cap_malloc_arenas()  # first: TensorFlow's threads start when the model is loaded
    from ..classifier import load_classifier

    if bool(args.web) == bool(args.checkpoint):
        raise TfxaiError("give either --checkpoint (a model served with its API) or --web (an exported web app folder)")
    if args.web:
        return _run_web(args)
    if args.https:
        raise TfxaiError("--https serves --web folders; for the model's API put an HTTPS reverse proxy in front")
    from ..serve.app import bind_socket, create_app, serve_forever
    from ..serve.engine import Engine, ServeSettings
    from ..serve.jobs import ExplainJobs

    token, allowed_hosts = access(args.host, args.token, args.no_token)
    # First: a bad setting (a short --token ...) stops here, before the port or the model is taken.
    settings = ServeSettings(max_batch=args.max_batch, uncertain_band=args.uncertain_band,
                             max_upload_mb=args.max_upload_mb, lime_samples=args.lime_samples, token=token,
                             allowed_hosts=allowed_hosts, seed=args.seed)
    loopback = _is_loopback(args.host)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as err:
        raise TfxaiError(f"{err.strerror}; choose another --port (or --port 0 for any free one)") from None
    t0 = time.perf_counter()
    clf = load_classifier(args.checkpoint, args.threshold, args.class_names)
    engine = Engine(clf, settings).start()
    jobs = None
    try:
        warm = engine.warm_up()
        jobs = ExplainJobs(engine)
        app = create_app(engine, jobs)
        port = sock.getsockname()[1]
        url = f"http://{_browser_host(args.host)}:{port}/"
        print(f"tfxai serve: {os.path.basename(args.checkpoint)} loaded and warmed up in "
              f"{time.perf_counter() - t0:.1f} s (warm-up {warm:.1f} s); classes {', '.join(clf.class_names)}, threshold {clf.threshold:.3f}"
              + ("" if clf.model is not None else "; no Grad-CAM for a .tflite model"))
        print(f"open {url}{'#token=' + token if token else ''} in a browser (Ctrl-C stops the server)")
        print(f"API: curl -F file=@xray.jpeg {url}api/predict"
              + (f" -H 'Authorization: Bearer {token}'" if token else "") + f"  (described at {url}api/openapi.json)")
        if not loopback:
            print(f"warning: listening on {args.host}: other computers on the network can reach this server. "
                  + ("Share the token only with the people who should use it; traffic is not encrypted "
                     "(put it behind an HTTPS reverse proxy for anything beyond a trusted network)." if token else
                     "--no-token: ANYONE on the network can use it."))
        print("Decision support only, not a diagnosis: a clinician must read every X-ray.", flush=True)
        try:
            serve_forever(app, sock)
        except KeyboardInterrupt:  # uvicorn shuts down on Ctrl-C, then re-raises it: a normal stop here
            pass
    finally:
        if jobs is not None:
            jobs.close()
        engine.close()
        sock.close()
    print("tfxai serve: stopped")
    return 0
