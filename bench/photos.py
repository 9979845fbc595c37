"""Phone photos: extraction speed, peak memory, serving latency and agreement with a proper downscale,
for the code at a `before` tree and this tree, in one run.

Two sets of pictures, both outside the repository:
  real    multi-megapixel photos from Debian's wallpaper packages `ukui-wallpapers` (3640-3840 x 2400
          JPEG and PNG) and `lomiri-wallpapers-16.04` / `lomiri-wallpapers-20.04` (Ubuntu wallpaper
          contest photos, 1.5-24 MP JPEG), fetched with `apt-get download` + `dpkg-deb -x` when missing
  phone   --count generated 4032 x 3024 JPEGs at quality 90 (~3 MB each): smooth colour shading, fine
          gratings (fabric-like detail of 3-12 px that aliases when sampled one pixel in eighteen) and
          Gaussian sensor noise, so their entropy is a photo's; four classes by their coarse structure
For each tree (PYTHONPATH):
  cold     python -m retrain --images PHONE --cache-dir EMPTY; wall, CPU, peak RSS of all its processes
  warm     the same again, every feature cached; extraction alone = cold's features stage minus warm's
  rounds   cold + warm --repeat times per tree, the trees' order alternating; the median round is reported
  serve    the median latency of one 12-MP JPEG through the exported serving_default (batch 1)
  agree    for every real photo >= 2 MP: the exported model's scores for the file's bytes
           (serving_default) against its scores through serving_images for the same photo decoded by
           Pillow, EXIF-transposed, alpha composited on white and resized with Pillow's antialiased
           bilinear filter: top-1 agreement and mean total-variation distance
Usage: python bench/photos.py --before /tmp/before [--work /tmp/retrain-photos] [--real /work/photos/real]
       (git worktree add /tmp/before 35a85fe gives the code before issue 17)
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["ukui-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"]
CLASSES = ["plain", "stripes", "checks", "rings"]
SIZE = 224
TARGETS = "speed-up >= 3, peak RSS <= 1500 MB, top-1 agreement >= 0.97, mean TV <= 0.03"


def phone_photo(seed: int, label: int, width: int = 4032, height: int = 3024) -> Image.Image:
    """A 12-MP RGB picture with a photo's entropy; its coarse structure (CLASSES[label]) is what a model can learn.

    Structure at 40-120 px survives a downscale to 224; the gratings of 3-12 px do not, and are what
    plain bilinear sampling turns into moiré. The noise (sigma 4 of 255) is tiled from a 1024-px block
    to keep generation near a second per photo; JPEG codes blocks independently, so the size is a photo's.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]

    def grating(period: float, angle: float, phase: float) -> np.ndarray:  # sin(u + v) from two outer parts
        u, v = x * (np.cos(angle) * 2 * np.pi / period), y * (np.sin(angle) * 2 * np.pi / period) + phase
        return np.sin(u) * np.cos(v) + np.cos(u) * np.sin(v)

    detail = sum(grating(rng.uniform(3, 12), rng.uniform(0, np.pi), rng.uniform(0, 6)) for _ in range(2))
    period, angle = rng.uniform(40, 120), rng.uniform(-0.3, 0.3)
    if CLASSES[label] == "stripes":
        detail = detail + 4 * grating(period, angle, 0)
    elif CLASSES[label] == "checks":
        detail = detail + 4 * grating(period, angle, 0) * grating(period, angle + np.pi / 2, 0)
    elif CLASSES[label] == "rings":
        r = np.sqrt((x - rng.uniform(0, width)) ** 2 + (y - rng.uniform(0, height)) ** 2)
        detail = detail + 4 * np.sin(r * (2 * np.pi / period))
    image += 12 * detail[..., None]
    noise = rng.normal(0, 4, (1024, 1024, 3)).astype(np.float32)
    image += np.tile(noise, (height // 1024 + 1, width // 1024 + 1, 1))[:height, :width]
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def make_phone_set(folder: Path, count: int) -> list[Path]:
    """count phone-size JPEGs in folder/<class>/, made once (deterministic seeds)."""
    paths = []
    for i in range(count):
        label = i % len(CLASSES)
        path = folder / CLASSES[label] / f"phone-{i:04d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            phone_photo(i, label).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def fetch_real(folder: Path) -> None:
    """Unpack the wallpaper packages into folder/<package>/ (apt-get download: nothing is installed)."""
    debs = folder / "deb"
    debs.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        if (folder / package).exists():
            continue
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        deb = next(debs.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(folder / package)], check=True)


def real_photos(folder: Path, min_pixels: int = 2_000_000) -> list[Path]:
    """The unpacked packages' JPEG and PNG pictures of at least min_pixels pixels."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in {".jpg", ".jpeg", ".png"} and "deb" not in path.parts:
            with Image.open(path) as image:
                if image.width * image.height >= min_pixels:
                    found.append(path)
    return found


def _tree_rss_kb(root: int) -> int:
    """Resident KiB of process root and all its descendants, from /proc (0 for any that has gone)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status") as status:
                total += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
        except (OSError, ValueError):
            continue
    return total


def measure(name: str, argv: list[str], env: dict, log: Path, cwd: Path) -> dict:
    """Run argv; wall and CPU seconds and peak RSS in MB of all its processes together (sampled every 20 ms,
    and never below the kernel's ru_maxrss of the main process)."""
    with open(log, "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        peak, done = [0], threading.Event()

        def sample():
            while not done.wait(0.02):
                peak[0] = max(peak[0], _tree_rss_kb(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed, see {log}")
    rss = max(peak[0], usage.ru_maxrss) / 1024
    result = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": rss, "load": os.getloadavg()[0]}
    print(f"{name}: {wall:.1f} s, CPU {result['cpu']:.1f} s, peak RSS {rss:.0f} MB, load {result['load']:.1f}",
          file=sys.stderr, flush=True)
    return result


def run_json(output: Path) -> dict:
    """The run card (run.json) of the only run under output."""
    return json.loads(next((output / "runs").glob("*/run.json")).read_text())


def version(tree: Path, phone: Path, work: Path, env: dict, name: str) -> dict:
    """Cold and warm runs of the code at tree on the phone photos; extraction images/s from their stages."""
    env = dict(env, PYTHONPATH=str(tree))
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    r = {}
    for step in ("cold", "warm"):
        argv = [sys.executable, "-m", "retrain", "--images", str(phone), "--output", str(folder / step),
                "--cache-dir", str(folder / "cache"), "--seed", "1"]
        # cwd too: `python -m` puts it first on sys.path, ahead of PYTHONPATH.
        r[step] = measure(f"{name} {step}", argv, env, folder / f"{step}.log", tree)
        r[step]["seconds"] = run_json(folder / step)["seconds"]
    images = sum(1 for _ in phone.rglob("*.jpg"))
    extraction = r["cold"]["seconds"]["features"] - r["warm"]["seconds"]["features"]
    # CPU seconds suffer less than wall time when others share the cores: cold minus warm is about the
    # extraction's CPU (the rest of the two runs does the same work).
    cpu_ms = (r["cold"]["cpu"] - r["warm"]["cpu"]) / images * 1000
    r.update(images=images, extraction_s=extraction, images_per_s=images / extraction, cpu_ms_per_image=cpu_ms,
             model=str(next((folder / "cold" / "saved_model").iterdir())))
    return r


def rounds(trees: dict[str, Path], phone: Path, work: Path, env: dict, repeat: int) -> dict:
    """version() of each tree `repeat` times, the trees' order alternating from round to round (so a
    machine slowing down over the run weighs on both); per tree the median round by extraction images/s,
    with every round's figures kept under "rounds". The warm rerun's features stage moves by a second
    from run to run on this machine, a third of the extraction on 100 photos: one round is not a figure."""
    names = list(trees)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for k in range(repeat):
        for name in names if k % 2 == 0 else names[::-1]:
            runs[name].append(version(trees[name], phone, work / f"round{k}", env, name))
    results = {}
    for name, made in runs.items():
        ranked = sorted(made, key=lambda r: r["images_per_s"])
        kept = ("extraction_s", "images_per_s", "cpu_ms_per_image")
        results[name] = dict(ranked[len(ranked) // 2],
                             rounds=[{key: r[key] for key in kept} | {"rss_mb": r["cold"]["rss_mb"]} for r in made])
        results[name]["peak_rss_mb"] = max(r["cold"]["rss_mb"] for r in made)
    return results


def pillow_pixels(path: Path) -> np.ndarray:
    """float32 [SIZE, SIZE, 3]: decoded by Pillow, EXIF-transposed, alpha on white, antialiased bilinear resize."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(image, np.float32) / 255


def agreement(model_dir: str, photos: list[Path], latency_photo: Path) -> dict:
    """Top-1 agreement and mean TV distance of serving_default(bytes) vs serving_images(Pillow pixels);
    the median latency of one 12-MP JPEG through serving_default."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    by_bytes, by_pixels = loaded.signatures["serving_default"], loaded.signatures["serving_images"]
    tv, same = [], []
    for path in photos:
        p = by_bytes(image_bytes=tf.constant([path.read_bytes()]))["scores"].numpy()[0]
        q = by_pixels(images=tf.constant(pillow_pixels(path)[None]))["scores"].numpy()[0]
        tv.append(0.5 * float(np.abs(p - q).sum()))
        same.append(int(p.argmax() == q.argmax()))
    data = tf.constant([latency_photo.read_bytes()])
    by_bytes(image_bytes=data)  # the first call traces nothing but warms the allocator
    times = []
    for _ in range(15):
        start = time.perf_counter()
        by_bytes(image_bytes=data)["scores"].numpy()
        times.append((time.perf_counter() - start) * 1000)
    return {"photos": len(photos), "top1": float(np.mean(same)), "mean_tv": float(np.mean(tv)),
            "max_tv": float(np.max(tv)), "latency_ms": float(np.median(times))}


def format_costs(photo: Path, before: Path | None) -> str:
    """A markdown table: CPU ms of preprocess.decode_resize per image (one thread, best of 3) by format and
    size, from one generated photo saved in each format and size."""
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    from retrain.images import preprocess

    decode = tf.function(lambda b: preprocess.decode_resize(b, SIZE, 100_000_000),
                         input_signature=[tf.TensorSpec([], tf.string)])
    source = Image.open(photo).convert("RGB")
    lines = ["| picture | format | file MB | CPU ms per image | decode peak MB | before: decode peak MB |",
             "|---|---|---:|---:|---:|---:|"]
    for width, height in ((4032, 3024), (1600, 1200), (640, 480), (8160, 6120)):
        image = source.resize((width, height), Image.BICUBIC) if (width, height) != source.size else source
        for fmt, options in (("JPEG", {"quality": 90}), ("PNG", {"compress_level": 1}), ("WEBP", {"quality": 90}),
                             ("BMP", {}), ("GIF", {})):
            if fmt in ("WEBP", "BMP", "GIF") and width > 4032:
                continue
            buffer = io.BytesIO()
            (image.convert("P") if fmt == "GIF" else image).save(buffer, fmt, **options)
            data = tf.constant(buffer.getvalue())
            decode(data)
            peaks = ["", ""]
            if width in (4032, 8160) and fmt in ("JPEG", "PNG"):
                peaks = [f"{decode_peak_mb(buffer.getvalue(), tree):.0f}" if tree else "" for tree in (ROOT, before)]
            best = float("inf")
            for _ in range(3):
                start = time.process_time()
                decode(data)
                best = min(best, time.process_time() - start)
            lines.append(f"| {width} x {height} ({width * height / 1e6:.1f} MP) | {fmt} | "
                         f"{len(buffer.getvalue()) / 1e6:.1f} | {best * 1000:.0f} | "
                         f"{peaks[0]} | {peaks[1]} |")
    return "\n".join(lines)


_PEAK_CHILD = """
import sys, io
import tensorflow as tf
from PIL import Image
from retrain.images import preprocess
decode = tf.function(lambda b: preprocess.decode_resize(b, 224, 100_000_000),
                     input_signature=[tf.TensorSpec([], tf.string)])
for fmt in ("JPEG", "PNG"):  # trace every branch on small files first
    small = io.BytesIO(); Image.new("RGB", (300, 300)).save(small, fmt); decode(tf.constant(small.getvalue()))
data = tf.constant(open(sys.argv[1], "rb").read())
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM (the peak) to the current RSS
base = status("VmRSS:")
decode(data)
print((status("VmHWM:") - base) / 1024)
"""


def decode_peak_mb(data: bytes, tree: Path = ROOT) -> float:
    """How far one decode_resize (the code at tree) of data raises a fresh process's peak RSS (MB)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as file:
        file.write(data)
        file.flush()
        env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run([sys.executable, "-c", _PEAK_CHILD, file.name], capture_output=True, text=True,
                              check=True, cwd=tree, env=env)
    return float(done.stdout.split()[-1])


def machine() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GB RAM"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="the code to compare with (needed but with --costs)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrain-photos"))
    parser.add_argument("--real", type=Path, default=Path("/work/photos/real"),
                        help="where the wallpaper packages are (unpacked there when missing)")
    parser.add_argument("--count", type=int, default=100, help="generated phone photos")
    # Five: single rounds of the same code spread 2x (2.1-4.2 s for 100 photos), medians of three 2.75-3.49x.
    parser.add_argument("--repeat", type=int, default=5, help="cold and warm runs of each tree (median kept)")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--costs", action="store_true", help="only the table of decode cost by format and size")
    args = parser.parse_args()
    if args.costs:
        print(format_costs(make_phone_set(args.work / "phone", 1)[0], args.before))
        return
    if args.before is None:
        parser.error("--before: a checkout of the code to compare with is needed "
                     "(git worktree add /tmp/before 35a85fe)")
    args.work.mkdir(parents=True, exist_ok=True)
    fetch_real(args.real)
    photos = real_photos(args.real)
    phone = args.work / "phone"
    paths = make_phone_set(phone, args.count)
    print(f"machine: {machine()}; load average before: {os.getloadavg()}", file=sys.stderr, flush=True)
    # One module folder for both trees: the build and LiteRT conversion are done once, before timing.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", RETRAIN_MODULE_DIR=str(args.work / "modules"),
               RETRAIN_CACHE_HOME=str(args.work / "cache-home"))
    results = {"machine": machine(), "load_before": os.getloadavg()}
    results.update(rounds({"before": args.before.resolve(), "after": ROOT}, phone, args.work, env, args.repeat))
    results["load_after"] = os.getloadavg()
    for name in ("before", "after"):
        results[name]["agree"] = agreement(results[name]["model"], photos, paths[0])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results, len(photos)))


def report(r: dict, n_real: int) -> str:
    b, a = r["before"], r["after"]
    lines = [f"machine: {r['machine']}; load average {r['load_before'][0]:.2f} before, "
             f"{r['load_after'][0]:.2f} after the runs",
             "", f"| code | extraction images/s ({a['images']} phone JPEGs, median of {len(a['rounds'])}) | "
             "extraction CPU ms per image | "
             f"cold run s | peak RSS MB | serving_default ms (one 12-MP JPEG) | "
             f"top-1 agreement ({n_real} real photos) | mean TV | max TV |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, x in (("before", b), ("after", a)):
        g = x["agree"]
        lines.append(f"| {name} | {x['images_per_s']:.1f} | {x['cpu_ms_per_image']:.0f} | {x['cold']['wall']:.1f} | "
                     f"{x['peak_rss_mb']:.0f} | {g['latency_ms']:.0f} | {g['top1']:.3f} | {g['mean_tv']:.4f} | "
                     f"{g['max_tv']:.4f} |")
    per_round = (f"{name} " + ", ".join(f"{q['images_per_s']:.1f}" for q in x["rounds"])
                 for name, x in (("before", b), ("after", a)))
    lines += ["", "rounds (extraction images/s): " + "; ".join(per_round)]
    lines += ["", f"targets: {TARGETS}",
              f"- speed-up: {a['images_per_s'] / b['images_per_s']:.2f} (images/s), "
              f"{b['cpu_ms_per_image'] / a['cpu_ms_per_image']:.2f} (CPU per image)",
              f"- peak RSS (after, highest of the rounds): {a['peak_rss_mb']:.0f} MB",
              f"- top-1 agreement (after): {a['agree']['top1']:.3f}, mean TV {a['agree']['mean_tv']:.4f}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
