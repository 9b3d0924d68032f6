"""Evaluation of models under attack.

* :func:`evaluate_grid` / :class:`GridResult` (:mod:`advrobust.evaluate.grid`): every model
  against every attack or natural perturbation (:func:`natural`), in batches, one
  :class:`GridCell` (``update`` / ``compute``) per (model, column) over the accumulating metrics
  (reduced across ``torch.distributed`` ranks); ``on_adversarial`` hands the adversarial batches
  to the caller; feeds the report and the CLI.
* :func:`predict`, :func:`attack_batch` / :class:`Outcome` (:mod:`advrobust.evaluate.batch`): one
  batch through one model, clean and under one attack; the step the grid and the scan share.
* :func:`church_window` / :class:`ChurchWindow` (:mod:`advrobust.evaluate.church`): predicted
  class on a 2-D grid of inputs around one image (Ciprijanovic et al. 2022, section 4.2).
* :func:`transfer_evaluate` / :class:`TransferResult` (:mod:`advrobust.evaluate.transfer`):
  adversarial samples crafted on one model, scored on several (the black-box effect of
  Campagne 2021, Table 1).
"""
from advrobust.evaluate.batch import Outcome, attack_batch, predict
from advrobust.evaluate.church import ChurchWindow, church_window
from advrobust.evaluate.grid import NATURAL, GridCell, GridResult, evaluate_grid, natural
from advrobust.evaluate.transfer import TransferResult, transfer_evaluate

__all__ = ["TransferResult", "transfer_evaluate", "GridResult", "GridCell", "evaluate_grid", "natural", "NATURAL",
           "ChurchWindow", "church_window", "Outcome", "attack_batch", "predict"]
