"""Evaluation of models under attack.

* :func:`transfer_evaluate` / :class:`TransferResult` (:mod:`advrobust.evaluate.transfer`):
  adversarial samples crafted on one model, scored on several (the black-box effect of
  Campagne 2021, Table 1).
"""
from advrobust.evaluate.transfer import TransferResult, transfer_evaluate

__all__ = ["TransferResult", "transfer_evaluate"]
