"""Survey robustness scans: a model and a survey of cutouts in, one Parquet row per object out.

Streaming (memory constant in the survey's size), resumable after a kill with every object exactly
once, and sharded over torch.distributed ranks (:mod:`advrobust.scan.parts`).
"""
from advrobust.scan.parts import (
    Chunk, PartStore, ScanConfigError, chunk_seed, chunks_for_rank, plan_chunks, run_chunks,
)

__all__ = ["Chunk", "PartStore", "ScanConfigError", "chunk_seed", "chunks_for_rank", "plan_chunks", "run_chunks"]
