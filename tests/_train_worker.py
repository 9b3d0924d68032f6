"""Training run of the resume and torchrun tests, in its own process:

    python tests/_train_worker.py CHECKPOINT EPOCHS OUT [--plain]

Trains a small ConvNet (batch norm; FGSM with random start on half of each batch, so the
trainer's generator and the global RNG are both in play) on fixed random data and writes the final
weights to OUT (safetensors). ``--plain``: a photo-z model without batch norm, no transform, one
step on 8 samples (the torchrun test: a DDP step must equal the single-process step).
"""
import sys

import torch
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from advrobust import distributed
from advrobust.defenses import AdversarialTraining
from advrobust.models import create
from advrobust.train import Trainer

torch.set_num_threads(1)


def main(checkpoint: str, epochs: int, out: str, plain: bool) -> None:
    distributed.init_from_env()
    g = torch.Generator().manual_seed(123)
    if plain:
        x = torch.rand(8, 5, 16, 16, generator=g) * 0.02
        data = TensorDataset(x, torch.rand(8, generator=g), torch.rand(8, generator=g) * 0.1)
        torch.manual_seed(0)
        model = create("photoz_small", image_size=16, channels=(4, 8, 8), fc_width=16, n_bins=12)
        trainer = Trainer(model, "photoz_ce", lr=1e-2, progress=False, seed=3)
        trainer.fit(data, 1, batch_size=8)
    else:
        data = TensorDataset(torch.randn(256, 3, 16, 16, generator=g), torch.randint(0, 3, (256,), generator=g))
        torch.manual_seed(0)
        model = create("convnet", image_size=16, channels=(4, 8), kernel_sizes=(3, 3), latent_dim=8)
        trainer = Trainer(model, "ce", lr=1e-2, progress=False, seed=5, checkpoint=checkpoint,
                          batch_transform=AdversarialTraining("fgsm_rs", 0.05, fraction=0.5))
        trainer.fit(data, epochs, batch_size=16)
    if distributed.is_main():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], "--plain" in sys.argv[4:])
