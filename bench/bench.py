"""Benchmark retrain against a bare TensorFlow pass, side by side, and print a markdown table.

Every step runs in its own child process so that wall time and peak RSS (os.wait4's rusage of that
child) are its own:
  bare      import tensorflow + tensorflow_hub, hub.KerasLayer(module), one forward pass over the
            training images (retrain.images.preprocess decode + resize, batches of 64): the floor any tool pays
  cold      python -m retrain --images TRAIN --output OUT --cache-dir EMPTY
  warm      the same cache folder again, a new output
  no-cache  python -m retrain --no-cache --epochs 5 (the backbone in every epoch, make_image_classifier's way)
  litert/tf extraction alone with each engine (images/s, features kept to compare)
then the test accuracy of each trained model (`python -m retrain evaluate`, the exported serving signature).
Usage: python bench/bench.py --train TRAIN --test TEST [--large TRAIN_60K] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODULE = "efficientnet_lite0"
MAX_PIXELS = 50_000_000


def child(function: str, *args: str) -> list[str]:
    """argv of a child process running one of this file's functions with sys.argv[2:] = args."""
    return [sys.executable, str(Path(__file__).resolve()), f"--child={function}", *args]


def measure(name: str, argv: list[str], work: Path, env: dict) -> dict:
    """Run argv; its wall seconds, peak RSS (MB) and the JSON of its last stdout line if there is one."""
    log = work / f"{name}.log"
    with open(log, "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=out, env=env, cwd=ROOT, text=True)
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.write(stdout)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    # The 1-minute load average after the step: above ~2 on 2 cores, someone else was running too.
    # CPU seconds suffer less than wall time when other processes share the cores.
    result.update(step=name, wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024,
                  load=os.getloadavg()[0])  # ru_maxrss is in KiB on Linux
    if process.returncode != 0:  # keep going: one broken step should not cost the other measurements
        result["failed"] = f"exit code {process.returncode}, see {log}"
        print(f"{name} FAILED: {result['failed']}", file=sys.stderr, flush=True)
    print(f"{name}: {wall:.1f} s, CPU {result['cpu']:.1f} s, peak RSS {result['rss_mb']:.0f} MB, "
          f"load {result['load']:.1f}", file=sys.stderr, flush=True)
    return result


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})


def bare_pass() -> None:
    """Child: the bare TensorFlow forward pass over the images in argv[3] with the module at argv[2]."""
    import tensorflow as tf
    import tensorflow_hub as hub

    from retrain.images import preprocess

    layer = hub.KerasLayer(sys.argv[2], trainable=False)
    decode = tf.function(lambda b: preprocess.decode_batch(b, 224, MAX_PIXELS),
                         input_signature=[tf.TensorSpec([None], tf.string)])
    paths, start = list_images(Path(sys.argv[3])), time.perf_counter()
    for i in range(0, len(paths), 64):
        layer(decode(tf.constant([p.read_bytes() for p in paths[i:i + 64]])), training=False).numpy()
    print(json.dumps({"images": len(paths), "pass_s": time.perf_counter() - start}))


def setup() -> None:
    """Child: build the bundled module (once per module folder); print its path."""
    from retrain.backbone import resolve

    start = time.perf_counter()
    info = resolve.load_info(MODULE)
    print(json.dumps({"path": info.path, "build_s": time.perf_counter() - start}))


def engine_pass() -> None:
    """Child: extract features of argv[3] with engine argv[2] (no cache) and save them to argv[4]."""
    from retrain.backbone import engines, resolve
    from retrain.features import extraction

    info = resolve.load_info(MODULE)
    engine, paths, start = sys.argv[2], list_images(Path(sys.argv[3])), time.perf_counter()
    convert_s = None
    if engine == "litert" and not engines.litert_path(info.fingerprint, 224).exists():
        engines.convert(info.path, 224, engines.litert_path(info.fingerprint, 224))
        convert_s, start = time.perf_counter() - start, time.perf_counter()
    result = extraction.extract(extraction.Extractor(module=info, image_size=224, engine=engine, cache_dir=None,
                                                     batch_size=64, max_pixels=MAX_PIXELS,
                                                     workdir=Path(sys.argv[4]).parent), paths)
    seconds = time.perf_counter() - start
    np.save(sys.argv[4], result.matrix.read(np.arange(len(paths))))
    print(json.dumps({"images": len(paths), "images_per_s": len(paths) / seconds, "convert_s": convert_s}))


def retrain_run(name: str, train: Path, work: Path, env: dict, *flags: str) -> dict:
    """Measure one `python -m retrain` run writing to work/<name>."""
    shutil.rmtree(work / name, ignore_errors=True)
    argv = [sys.executable, "-m", "retrain", "--images", str(train), "--output", str(work / name), *flags]
    return measure(name, argv, work, env)


def accuracy(run_dir: Path, test: Path, env: dict) -> float | None:
    """Test accuracy through the exported serving signature (`retrain evaluate`); None if it fails."""
    argv = [sys.executable, "-m", "retrain", "evaluate", str(run_dir), "--images", str(test), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        print(f"evaluate {run_dir} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["accuracy"]


def run_all(args: argparse.Namespace, env: dict) -> dict:
    """Every step once, in an order where each finds what it needs (module built, then converted)."""
    work, train, test = args.work, args.train, args.test
    shutil.rmtree(work / "cache", ignore_errors=True)
    r = {"setup": measure("setup", child("setup"), work, env)}
    r["bare"] = measure("bare", child("bare_pass", r["setup"]["path"], str(train)), work, env)
    for engine in ("litert", "tf"):
        r[engine] = measure(engine, child("engine_pass", engine, str(train), str(work / f"{engine}.npy")), work, env)
    if not (r["litert"].get("failed") or r["tf"].get("failed")):
        r["diff"] = float(np.abs(np.load(work / "litert.npy") - np.load(work / "tf.npy")).max())
    r["cold"] = retrain_run("cold", train, work, env, "--cache-dir", str(work / "cache"))
    r["warm"] = retrain_run("warm", train, work, env, "--cache-dir", str(work / "cache"))
    if "no-cache" not in args.skip:
        r["no-cache"] = retrain_run("no-cache", train, work, env, "--no-cache", "--epochs", "5")
    if args.large:
        shutil.rmtree(work / "cache-large", ignore_errors=True)
        r["cold-large"] = retrain_run("cold-large", args.large, work, env, "--cache-dir", str(work / "cache-large"))
        r["warm-large"] = retrain_run("warm-large", args.large, work, env, "--cache-dir", str(work / "cache-large"))
    for name in ("cold", "warm", "no-cache"):
        if name in r and not r[name].get("failed") and "accuracy" not in args.skip:
            r[name]["accuracy"] = accuracy(work / name, test, env)
            print(f"{name}: test accuracy {r[name]['accuracy']}", file=sys.stderr, flush=True)
    return r


def table(r: dict, n_train: int, n_large: int | None) -> str:
    """The markdown table: one row per step, times and memory relative to the bare pass."""
    bare = r["bare"]["wall"]
    rows = [("bare", f"bare TF pass over {n_train:,} images", r["bare"]),
            ("cold", "retrain, empty cache", r["cold"]), ("warm", "retrain, same cache", r["warm"]),
            ("no-cache", "retrain --no-cache --epochs 5", r.get("no-cache")),
            ("litert", "extraction, LiteRT", r["litert"]), ("tf", "extraction, TensorFlow", r["tf"])]
    if "cold-large" in r:
        rows += [("cold-large", f"retrain, empty cache, {n_large:,} images", r["cold-large"]),
                 ("warm-large", f"retrain, same cache, {n_large:,} images", r["warm-large"])]
    lines = ["| step | what | wall s | × bare | CPU s | × bare | peak RSS MB | images/s | test accuracy | load after |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, what, x in [row for row in rows if row[2] is not None]:
        speed = f"{x['images_per_s']:.0f}" if "images_per_s" in x else "failed" if x.get("failed") else ""
        acc = f"{x['accuracy']:.4f}" if x.get("accuracy") is not None else "failed" if x.get("failed") else ""
        cpu = f"{x['cpu']:.1f} | {x['cpu'] / r['bare']['cpu']:.2f}" if "cpu" in x else " | "
        lines.append(f"| {name} | {what} | {x['wall']:.1f} | {x['wall'] / bare:.2f} | {cpu} | {x['rss_mb']:.0f} "
                     f"| {speed} | {acc} | {x['load']:.1f} |")
    return "\n".join(lines)


def verdicts(r: dict) -> str:
    """The issue's targets, each with the measured value and whether it was met (or why not measured)."""
    ok = {name: x for name, x in r.items() if isinstance(x, dict) and not x.get("failed")}
    bare = lambda name: ok[name]["wall"] / ok["bare"]["wall"]  # noqa: E731
    checks = [("cold <= 0.75 x bare", lambda: bare("cold"), 0.75, "<="),
              ("warm <= 0.30 x bare", lambda: bare("warm"), 0.30, "<="),
              ("no-cache (5 epochs) / cold >= 4", lambda: ok["no-cache"]["wall"] / ok["cold"]["wall"], 4, ">="),
              ("cold accuracy - no-cache accuracy >= 0",
               lambda: ok["cold"]["accuracy"] - ok["no-cache"]["accuracy"], 0, ">="),
              ("LiteRT / TF images/s >= 1.8",
               lambda: ok["litert"]["images_per_s"] / ok["tf"]["images_per_s"], 1.8, ">="),
              ("LiteRT vs TF max abs feature difference <= 1e-4", lambda: r["diff"], 1e-4, "<="),
              ("test accuracy (cold) >= 0.90", lambda: ok["cold"]["accuracy"], 0.90, ">="),
              ("peak RSS MB <= 2500", lambda: max(x["rss_mb"] for x in ok.values()), 2500, "<="),
              ("peak RSS growth MB, 5k -> large set < 500", lambda: max(
                  ok["cold-large"]["rss_mb"] - ok["cold"]["rss_mb"], ok["warm-large"]["rss_mb"] - ok["warm"]["rss_mb"]),
               500, "<")]
    out = []
    for what, value, limit, op in checks:
        try:
            v = value()
        except (KeyError, TypeError):  # a step failed, was skipped or has no accuracy
            out.append(f"- {what}: not measured")
            continue
        met = {"<=": v <= limit, ">=": v >= limit, "<": v < limit}[op]
        out.append(f"- {what}: {v:.3g} — {'met' if met else 'NOT met'}")
    once = [f"{what} {ok[step][key]:.1f} s" for what, step, key in
            [("LiteRT conversion", "litert", "convert_s"), ("module build", "setup", "build_s")]
            if ok.get(step, {}).get(key) is not None]
    out.append(f"- one-time costs, kept with the module: {', '.join(once) or 'none measured'}")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("--child="):
        return {"setup": setup, "bare_pass": bare_pass, "engine_pass": engine_pass}[sys.argv[1][8:]]()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="image folder to train on (500 per class)")
    parser.add_argument("--test", type=Path, required=True, help="held-out labelled folder (t10k)")
    parser.add_argument("--large", type=Path, help="a larger training folder: cold and warm runs for RSS growth")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrain-bench"))
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--skip", type=lambda v: set(v.split(",")), default=set(),
                        help="comma-separated steps to leave out: no-cache, accuracy (for a quick rerun)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    # A private module folder: the one-time build and LiteRT conversion are measured, not inherited.
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               RETRAIN_MODULE_DIR=str(args.work / "modules"), RETRAIN_CACHE_HOME=str(args.work / "cache-home"))
    shutil.rmtree(args.work / "modules" / "litert", ignore_errors=True)
    results = run_all(args, env)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    n_large = len(list_images(args.large)) if args.large else None
    print(table(results, results["bare"]["images"], n_large))
    print()
    print(verdicts(results))


if __name__ == "__main__":
    main()
