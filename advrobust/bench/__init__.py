"""Benchmarks behind ``advrobust bench``; results with their machine and command are kept in bench/.

* :mod:`advrobust.bench.harness` -- what every benchmark shares: device choice, timing (CUDA
  synchronised), peak memory, copy bandwidth, machine info, report files.
* :mod:`advrobust.bench.ops` -- each fused op against its eager twin and ``torch.compile`` of it
  (``advrobust bench ops``, bench/RESULTS.md).
* :mod:`advrobust.bench.attacks` -- :mod:`advrobust.attacks` against torchattacks, end to end
  (``advrobust bench attacks``, bench/RESULTS_attacks.md).

Each benchmark module has ``add_arguments(parser)`` and ``run(args, command)``; the command
line (:mod:`advrobust.cli.bench`) builds one parser per module from them.
"""
