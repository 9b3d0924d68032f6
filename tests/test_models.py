"""Models: exact parameter counts of the papers' tables, shapes, latent vectors, weight files."""
import json

import pytest
import torch

from advrobust import models
from advrobust.models import PASQUET_CELLS, ConvNet


def n_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("pasquet_inception", {}, 27_596_372),  # Campagne 2021, Table A1
        ("pasquet_inception", {"fc_widths": (2000, 1096)}, 48_722_852),  # Campagne 2021, section 4.3
        ("pasquet_inception", {"cells": PASQUET_CELLS[:4] + ((92, 256, 0, 256),)}, 45_720_660),
        ("campagne_cnn", {}, 13_461_008),  # Campagne 2021, Table A2
        ("convnet", {}, 1_187_203),  # Ćiprijanović et al. 2022, Table 1
        ("resnet18", {}, 11_176_512 + 512 * 256 + 256 + 256 * 3 + 3),  # torchvision trunk + 256-d latent + 3
    ],
)
def test_parameter_counts(name, kwargs, expected):
    assert n_trainable(models.create(name, **kwargs)) == expected


def test_table_a1_layer_sizes():
    model = models.create("pasquet_inception")
    # Table A1 rows: conv0 (+PReLU), i0 and i4 totals, fc0 with its 22,273 inputs.
    assert n_trainable(model.conv0) == 8128
    cells = [m for m in model.trunk if isinstance(m, models.InceptionCell)]
    assert [n_trainable(c) for c in cells] == [118_432, 269_288, 539_064, 594_008, 255_376]
    assert [c.out_channels for c in cells] == [240, 340, 476, 476, 348]
    assert model.fc0.in_features == 22_273 and n_trainable(model.fc0) == 24_412_304
    wide = models.create("pasquet_inception", cells=PASQUET_CELLS[:4] + ((92, 256, 0, 256),))
    assert wide.fc0.in_features == 38_657


def test_table_a2_layer_sizes():
    model = models.create("campagne_cnn")
    assert model.fc0.in_features == 12_801
    maps = model.trunk(torch.zeros(1, 5, 64, 64))
    assert maps.shape == (1, 128, 10, 10)


@pytest.mark.parametrize("name", ["pasquet_inception", "campagne_cnn"])
def test_photoz_initialisation_and_layer_types(name):
    """Campagne 2021: Xavier-uniform weights and bias 0.1; average pooling (parameter counts cannot tell it
    from max)."""
    model = models.create(name)
    linears = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(torch.all(m.bias == 0.1) for m in linears)
    for m in linears:
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
        assert m.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.AvgPool2d in kinds and torch.nn.MaxPool2d not in kinds
    # Table A1 counts PReLU parameters (one per channel after each convolution); Table A2 none
    assert (torch.nn.PReLU in kinds) == (name == "pasquet_inception")


def test_redshift_bins():
    model = models.create("photoz_small", n_bins=4, z_max=0.4)
    torch.testing.assert_close(model.bin_centres, torch.tensor([0.05, 0.15, 0.25, 0.35]))
    z = torch.tensor([-0.1, 0.0, 0.0999, 0.1, 0.39, 0.4, 2.0])
    assert model.redshift_to_bin(z).tolist() == [0, 0, 0, 1, 3, 3, 3]


@pytest.mark.parametrize("ebv_shape", [(2,), (2, 1)])
@pytest.mark.parametrize("name", ["pasquet_inception", "campagne_cnn", "photoz_small"])
def test_photoz_interface(name, ebv_shape):
    torch.manual_seed(0)
    model = models.create(name, z_max=0.4).eval()
    image, ebv = torch.randn(2, 5, 64, 64), torch.rand(ebv_shape) * 0.1
    with torch.no_grad():
        logits, latent = model(image, ebv), model.features(image, ebv)
        pdf, z = model.pdf(image, ebv), model.z_phot(image, ebv)
    assert logits.shape == (2, 180) and pdf.shape == (2, 180)
    assert latent.shape == (2, model.latent_dim)
    torch.testing.assert_close(model.head(latent), logits)
    torch.testing.assert_close(pdf.sum(1), torch.ones(2))
    torch.testing.assert_close(z, pdf @ model.bin_centres)
    assert model.bin_centres[0] == pytest.approx(0.2 / 180) and model.bin_centres[-1] == pytest.approx(0.4 - 0.2 / 180)
    assert torch.all((z > 0) & (z < 0.4))


@pytest.mark.parametrize("name, size", [("convnet", 100), ("resnet18", 100), ("morphology_small", 100)])
def test_classifier_interface(name, size):
    model = models.create(name).eval()
    image = torch.randn(3, 3, size, size)
    with torch.no_grad():
        latent = model.features(image)
        assert latent.shape == (3, model.latent_dim)
        torch.testing.assert_close(model.head(latent), model(image))
    assert model(image).shape == (3, 3)


def test_bad_inputs_are_named():
    model = models.create("photoz_small")
    with pytest.raises(ValueError, match=r"\(B, 5, 64, 64\)"):
        model(torch.zeros(2, 3, 64, 64), torch.zeros(2))
    with pytest.raises(ValueError, match="ebv"):
        model(torch.zeros(2, 5, 64, 64), torch.zeros(3))
    with pytest.raises(ValueError, match="unknown model"):
        models.create("vgg16")
    with pytest.raises(TypeError):
        models.create("convnet", depth=3)


def test_gradient_reaches_the_image():
    model = models.create("photoz_small")
    image = torch.randn(2, 5, 64, 64, requires_grad=True)
    model.z_phot(image, torch.zeros(2)).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "name, kwargs, inputs",
    [
        ("photoz_small", {"z_max": 0.4, "n_bins": 90}, (torch.randn(2, 5, 64, 64), torch.rand(2))),
        ("morphology_small", {}, (torch.randn(2, 3, 100, 100),)),
        ("pasquet_inception", {"input_softening": 0.05, "fc_widths": (8, 8)}, (torch.randn(1, 5, 64, 64), torch.rand(1))),
        ("resnet18", {"widths": (8, 8, 16, 16), "latent_dim": 16}, (torch.randn(2, 3, 48, 48),)),
    ],
)
def test_save_load_round_trip(tmp_path, name, kwargs, inputs):
    torch.manual_seed(1)
    model = models.create(name, **kwargs)
    model.train()(*inputs)  # move the batch-norm running statistics away from their defaults
    model.eval()
    path = tmp_path / "model.safetensors"
    models.save(model, path)
    loaded = models.load(path).eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.registry_name == name
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), model(*inputs))
    # The file is plain safetensors whose header carries the constructor arguments as JSON.
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = json.loads(handle.metadata()["advrobust"])
    assert header["name"] == name and header["kwargs"] == json.loads(json.dumps(model.config))


def test_load_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not an advrobust model file"):
        models.load(path)
    with pytest.raises(TypeError, match="create"):
        models.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


def test_save_takes_numpy_arguments_and_load_names_mismatched_tensors(tmp_path):
    import numpy as np
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = models.create("photoz_small", fc_width=np.int64(16), z_max=np.float32(0.5))
    path = tmp_path / "small.safetensors"
    models.save(model, path)
    assert models.load(path).config["fc_width"] == 16
    with safe_open(str(path), framework="pt") as handle:  # same header, a tensor of another shape
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    tensors["head.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match="tensors do not match photoz_small"):
        models.load(tmp_path / "bad.safetensors")


def test_load_checks_the_header_shapes_before_building(tmp_path, monkeypatch):
    """A tiny file whose header asks for a big model is refused before the model is allocated."""
    from safetensors.torch import save_file
    import advrobust.models.registry as registry

    path = tmp_path / "liar.safetensors"
    header = {"name": "photoz_small", "kwargs": {"fc_width": 4096}}
    save_file({"head.weight": torch.zeros(2, 2)}, str(path), metadata={"advrobust": json.dumps(header)})
    built_on = []
    real_create = registry.create

    def spy(name, **kwargs):
        built_on.append(torch.empty(0).device.type)  # "meta" inside torch.device("meta")
        return real_create(name, **kwargs)

    monkeypatch.setattr(registry, "create", spy)
    with pytest.raises(ValueError, match=r"tensors do not match photoz_small.*missing \["):
        models.load(path)
    assert "cpu" not in built_on
    for bad in ({"name": "photoz_small", "kwargs": {"no_such_argument": 1}}, {"name": "nope", "kwargs": {}}, [1]):
        save_file({"w": torch.zeros(1)}, str(path), metadata={"advrobust": json.dumps(bad)})
        with pytest.raises(ValueError, match="header"):
            models.load(path)
    assert "cpu" not in built_on


def test_model_arguments_name_what_create_accepts():
    assert "image_size" in models.model_arguments("morphology_small")
    assert "image_size" not in models.model_arguments("resnet18")  # global pooling: any stamp size
    for name in models.available_models():
        assert "self" not in models.model_arguments(name)
    with pytest.raises(ValueError, match="unknown model"):
        models.model_arguments("vgg16")


class TemperedConvNet(ConvNet):
    """A ConvNet with one more constructor argument, which changes the logits but no tensor shape."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature

    def forward(self, image):
        return super().forward(image) / self.temperature


@pytest.fixture
def tempered(monkeypatch):
    """``TemperedConvNet`` registered as ``tempered_convnet`` (with a preset) for one test."""
    import advrobust.models.registry as registry

    preset = {"image_size": 16, "channels": (4, 4), "kernel_sizes": (3, 3), "latent_dim": 8}
    monkeypatch.setitem(registry._REGISTRY, "tempered_convnet", (TemperedConvNet, preset))
    return "tempered_convnet"


def test_every_constructor_argument_survives_save_and_load(tmp_path, tempered):
    """No model writes its config by hand: an argument a subclass adds is saved and reloaded too
    (a hand-written config inherited from ConvNet would drop ``temperature``, and the reloaded
    model would silently divide by 1)."""
    torch.manual_seed(0)
    model = models.create(tempered, temperature=4.0, n_classes=5).eval()
    models.save(model, tmp_path / "tempered.safetensors")
    loaded = models.load(tmp_path / "tempered.safetensors").eval()
    assert type(loaded) is TemperedConvNet and loaded.temperature == 4.0
    image = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(image), model(image))
    # its own argument (default or given), then what its **kwargs passed on (preset and given)
    assert loaded.config == model.config == {"temperature": 4.0, "image_size": 16, "channels": [4, 4],
                                             "kernel_sizes": [3, 3], "latent_dim": 8, "n_classes": 5}


def test_registry_name_is_the_name_create_was_called_with(tmp_path, tempered):
    """One class may sit under several names (``convnet``, ``morphology_small``); the name is the one
    ``create`` was given, never a class attribute a subclass inherits, and a model built by its
    class alone has no name: save refuses it instead of writing its parent's name."""
    for name in models.available_models():
        with torch.device("meta"):
            assert models.create(name).registry_name == name
    assert type(models.create("morphology_small")) is type(models.create("convnet")) is ConvNet
    assert models.create(tempered).registry_name == tempered
    with pytest.raises(TypeError, match="create"):
        models.save(TemperedConvNet(temperature=2.0), tmp_path / "unnamed.safetensors")
    with pytest.raises(TypeError, match="create"):
        models.save(ConvNet(), tmp_path / "unnamed.safetensors")
    assert not (tmp_path / "unnamed.safetensors").exists()


def test_files_written_before_create_recorded_the_arguments_still_load(tmp_path):
    """The header of files saved by earlier versions (hand-written configs), byte for byte."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    written = models.create("morphology_small", image_size=32)
    header = ('{"name": "morphology_small", "kwargs": {"in_channels": 3, "image_size": 32, "channels": [8, 16, 16], '
              '"kernel_sizes": [5, 3, 3], "latent_dim": 32, "n_classes": 3}}')
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in written.state_dict().items()}, str(path), metadata={"advrobust": header})
    loaded = models.load(path)
    assert loaded.registry_name == "morphology_small" and loaded.config == json.loads(header)["kwargs"]
    models.save(loaded, tmp_path / "new.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "new.safetensors"), framework="pt") as handle:
        assert handle.metadata()["advrobust"] == header
