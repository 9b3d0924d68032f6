"""Exactly-once, resumable chunked output: the survey scan's storage.

A scan of ``n`` objects is cut into chunks of a fixed size (:func:`plan_chunks`), whatever the number
of processes; chunk ``i`` belongs to rank ``i % world_size`` (:func:`chunks_for_rank`). Each chunk's
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
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from advrobust.atomic import atomic_path

__all__ = ["Chunk", "plan_chunks", "chunks_for_rank", "chunk_seed", "PartStore", "ScanConfigError", "run_chunks"]


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


def chunks_for_rank(chunks: Sequence[Chunk], rank: int, world_size: int) -> list[Chunk]:
    """The chunks rank ``rank`` of ``world_size`` computes: every ``world_size``-th, from ``rank``.

    Raises:
        ValueError: ``rank`` outside ``[0, world_size)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"chunks_for_rank: need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    return list(chunks[rank::world_size])


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
            keys = sorted(set(stored) | set(config))
            diffs = [f"{key}: was {stored.get(key, '(unset)')!r}, now {config.get(key, '(unset)')!r}"
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
               desc: str = "scan") -> int:
    """Compute and write every chunk of ``chunks`` that has no part yet; returns the objects computed.

    Args:
        store: where the parts go (opened with :meth:`PartStore.open`).
        chunks: this rank's chunks (:func:`chunks_for_rank`).
        compute: ``chunk -> {column: (chunk.size,) array}``; it must depend only on the chunk (its
            rows and its index, e.g. a seed derived from it) so a restart recomputes the same rows.
        progress: show a progress bar in objects per second.
    """
    from tqdm.auto import tqdm

    chunks = list(chunks)
    todo = [chunk for chunk in chunks if not store.is_done(chunk)]
    total = sum(chunk.size for chunk in chunks)
    done_before = total - sum(chunk.size for chunk in todo)
    computed = 0
    with tqdm(total=total, initial=done_before, unit="obj", desc=desc, disable=not progress,
              dynamic_ncols=True) as bar:
        for chunk in todo:
            store.write(chunk, compute(chunk))
            computed += chunk.size
            bar.update(chunk.size)
    return computed
