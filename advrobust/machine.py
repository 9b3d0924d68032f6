"""What the machine is, for the records that reproduce a result (the demo's report, the benchmarks):
no dependency beyond the standard library."""
from __future__ import annotations

import platform

__all__ = ["cpu_model"]


def cpu_model() -> str:
    """The CPU as Linux names it (``model name`` in ``/proc/cpuinfo``, with the x86 family and model
    numbers, which tell CPU generations apart where a virtual machine's name is generic, e.g.
    ``"AMD EPYC (family 26, model 2)"``); elsewhere :func:`platform.processor` or the machine type."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip():
                    break  # the first processor's block ends at its blank line
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name
