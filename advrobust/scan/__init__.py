"""Survey robustness scans: a model and a survey of cutouts in, one Parquet row per object out.

Streaming (memory constant in the survey's size), resumable after a kill with every object exactly
once, and shared by any number of processes (torchrun, SLURM, MPI, or by hand) that claim chunks
through the output folder (:mod:`advrobust.scan.parts`).
"""
from advrobust.scan.parts import (
    Chunk, ChunkClaims, PartStore, ScanConfigError, assemble_once, chunk_seed, plan_chunks, run_chunks,
)

__all__ = ["Chunk", "ChunkClaims", "PartStore", "ScanConfigError", "assemble_once", "chunk_seed", "plan_chunks",
           "run_chunks"]
