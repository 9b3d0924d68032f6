"""The papers' models, built by name with :func:`create` and stored with :func:`save` / :func:`load`.

:func:`create` records on the model the name it was built under (``registry_name``) and every
constructor argument (``config``, defaults included); :func:`save` writes both into the file's header.

Interface shared by all models (:class:`LatentModel`): ``forward`` returns logits ``(B, n_outputs)``;
``features(*inputs)`` returns the latent vector ``(B, latent_dim)``; ``head`` maps it to the logits.
Photo-z models (:class:`PhotozModel`) take ``(image, ebv)`` and add ``pdf``, ``z_phot``,
``bin_centres`` and ``z_max``.

| name | paper | input | output | parameters |
|---|---|---|---|---|
| ``pasquet_inception`` | Campagne 2021, Table A1 | (5, 64, 64) + ebv | 180 bins | 27,596,372 |
| ``campagne_cnn`` | Campagne 2021, Table A2 | (5, 64, 64) + ebv | 180 bins | 13,461,008 |
| ``convnet`` | Ćiprijanović et al. 2022, Table 1 | (3, 100, 100) | 3 classes | 1,187,203 |
| ``resnet18`` | Ćiprijanović et al. 2022 (He et al.) | (3, H, W) | 3 classes | 11,308,611 |
| ``photoz_small`` | small CNN, asinh input | (5, 64, 64) + ebv | 180 bins | 28,500 |
| ``morphology_small`` | small ``convnet`` | (3, 100, 100) | 3 classes | 78,035 |
"""
from advrobust.models.base import LatentModel, PhotozModel
from advrobust.models.cnn import CampagneCNN, SmallPhotozCNN
from advrobust.models.convnet import ConvNet
from advrobust.models.inception import PASQUET_CELLS, InceptionCell, PasquetInception
from advrobust.models.registry import available_models, create, load, model_arguments, save
from advrobust.models.resnet import ResNet18

__all__ = [
    "create",
    "available_models",
    "model_arguments",
    "save",
    "load",
    "LatentModel",
    "PhotozModel",
    "PasquetInception",
    "InceptionCell",
    "PASQUET_CELLS",
    "CampagneCNN",
    "SmallPhotozCNN",
    "ConvNet",
    "ResNet18",
]
