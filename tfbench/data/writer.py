"""Write image files as sharded TFRecords with a manifest, atomically and resumably (exercise 4.7).

Run by ``python -m tfbench.imagenet convert``:
- examples are split into contiguous shards ``validation-00000-of-00128``; a pool of processes
  decodes and checks the images of each shard (the expensive part; ``spawn``, since a forked
  TensorFlow process can hang), and the main process writes each shard as soon as it is ready,
  under a progress bar;
- Ctrl-C at any moment (even while the workers start) stops the workers at once: they ignore
  SIGINT and hand their results over as files, so the parent never waits on them;
- each shard is written under a temporary name and renamed when complete; its record count,
  size and sha256 go to ``.progress/<shard>.json`` first, so a rerun after a crash skips the
  shards that are complete and intact and writes the rest;
- dirty data: non-JPEG bytes behind a ``.JPEG`` name (PNG, GIF...) and CMYK JPEGs are
  re-encoded to RGB JPEG; grayscale JPEGs are kept as they are (the reader decodes them to 3
  channels); zero-byte and undecodable files are skipped.  Both lists are printed and stored in
  the manifest by file name, and the counts always reconcile: written + skipped = found.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import pickle
import signal
from pathlib import Path
from typing import Any, Callable, Sequence

from tfbench.data.example import REENCODE_QUALITY, SkipImage, Source, clean_jpeg, make_example
from tfbench.data.manifest import MANIFEST, Manifest, sha256_file
from tfbench.plumbing import faults
from tfbench.plumbing.errors import UserError
from tfbench.plumbing.files import atomic_output, write_json

PROGRESS_DIR = ".progress"
PREPARED_SUFFIX = ".prepared.pickle"


def shard_name(split: str, index: int, count: int) -> str:
    """``validation-00003-of-00128``: tensorflow/models' shard naming."""
    return f"{split}-{index:05d}-of-{count:05d}"


def _prepare_shard(sources: list[Source]) -> list[tuple[Source, bytes | None, int, int, str | None]]:
    """Check and clean every image of one shard (runs in a worker process; no TensorFlow needed there).

    Returns ``(source, jpeg or None, height, width, note)``: a None jpeg means skipped, note says why.
    """
    out = []
    for source in sources:
        try:
            jpeg, height, width, note = clean_jpeg(source.path)
        except SkipImage as why:
            out.append((source, None, 0, 0, str(why)))
            continue
        out.append((source, jpeg, height, width, note))
    return out


def _prepare_shard_to_file(sources: list[Source], path: str) -> str:
    """:func:`_prepare_shard` in a worker process, the result pickled to ``path`` (returned).

    Only the short path goes back through the pool's result pipe: a worker stopped by Ctrl-C
    mid-message can then never leave the parent waiting on half a message.
    """
    with atomic_output(path) as tmp:
        tmp.write_bytes(pickle.dumps(_prepare_shard(sources), protocol=pickle.HIGHEST_PROTOCOL))
    return path


def _load_prepared(path: str) -> list[tuple[Source, bytes | None, int, int, str | None]]:
    """Read back (and delete) what :func:`_prepare_shard_to_file` wrote; it was written by this conversion."""
    prepared = pickle.loads(Path(path).read_bytes())  # noqa: S301 - our own worker's file, in our own folder
    Path(path).unlink()
    return prepared


def _worker_ignores_sigint() -> None:
    """Pool initializer: Ctrl-C reaches every process of the terminal's group; only the parent acts on it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Stop the workers now (Ctrl-C or an error): cancel what has not started, terminate what has."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


def _write_shard(out_dir: str, name: str, prepared: list[tuple[Source, bytes | None, int, int, str | None]]
                 ) -> dict[str, Any]:
    """Write one shard atomically from prepared images; return its record for the manifest."""
    import tensorflow as tf

    out = Path(out_dir)
    written, skipped, reencoded = 0, [], []
    with atomic_output(out / name) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for source, jpeg, height, width, note in prepared:
                if jpeg is None:
                    skipped.append({"file": source.filename, "reason": note})
                    continue
                if note:
                    reencoded.append({"file": source.filename, "reason": note})
                writer.write(make_example(source, jpeg, height, width))
                written += 1
        tmp.chmod(0o644)
        record = {"name": name, "count": written, "bytes": tmp.stat().st_size, "sha256": sha256_file(tmp),
                  "sources": [s.filename for s, *_ in prepared], "plan": _plan_digest([s for s, *_ in prepared]),
                  "skipped": skipped, "reencoded": reencoded}
        write_json(out / PROGRESS_DIR / f"{name}.json", record)  # before the rename: a shard never lacks it
    return record


def _plan_digest(sources: list[Source]) -> str:
    """sha256 of what a shard should hold (files, labels, synsets, names): a changed label means rewrite."""
    plan = [[s.filename, s.label, s.synset, s.text, REENCODE_QUALITY] for s in sources]
    return hashlib.sha256(json.dumps(plan).encode()).hexdigest()


def _completed(out: Path, name: str, sources: list[Source]) -> dict[str, Any] | None:
    """The progress record of a shard a previous run finished, if the shard is intact and for these sources."""
    shard, progress = out / name, out / PROGRESS_DIR / f"{name}.json"
    if not shard.exists() or not progress.exists():
        return None
    try:
        record = json.loads(progress.read_text())
    except (OSError, ValueError):  # unreadable, not text or not JSON: write the shard again
        return None
    if record.get("plan") != _plan_digest(sources):
        return None
    if shard.stat().st_size != record.get("bytes") or sha256_file(shard) != record.get("sha256"):
        return None
    return record


def plan_shards(sources: Sequence[Source], num_shards: int, split: str) -> list[tuple[str, list[Source]]]:
    """Contiguous, nearly equal chunks of ``sources`` (in order), named ``split-i-of-n``."""
    n = len(sources)
    return [(shard_name(split, i, num_shards), list(sources[i * n // num_shards:(i + 1) * n // num_shards]))
            for i in range(num_shards)]


def _write_todo(out: Path, todo: list[tuple[str, list[Source]]], workers: int,
                finished: Callable[[dict[str, Any]], None]) -> None:
    """Write the shards of ``todo``, in this process or with a pool of ``workers`` preparing the images."""
    if workers == 1 or len(todo) <= 1:
        for name, chunk in todo:
            finished(_write_shard(str(out), name, _prepare_shard(chunk)))
    else:
        # Workers decode and clean the images (the expensive part); this process writes each shard
        # as soon as its images are ready.  "spawn": a fork of a process running TensorFlow can hang.
        # Ctrl-C: the workers start with SIGINT blocked (the mask is inherited through spawn), then
        # ignore it; the parent alone gets KeyboardInterrupt and terminates them (_stop_pool) instead
        # of waiting for them, so an interrupt at any moment, even during start-up, ends at once.
        context = multiprocessing.get_context("spawn")
        pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                                      initializer=_worker_ignores_sigint)
        try:
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                futures = {pool.submit(_prepare_shard_to_file, chunk,
                                       str(out / PROGRESS_DIR / f"{name}{PREPARED_SUFFIX}")): name
                           for name, chunk in todo}
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            for future in cf.as_completed(futures):
                finished(_write_shard(str(out), futures[future], _load_prepared(future.result())))
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown()


def _remove_temporary(out: Path, split: str) -> None:
    """Delete the temporary files of an interrupted or failed conversion (finished shards stay)."""
    for stale in (*out.glob(f".{split}-*.partial"), *(out / PROGRESS_DIR).glob(".*.partial"),
                  *(out / PROGRESS_DIR).glob(f"*{PREPARED_SUFFIX}*")):
        stale.unlink(missing_ok=True)


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def write_shards(sources: Sequence[Source], out_dir: str | Path, *, num_shards: int = 128, workers: int | None = None,
                 split: str = "validation", metadata: dict[str, Any] | None = None,
                 progress: bool = True) -> Manifest:
    """Write ``sources`` as ``num_shards`` TFRecord shards plus ``manifest.json``; resume what a crash left.

    ``num_shards`` is capped at the number of images (no empty shards).  ``workers`` processes
    (default: one per core; 1 writes in this process).  Returns the manifest.
    """
    from tqdm import tqdm

    if not sources:
        raise UserError("no images to write")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, expected a folder")
    num_shards = max(1, min(int(num_shards), len(sources)))
    plan = plan_shards(sources, num_shards, split)
    names = {name for name, _ in plan}
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out.glob(f"{split}-*-of-*") if p.name not in names)
    if foreign:
        raise UserError(f"{out} holds shards of another conversion ({foreign[0]} ...); "
                        f"write to an empty folder or delete them")
    (out / PROGRESS_DIR).mkdir(exist_ok=True)
    _remove_temporary(out, split)  # what a run killed outright (no chance to clean up) left behind
    (out / MANIFEST).unlink(missing_ok=True)  # a manifest only exists when every shard does

    records: dict[str, dict[str, Any]] = {}
    todo = []
    for name, chunk in plan:
        done = _completed(out, name, chunk)
        if done is not None:
            records[name] = done
        else:
            todo.append((name, chunk))
    workers = max(1, workers or os.cpu_count() or 1)
    bar = tqdm(total=len(sources), initial=sum(len(r["sources"]) for r in records.values()), unit="img",
               desc=f"writing {len(todo)} of {num_shards} shards", disable=not progress)

    def finished(record: dict[str, Any]) -> None:
        records[record["name"]] = record
        bar.update(len(record["sources"]))
        for item in record["skipped"]:
            bar.write(f"skipped {item['file']}: {item['reason']}")
        for item in record["reencoded"]:
            bar.write(f"re-encoded {item['file']}: {item['reason']}")

    needed = sum(_file_size(source.path) for _, chunk in todo for source in chunk)  # about what the shards take
    try:
        with faults.needs_space(out, needed):
            _write_todo(out, todo, workers, finished)
    except BaseException:
        _remove_temporary(out, split)  # workers stopped mid-file leave theirs behind
        raise
    finally:
        bar.close()

    shards = [records[name] for name, _ in plan]
    skipped = [item for r in shards for item in r["skipped"]]
    reencoded = [item for r in shards for item in r["reencoded"]]
    written = sum(r["count"] for r in shards)
    if written + len(skipped) != len(sources):
        raise RuntimeError(f"counts do not reconcile: {written} written + {len(skipped)} skipped != {len(sources)}")
    if written == 0:
        raise UserError(f"none of the {len(sources)} images could be read (first: {skipped[0]['file']}: "
                        f"{skipped[0]['reason']})")
    metadata = dict(metadata or {})
    manifest = Manifest(split=split, num_shards=num_shards, found=len(sources), written=written, skipped=skipped,
                        reencoded=reencoded,
                        shards=[{"name": r["name"], "count": r["count"], "bytes": r["bytes"], "sha256": r["sha256"]}
                                for r in shards],
                        label_convention=metadata.pop("label_convention", {"name": "keras", "first_index": 0}),
                        metadata=metadata)
    write_json(out / MANIFEST, manifest.to_json())
    return manifest
