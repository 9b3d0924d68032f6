"""Benchmarks behind ``advrobust bench``; results with their machine and command are kept in bench/.

* :mod:`advrobust.bench.cases` -- the one list of benchmark cases, by size tier, shared with the
  pytest-benchmark suites in bench/ (``pytest bench --benchmark-only``).
* :mod:`advrobust.bench.cuda_report` -- the GPU check's preflight and its report from saved
  pytest-benchmark JSON (scripts/gpu_check.sh, bench/RESULTS_cuda.md).
* :mod:`advrobust.bench.harness` -- what every benchmark shares: device choice, timing (CUDA
  synchronised), peak memory, copy bandwidth, machine info, report files.
* :mod:`advrobust.bench.ops` -- each fused op against its eager twin and ``torch.compile`` of it
  (``advrobust bench ops``, bench/RESULTS.md).
* :mod:`advrobust.bench.attacks` -- :mod:`advrobust.attacks` against torchattacks, end to end
  (``advrobust bench attacks``, bench/RESULTS_attacks.md).
* :mod:`advrobust.bench.certify` -- adaptive certification against Cohen et al.'s fixed n = 100,000:
  model evaluations and wall time per object, and the decisions side by side
  (``advrobust bench certify``, bench/RESULTS_certify.md).

Each benchmark module has ``add_arguments(parser)`` and ``run(args, command)``; the command
line (:mod:`advrobust.cli.bench`) builds one parser per module from them.
"""
