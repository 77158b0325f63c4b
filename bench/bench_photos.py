"""Photo gallery read against full-size images (issue 6: goal under 5 % of the full-size bytes).

Generates synthetic 12-megapixel photographs (4000 x 3000: a smooth skin-toned gradient, blotches
and sensor-like noise, so they compress like real photographs, a few MB each as JPEG), stores them
through the real code path (``monitoring.photos.store_photos``: decode, orientation, pixel hash,
re-encode, thumbnail, audit) into a fresh SQLite file, across two synthetic patients, then for the
patient with the most photographs measures:

- the gallery's data read (``list_photos`` with thumbnails: what the Photos page reads) in bytes,
  as a fraction of that patient's full-size image bytes;
- the time of the gallery read against the time of reading every full-size image of the patient
  (median of 5 runs each, alternated).

Prints the figures. Usage: ``python bench/bench_photos.py [--photos 200] [--megapixels 12]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlmodel import Session  # noqa: E402

from monitoring.db import create_db_engine, session_scope  # noqa: E402
from monitoring.models import Patient, Photo, PhotoImage  # noqa: E402
from monitoring.photos import BODY_SITES, PhotoIn, PhotoLimits, list_photos, store_photos  # noqa: E402
from monitoring.schema import upgrade  # noqa: E402
from monitoring.store import PatientIn, write_batch  # noqa: E402

TODAY = dt.date.today()


class PhotoMaker:
    """Fast distinct photographs: one noise field and one gradient, shifted and tinted per image."""

    def __init__(self, width: int, height: int, seed: int = 6):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.w, self.h = width, height
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.gradient = (xx / width * 40 + yy / height * 25).astype(np.float32)
        self.noise = np.clip(rng.normal(0, 6, size=(height, width, 3)), -18, 18).astype(np.int16)
        # Blotches: a low-resolution random field blown up (an exanthem-like pattern).
        small = rng.random((height // 100, width // 100)).astype(np.float32)
        blotch = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC),
                            dtype=np.float32) / 255.0
        scene = np.empty((height, width, 3), dtype=np.float32)
        scene[...] = np.array([215.0, 175.0, 155.0], dtype=np.float32)
        scene += self.gradient[..., None]
        scene[..., 1] -= blotch * 70  # red blotches: less green and blue
        scene[..., 2] -= blotch * 60
        self.scene = np.clip(scene, 20, 235).astype(np.int16)
        del self.gradient

    def jpeg(self, i: int) -> bytes:
        # Shifting the precomputed scene and noise by different amounts gives every photograph
        # different pixels (no duplicates) at the cost of two array rolls.
        dx, dy = (i * 7919) % self.w, (i * 104729) % self.h
        scene = np.roll(self.scene, (dy, dx), axis=(0, 1))
        noise = np.roll(self.noise, ((dy * 3) % self.h, (dx * 5) % self.w), axis=(0, 1))
        arr = (scene + noise).astype(np.uint8)  # scene kept within [20, 235]: no wrap-around
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=92)
        return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--batch", type=int, default=10, help="photographs per store_photos call")
    args = ap.parse_args(argv)

    width = int(round((args.megapixels * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    maker = PhotoMaker(width, height)
    with tempfile.TemporaryDirectory(prefix="bench_photos_") as tmp:
        url = f"sqlite:///{Path(tmp) / 'photos.db'}"
        engine = create_db_engine(url)
        upgrade(engine)
        mrns = ["BENCH-PH-1", "BENCH-PH-2"]
        with session_scope(engine) as s:
            write_batch(
                s,
                patients=[PatientIn(m, f"Synthetic Bench {m[-1]}", {"onset_date": TODAY - dt.timedelta(days=200), "synthetic": True})
                          for m in mrns],
                username="bench",
            )
        # 60 % for the patient measured, 40 % for the other (the gallery query filters by patient).
        plan = [(mrns[0] if i % 5 < 3 else mrns[1], i) for i in range(args.photos)]
        received = 0
        gen_s = store_s = 0.0
        limits = PhotoLimits.from_env()
        for start in range(0, len(plan), args.batch):
            chunk = plan[start : start + args.batch]
            by_mrn: dict[str, list[PhotoIn]] = {}
            t0 = time.perf_counter()
            for mrn, i in chunk:
                data = maker.jpeg(i)
                received += len(data)
                by_mrn.setdefault(mrn, []).append(
                    PhotoIn(f"IMG_{i:04d}.jpg", data, BODY_SITES[i % len(BODY_SITES)], bsa_pct=float(i % 60),
                            taken_on=TODAY - dt.timedelta(days=200 - i))
                )
            t1 = time.perf_counter()
            with session_scope(engine) as s:
                for mrn, items in by_mrn.items():
                    store_photos(s, mrn, items, username="bench", today=TODAY, limits=limits)
            t2 = time.perf_counter()
            gen_s += t1 - t0
            store_s += t2 - t1
            done = start + len(chunk)
            if done % 50 == 0 or done == len(plan):
                print(f"  stored {done}/{len(plan)} (this batch {(t2 - t1) / len(chunk):.2f} s per photograph through store_photos)",
                      flush=True)

        mrn = mrns[0]
        with Session(engine) as s:
            pid = s.execute(select(Patient.id).where(Patient.mrn == mrn)).scalar_one()
            n_photos, full_bytes = s.execute(
                select(func.count(), func.sum(func.length(PhotoImage.data)))
                .select_from(PhotoImage).join(Photo, Photo.id == PhotoImage.photo_id).where(Photo.patient_id == pid)
            ).one()

        def gallery_read() -> int:
            with Session(engine) as s:
                rows = list_photos(s, mrn, with_thumbnails=True)
            total = 0
            for r in rows:
                for v in r.__dict__.values():
                    total += len(v) if isinstance(v, bytes) else len(str(v))
            return total

        def full_read() -> int:
            with Session(engine) as s:
                return sum(
                    len(d)
                    for d in s.execute(
                        select(PhotoImage.data).join(Photo, Photo.id == PhotoImage.photo_id).where(Photo.patient_id == pid)
                    ).scalars()
                )

        gallery_read()
        full_read()  # warm both (OS page cache), so the comparison is of what is read, not of the disk
        g_times: list[float] = []
        f_times: list[float] = []
        g_bytes = f_bytes = 0
        for _ in range(5):
            t0 = time.perf_counter()
            g_bytes = gallery_read()
            t1 = time.perf_counter()
            f_bytes = full_read()
            t2 = time.perf_counter()
            g_times.append(t1 - t0)
            f_times.append(t2 - t1)
        engine.dispose()
        db_size = (Path(tmp) / "photos.db").stat().st_size

    g_med, f_med = statistics.median(g_times), statistics.median(f_times)
    stored_total = f_bytes
    print()
    print(f"photographs: {args.photos} of {width} x {height} ({width * height / 1e6:.1f} MP), {len(mrns)} patients; "
          f"received {received / 1e6:.0f} MB as JPEG, database {db_size / 1e6:.0f} MB")
    print(f"generation {gen_s:.1f} s; store_photos {store_s:.1f} s ({store_s / args.photos:.2f} s per photograph)")
    print(f"gallery patient: {n_photos} photographs, full-size {full_bytes / 1e6:.1f} MB "
          f"({full_bytes / n_photos / 1e6:.2f} MB each)")
    print(f"gallery read (metadata + thumbnails): {g_bytes / 1e3:.0f} kB = {g_bytes / stored_total * 100:.2f} % of the full-size bytes "
          f"(goal < 5 %)")
    print(f"gallery read time {g_med * 1000:.1f} ms vs full-size read {f_med * 1000:.1f} ms: ratio {g_med / f_med:.4f} "
          f"({f_med / g_med:.0f}x faster)")
    return 0 if g_bytes / stored_total < 0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
