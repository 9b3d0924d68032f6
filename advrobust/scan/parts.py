"""Exactly-once, resumable chunked output: the survey scan's storage.

A scan of ``n`` objects is cut into chunks of a fixed size (:func:`plan_chunks`), whatever the number
of processes; a process computes a chunk after claiming it (:class:`ChunkClaims`, :func:`run_chunks`). Each chunk's
rows are written as one Parquet *part file* (``<out>.parts/part-<i>.parquet``) through
:func:`advrobust.atomic.atomic_path`, so a part file exists only once complete: a process killed at
any moment leaves whole part files and at most a temporary file, which the next write removes. A
restarted scan skips the chunks whose part files exist (:meth:`PartStore.is_done`) and the final
catalogue is assembled from the parts in chunk order (:meth:`PartStore.assemble`), streaming one part
at a time. Every object is therefore in the catalogue exactly once, and the result does not depend on
how many times the scan was killed or how many ranks ran it.

The folder also holds ``manifest.json``: the scan's configuration (model, data and their
fingerprints, attacks, seed, chunk size, ...). It is created atomically and only once (a hard link,
which fails when the name exists), so of two scans started at the same moment on one output exactly
one writes it; every process then compares its configuration with the stored one, and a scan with a
different configuration is refused (:class:`ScanConfigError`), naming the settings that differ, so
parts computed under two configurations never mix. Processes with the *same* configuration may share
the folder (the ranks of one scan do): they write whole, identical parts. There is deliberately no
exclusive whole-scan lock: ranks launched without a process group (SLURM, MPI) are such processes.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from advrobust.atomic import atomic_path, pid_alive

__all__ = ["Chunk", "plan_chunks", "chunk_seed", "PartStore", "ScanConfigError", "run_chunks",
           "ChunkClaims", "assemble_once"]


@dataclass(frozen=True)
class Chunk:
    """Rows ``[start, stop)`` of the survey, the ``index``-th chunk of the scan."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def plan_chunks(n_objects: int, chunk_size: int) -> list[Chunk]:
    """Cut ``n_objects`` rows into consecutive chunks of ``chunk_size`` (the last may be shorter).

    Raises:
        ValueError: ``n_objects`` < 1 or ``chunk_size`` < 1.
    """
    if isinstance(n_objects, bool) or int(n_objects) != n_objects or n_objects < 1:
        raise ValueError(f"plan_chunks: n_objects must be a positive integer, got {n_objects!r}")
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"plan_chunks: chunk_size must be a positive integer, got {chunk_size!r}")
    n_objects, chunk_size = int(n_objects), int(chunk_size)
    return [Chunk(i, start, min(start + chunk_size, n_objects))
            for i, start in enumerate(range(0, n_objects, chunk_size))]


def chunk_seed(seed: int, chunk: Chunk) -> int:
    """The seed of ``chunk``'s random draws: a function of the scan's seed and the chunk's index only,
    so rows are the same whatever the number of ranks or restarts (NumPy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([int(seed), chunk.index]).generate_state(1, np.uint64)[0] >> 1)


class ScanConfigError(ValueError):
    """A restarted scan's configuration differs from the one its part files were computed with."""


class PartStore:
    """The part files and manifest of one scan, in the folder ``<out>.parts`` next to ``out``.

    Args:
        out: path of the final catalogue (``.parquet``).
    """

    MANIFEST = "manifest.json"

    def __init__(self, out: str | os.PathLike):
        self.out = os.path.abspath(os.fspath(out))
        if not self.out.endswith(".parquet"):
            raise ValueError(f"scan output must be a .parquet file, got {out}")
        self.folder = self.out + ".parts"

    # ------------------------------------------------------------ manifest

    def _manifest_path(self) -> str:
        return os.path.join(self.folder, self.MANIFEST)

    def read_manifest(self) -> dict[str, Any] | None:
        """The stored configuration, or None before the first :meth:`open`."""
        try:
            with open(self._manifest_path(), encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def open(self, config: Mapping[str, Any], *, create: bool = True) -> bool:
        """Start or resume the scan described by ``config`` (a JSON-serialisable mapping).

        Args:
            config: every setting that changes the rows (model file and its checksum, data, attacks,
                eps, seed, chunk size, ...).
            create: write the manifest if there is none (rank 0); other ranks pass False and only check.

        Returns:
            True when resuming (a manifest was there), False for a new scan.

        Raises:
            ScanConfigError: the stored configuration differs; the message names each setting.
            FileNotFoundError: ``create`` is False and no manifest exists.
        """
        config = json.loads(json.dumps(dict(config)))  # the form it takes once stored (tuples -> lists)
        stored = self.read_manifest()
        if stored is None:
            if not create:
                raise FileNotFoundError(f"{self._manifest_path()}: no scan manifest (rank 0 writes it first)")
            if self._create_manifest(config):
                return False
            stored = self.read_manifest()  # another scan created it first: compare with its settings
        if stored != config:
            from advrobust.data.fingerprint import describe_change

            keys = sorted(set(stored) | set(config))
            diffs = [describe_change(key, stored.get(key, "(unset)"), config.get(key, "(unset)"))
                     for key in keys if stored.get(key, "(unset)") != config.get(key, "(unset)")]
            raise ScanConfigError(
                f"{self.out}: a scan with other settings was started here ({'; '.join(diffs)}). "
                f"Run it again with its settings to resume it, or choose another --out "
                f"(or delete {self.folder} to start over)")
        return True

    def _create_manifest(self, config: Mapping[str, Any]) -> bool:
        """Write the manifest only if none exists, atomically (a hard link of a complete temporary
        file, which fails when the name is taken): of two scans started together on one ``out``,
        exactly one creates it and the other compares its settings with it. Returns True when
        this call created it."""
        os.makedirs(self.folder, exist_ok=True)
        tmp = f"{self._manifest_path()}.{socket.gethostname()}.{os.getpid()}.new"
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(config, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, self._manifest_path())
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return True

    # ------------------------------------------------------------ parts

    def part_path(self, chunk: Chunk) -> str:
        return os.path.join(self.folder, f"part-{chunk.index:08d}.parquet")

    def is_done(self, chunk: Chunk) -> bool:
        """Whether ``chunk``'s part file exists (it is then complete: parts are written atomically).

        Raises:
            RuntimeError: the part exists but holds a different number of rows than the chunk (the
                folder was edited by hand, or belongs to another plan).
        """
        path = self.part_path(chunk)
        if not os.path.exists(path):
            return False
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(path).metadata.num_rows
        if rows != chunk.size:
            raise RuntimeError(f"{path}: holds {rows} rows, but chunk {chunk.index} has {chunk.size} objects")
        return True

    def write(self, chunk: Chunk, columns: Mapping[str, np.ndarray]) -> None:
        """Write ``chunk``'s rows (each column a 1-D array of ``chunk.size`` values) atomically.

        Raises:
            ValueError: a column of another length.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        lengths = {name: len(values) for name, values in columns.items()}
        bad = {name: n for name, n in lengths.items() if n != chunk.size}
        if bad:
            raise ValueError(f"chunk {chunk.index} has {chunk.size} objects, but columns have lengths {bad}")
        table = pa.table({name: np.asarray(values) for name, values in columns.items()})
        with atomic_path(self.part_path(chunk)) as tmp:
            pq.write_table(table, tmp)

    def assemble(self, chunks: Sequence[Chunk]) -> str:
        """Write the final catalogue from every chunk's part, in chunk order, one part in memory at a time.

        Returns:
            The catalogue's path.

        Raises:
            RuntimeError: a part is missing (the scan has not finished) or the parts' columns differ.
        """
        import pyarrow.parquet as pq

        missing = [chunk.index for chunk in chunks if not self.is_done(chunk)]
        if missing:
            raise RuntimeError(f"{self.out}: {len(missing)} chunks not computed yet (first: {missing[:5]})")
        with atomic_path(self.out) as tmp:
            writer = None
            try:
                for chunk in chunks:
                    table = pq.read_table(self.part_path(chunk))
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    elif table.schema != writer.schema:
                        raise RuntimeError(f"{self.part_path(chunk)}: columns differ from the first part's")
                    writer.write_table(table)
            finally:
                if writer is not None:
                    writer.close()
        return self.out


def run_chunks(store: PartStore, chunks: Iterable[Chunk],
               compute: Callable[[Chunk], Mapping[str, np.ndarray]], *, progress: bool = True,
               desc: str = "scan", claims: Optional["ChunkClaims"] = None, first: int = 0) -> int:
    """Compute and write every chunk of ``chunks`` that has no part yet, claiming each one first;
    returns the objects this process computed.

    Every process of a scan may be handed *all* the chunks: a chunk is computed by whoever claims
    it (:class:`ChunkClaims`), so any number of processes can join or leave at any time, a slow one
    only holds the chunk it is on, and a dead one's chunks are taken over once its claim expires.
    Chunks claimed by a live process are revisited until their parts exist; the call returns when
    every chunk of ``chunks`` has its part.

    Args:
        store: where the parts go (opened with :meth:`PartStore.open`).
        chunks: the chunks to complete (usually the whole plan).
        compute: ``chunk -> {column: (chunk.size,) array}``; it must depend only on the chunk (its
            rows and its index, e.g. a seed derived from it) so a restart recomputes the same rows.
        progress: show a progress bar in objects per second (chunks completed by any process).
        desc: the progress bar's label.
        claims: the claims to use (default: ``ChunkClaims(store)``: this host and process, 60 s expiry).
        first: start at this position of ``chunks`` (e.g. ``rank * len(chunks) // world``), so that
            processes started together do not all contend for the first chunk.
    """
    from tqdm.auto import tqdm

    chunks = list(chunks)
    claims = claims or ChunkClaims(store)
    pending = chunks[first % len(chunks):] + chunks[:first % len(chunks)] if chunks else []
    total = sum(chunk.size for chunk in chunks)
    computed = 0
    with claims, tqdm(total=total, unit="obj", desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        while pending:
            waiting = []
            for chunk in pending:
                if not store.is_done(chunk):
                    if not claims.acquire(chunk):
                        waiting.append(chunk)  # another live process is on it
                        continue
                    try:
                        if not store.is_done(chunk):  # it may have been finished before the claim
                            store.write(chunk, compute(chunk))
                            computed += chunk.size
                    finally:
                        claims.release(chunk)
                bar.update(chunk.size)
            pending = waiting
            if pending:
                time.sleep(claims.poll)
    return computed


class ChunkClaims:
    """Claim files ``claim-<index>`` in a scan's folder: which process is computing which chunk.

    A claim is created by hard-linking a complete file to its name (one winner, never an empty claim), records its owner (host, pid, launcher rank)
    and is kept fresh by a heartbeat thread that touches it every ``timeout / 4`` seconds while held.
    A claim is stale, and may be taken over, when its owner is a process of this host that no longer
    runs, or when it has not been touched for ``timeout`` seconds (a process on another machine that
    died or lost the shared file system, or any process that stopped beating, e.g. suspended). Ages are measured against the file system's own clock (a
    probe file's modification time), so machines whose clocks differ agree on them.

    Claims only spare duplicate work: a chunk computed twice (a takeover racing a slow owner) is
    written twice as the same whole part file, so the catalogue stays exactly-once either way.

    Use as a context manager (starts and stops the heartbeat).

    Args:
        store: the scan's :class:`PartStore`.
        owner: ``{"host", "pid", ...}`` of this process (default: this host and pid, plus the
            launcher's rank from :func:`advrobust.distributed.launcher_rank`).
        timeout: seconds without a heartbeat after which a claim of another host expires.
        poll: seconds between looks at chunks that other processes hold.
    """

    def __init__(self, store: PartStore, *, owner: Optional[Mapping[str, Any]] = None, timeout: float = 60.0,
                 poll: float = 0.5) -> None:
        from advrobust import distributed

        if not timeout > 0 or not poll > 0:
            raise ValueError(f"ChunkClaims: timeout and poll must be > 0 seconds, got {timeout}, {poll}")
        rank, world, launcher = distributed.launcher_rank()
        self.owner = dict(owner or {"host": socket.gethostname(), "pid": os.getpid(), "rank": rank,
                                    "world": world, "launcher": launcher})
        self.store, self.timeout, self.poll = store, float(timeout), float(poll)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def path(self, chunk: Chunk) -> str:
        return os.path.join(self.store.folder, f"claim-{chunk.index:08d}")

    def acquire(self, chunk: Chunk) -> bool:
        """Claim ``chunk``: True when this process now holds it (fresh, or taken over from a stale claim)."""
        path = self.path(chunk)
        tmp = self._owner_file(path)
        try:
            os.link(tmp, path)  # a claim appears whole, never empty: a complete file, linked only if free
        except FileExistsError:
            if not self._stale(path):
                return False
            os.replace(tmp, path)  # take over: atomically replace the stale claim with ours
            # Two takeovers that interleave can both read their own owner back here: the chunk is then
            # computed twice, into the same whole part file (duplicate work, never a duplicate row).
            if self._read_owner(path) != self.owner:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        with self._lock:
            self._held.add(path)
        return True

    def release(self, chunk: Chunk) -> None:
        """Drop the claim on ``chunk`` (only if it is still this process's)."""
        path = self.path(chunk)
        with self._lock:
            self._held.discard(path)
        if self._read_owner(path) == self.owner:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def _owner_file(self, path: str) -> str:
        """A complete file holding this process's owner record, next to ``path`` (to link or rename)."""
        tmp = f"{path}.{socket.gethostname()}.{os.getpid()}.new"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.owner, handle)
        return tmp

    @staticmethod
    def _read_owner(path: str) -> Optional[dict]:
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _stale(self, path: str) -> bool:
        owner = self._read_owner(path)  # None: released this instant, or unreadable: the age rule decides
        if owner is not None and owner.get("host") == self.owner["host"] and not pid_alive(int(owner.get("pid", -1))):
            return True
        try:
            touched = os.stat(path).st_mtime
        except FileNotFoundError:
            return False
        return self._now() - touched > self.timeout

    def _now(self) -> float:
        """The file system's current time: the modification time of a probe file touched now."""
        probe = os.path.join(self.store.folder, f".clock-{socket.gethostname()}-{os.getpid()}")
        with open(probe, "a"):
            pass
        os.utime(probe, None)
        return os.stat(probe).st_mtime

    def _beat(self) -> None:
        while not self._stop.wait(self.timeout / 4):
            with self._lock:
                held = list(self._held)
            for path in held:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(path, None)

    def __enter__(self) -> "ChunkClaims":
        os.makedirs(self.store.folder, exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="advrobust-claims-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for chunk_path in list(self._held):
            if self._read_owner(chunk_path) == self.owner:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(chunk_path)
        self._held.clear()
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.store.folder, f".clock-{socket.gethostname()}-{os.getpid()}"))



def assemble_once(store: PartStore, chunks: Sequence[Chunk], claims: ChunkClaims,
                  then: Optional[Callable[[str], Any]] = None) -> bool:
    """Write the catalogue from the parts (every part must exist), once among the processes that
    call this together: the one holding the assembly claim (a pseudo-chunk numbered
    ``len(chunks)``) writes it, then calls ``then(catalogue path)`` (e.g. a HATS export) under the
    same claim; the others wait until the catalogue is newer than every part (or take the claim
    over if its holder died). Returns True in the process that assembled."""
    assembly = Chunk(len(chunks), 0, 0)
    newest_part = max(os.stat(store.part_path(chunk)).st_mtime for chunk in chunks)
    written = (lambda: os.path.exists(store.out) and os.stat(store.out).st_mtime >= newest_part)  # noqa: E731
    with claims:
        while not written():
            if claims.acquire(assembly):
                try:
                    if written():  # finished by another process between the look and the claim
                        return False
                    store.assemble(chunks)
                    if then is not None:
                        then(store.out)
                    return True
                finally:
                    claims.release(assembly)
            time.sleep(claims.poll)
    return False
