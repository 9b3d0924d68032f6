"""Training: one plain-PyTorch :class:`Trainer` with pluggable parts (task loss, optimiser,
reduce-on-plateau, batch transforms, extra losses, early stopping, seeds, mixed precision, progress
bar, atomic per-epoch checkpoints with resume, DistributedDataParallel under torchrun).

The defenses that plug into it live in :mod:`advrobust.defenses`.

Example:
    >>> from torch.utils.data import TensorDataset
    >>> from advrobust.defenses import AdversarialTraining
    >>> trainer = Trainer(model, "ce", lr=1e-3, batch_transform=AdversarialTraining("fgsm", eps=0.01),
    ...                   checkpoint="run/ckpt.safetensors")
    >>> history = trainer.fit(TensorDataset(images, labels), epochs=10, batch_size=64)
"""
from advrobust.train.checkpoint import load_checkpoint, save_checkpoint
from advrobust.train.losses import WeightedCrossEntropy, inverse_frequency_weights, task_loss
from advrobust.train.trainer import Batch, BatchTransform, ExtraLoss, Trainer

__all__ = ["Trainer", "Batch", "BatchTransform", "ExtraLoss", "WeightedCrossEntropy", "inverse_frequency_weights",
           "task_loss", "save_checkpoint", "load_checkpoint"]
