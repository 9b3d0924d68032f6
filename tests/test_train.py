"""The trainer: a SIGKILLed run resumes to bit-identical weights, a 2-process torchrun step equals
the single-process step, gradients are zeroed every step, checkpoints round-trip, argument errors."""
import copy
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from advrobust.models import create
from advrobust.train import Batch, Trainer, WeightedCrossEntropy, inverse_frequency_weights, load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_train_worker.py")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    return env


def _run(*args, timeout=120):
    subprocess.run([sys.executable, *args], env=_env(), check=True, timeout=timeout, capture_output=True)


def test_sigkill_then_resume_gives_bit_identical_weights(tmp_path):
    epochs = 6
    straight_run = subprocess.Popen([sys.executable, WORKER, str(tmp_path / "straight.safetensors"), str(epochs),
                                     str(tmp_path / "straight_out.safetensors")], env=_env())
    ckpt = tmp_path / "killed.safetensors"
    proc = subprocess.Popen([sys.executable, WORKER, str(ckpt), str(epochs), str(tmp_path / "never.safetensors")],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _, meta = load_checkpoint(ckpt)
    assert 1 <= meta["epoch"] < epochs, "the run must be killed mid-way"
    _run(WORKER, str(ckpt), str(epochs), str(tmp_path / "resumed_out.safetensors"))
    assert straight_run.wait(timeout=120) == 0
    straight = load_file(tmp_path / "straight_out.safetensors")
    resumed = load_file(tmp_path / "resumed_out.safetensors")
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    assert load_checkpoint(ckpt)[1]["epoch"] == epochs


def test_torchrun_two_processes_step_equals_single_process_step(tmp_path):
    single_run = subprocess.Popen([sys.executable, WORKER, "-", "1", str(tmp_path / "single.safetensors"), "--plain"],
                                  env=_env())
    ddp_run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                              WORKER, "-", "1", str(tmp_path / "ddp.safetensors"), "--plain"],
                             env=_env(), timeout=180, capture_output=True, text=True)
    assert ddp_run.returncode == 0, ddp_run.stderr[-3000:]
    assert single_run.wait(timeout=120) == 0
    single, ddp = load_file(tmp_path / "single.safetensors"), load_file(tmp_path / "ddp.safetensors")
    torch.manual_seed(0)
    init = create("photoz_small", image_size=16, channels=(4, 8, 8), fc_width=16, n_bins=12).state_dict()
    assert any(not torch.equal(single[k], init[k]) for k in single)  # the step moved the weights
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-5, atol=1e-6)


def _tiny():
    torch.manual_seed(0)
    return create("convnet", image_size=8, channels=(4,), kernel_sizes=(3,), latent_dim=8)


def test_gradients_are_zeroed_every_step():
    model = _tiny()
    trainer = Trainer(model, "ce", lr=1e-3, progress=False)
    b = Batch(torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6,)))
    trainer.train_step(b)
    before = copy.deepcopy(model)  # the weights the second step's gradient is taken at
    trainer.train_step(b)
    got = [p.grad.clone() for p in model.parameters()]
    before.zero_grad()
    torch.nn.functional.cross_entropy(before(b.x), b.y).backward()
    for g, p in zip(got, before.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_checkpoint_round_trip_continues_identically(tmp_path):
    data = TensorDataset(torch.randn(32, 3, 8, 8), torch.randint(0, 3, (32,)))
    a = Trainer(_tiny(), "ce", plateau_patience=1, progress=False, checkpoint=tmp_path / "a.safetensors")
    a.fit(data, 2, batch_size=8)
    b = Trainer(_tiny(), "ce", plateau_patience=1, progress=False, checkpoint=tmp_path / "a.safetensors")
    b.load(tmp_path / "a.safetensors")
    assert b.epoch == 2 and b.history == a.history
    a.checkpoint = b.checkpoint = None
    a.fit(data, 3, batch_size=8)
    b.fit(data, 3, batch_size=8)
    for p, q in zip(a.module.parameters(), b.module.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        from advrobust.models import save
        save(_tiny(), tmp_path / "weights.safetensors")
        load_checkpoint(tmp_path / "weights.safetensors")


def test_one_cycle_schedule_and_resume(tmp_path):
    data = TensorDataset(torch.randn(32, 3, 8, 8), torch.randint(0, 3, (32,)))
    lrs = []
    trainer = Trainer(_tiny(), "ce", lr=0.01, one_cycle=True, progress=False)
    step = trainer.train_step
    trainer.train_step = lambda b: (lrs.append(trainer.optimizer.param_groups[0]["lr"]), step(b))[1]
    trainer.fit(data, 5, batch_size=8)  # 20 steps: warm-up to the peak at step 6 (30%), then cosine down
    reference = torch.optim.lr_scheduler.OneCycleLR(
        torch.optim.Adam(_tiny().parameters(), lr=0.01), max_lr=0.01, total_steps=20)
    expected = []
    for _ in range(20):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert lrs == pytest.approx(expected) and max(lrs) == pytest.approx(0.01) and lrs[0] == pytest.approx(0.01 / 25)
    # a run stopped after 2 of 5 epochs and resumed from its checkpoint ends with the same weights
    ckpt = tmp_path / "c.safetensors"
    Trainer(_tiny(), "ce", lr=0.01, one_cycle=True, progress=False, checkpoint=ckpt).fit(data, 5, batch_size=8)
    straight = load_checkpoint(ckpt)[0]
    ckpt.unlink()
    first = Trainer(_tiny(), "ce", lr=0.01, one_cycle=True, progress=False, checkpoint=ckpt)
    first._stopped = lambda: first.epoch >= 2  # stop after two epochs, as a killed run would
    first.fit(data, 5, batch_size=8)
    assert first.epoch == 2
    Trainer(_tiny(), "ce", lr=0.01, one_cycle=True, progress=False, checkpoint=ckpt).fit(data, 5, batch_size=8)
    resumed = load_checkpoint(ckpt)[0]
    for k, v in straight.items():
        if k.startswith("model."):
            assert torch.equal(v, resumed[k]), k
    with pytest.raises(ValueError, match="one-cycle schedule covers 20 steps"):
        Trainer(_tiny(), "ce", lr=0.01, one_cycle=True, progress=False, checkpoint=ckpt).fit(data, 6, batch_size=8)
    with pytest.raises(ValueError, match="two learning-rate schedules"):
        Trainer(_tiny(), "ce", one_cycle=True, plateau_patience=2)


def test_early_stopping_and_history():
    data = TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,)))
    # a learning rate of 10 makes the validation loss worse after the first epoch
    trainer = Trainer(_tiny(), "ce", lr=10.0, early_stopping=2, progress=False)
    history = trainer.fit(data, 20, batch_size=8, val=data)
    assert len(history) < 20 and {"train_loss", "val_loss", "val_accuracy", "lr"} <= history[0].keys()


def test_weighted_cross_entropy():
    y = torch.tensor([0, 0, 0, 1])
    w = inverse_frequency_weights(y, 2)
    torch.testing.assert_close(w, torch.tensor([4 / 6, 2.0]))
    logits = torch.randn(4, 2)
    per = WeightedCrossEntropy(w)(logits, y)
    torch.testing.assert_close(per, torch.nn.functional.cross_entropy(logits, y, reduction="none") * w[y])
    with pytest.raises(ValueError, match="no sample"):
        inverse_frequency_weights(y, 3)


def test_trainer_argument_errors():
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(_tiny(), "ce", optimizer="sgd")
    with pytest.raises(ValueError, match="lr"):
        Trainer(_tiny(), "ce", lr=0)
    with pytest.raises(TypeError, match="batch_transform"):
        Trainer(_tiny(), "ce", batch_transform=3)
    with pytest.raises(ValueError, match="unknown loss"):
        Trainer(_tiny(), "mse")


def test_dictionary_items_need_fields():
    from advrobust.data import SurveyDataset
    g = torch.Generator().manual_seed(0)
    ds = SurveyDataset(torch.rand(16, 5, 16, 16, generator=g) * 0.02,
                       {"z_spec": torch.rand(16, generator=g), "ebv": torch.rand(16, generator=g) * 0.1})
    torch.manual_seed(0)
    model = create("photoz_small", image_size=16, channels=(4, 8, 8), fc_width=16, n_bins=12)
    with pytest.raises(TypeError, match="fields="):
        Trainer(model, "photoz_ce", progress=False).fit(ds, 1, batch_size=8)
    history = Trainer(model, "photoz_ce", progress=False, fields=("image", "z_spec", "ebv")).fit(ds, 1, batch_size=8)
    assert history[0]["train_loss"] > 0


def test_train_step_called_directly_gives_the_extra_losses_the_latents():
    """Latent capture belongs to ``train_step``, not only to ``fit``: MMD adaptation works in a hand-written loop."""
    from advrobust.defenses import MMDAdaptation

    model = _tiny()
    g = torch.Generator().manual_seed(1)
    x, target = torch.rand(6, 3, 8, 8, generator=g), torch.rand(10, 3, 8, 8, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    seen = []

    def record(trainer, batch, output):
        seen.append(trainer.latent.detach().clone())
        return output.sum() * 0.0

    trainer = Trainer(model, "ce", extra_losses=[record, MMDAdaptation(target, lam=1.0)], progress=False)
    with torch.no_grad():
        want = copy.deepcopy(model).train().features(x)  # train mode: the step's batch statistics
    loss = trainer.train_step(Batch(x, y))
    assert len(seen) == 1 and torch.allclose(seen[0], want, atol=1e-6)
    assert trainer.latent is None and bool(torch.isfinite(torch.tensor(loss)))  # cleared after the step
    assert all(len(m._forward_pre_hooks) == 0 for m in model.modules())  # no hook left behind

