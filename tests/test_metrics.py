"""Photo-z metrics against hand-computed values."""
import numpy as np
import pytest
import torch

from advrobust.metrics import delta_z, photoz_metrics, sigma_mad


def test_hand_computed_values():
    z_spec = np.array([0.0, 0.5, 1.0, 0.25])
    z_phot = np.array([0.01, 0.5, 1.2, 0.25 - 0.0625])
    # dz = [0.01, 0, 0.1, -0.05]
    np.testing.assert_allclose(delta_z(z_phot, z_spec), [0.01, 0.0, 0.1, -0.05], atol=1e-15)
    m = photoz_metrics(torch.tensor(z_phot), torch.tensor(z_spec))
    assert m["bias"] == pytest.approx(0.015)
    # median(dz) = 0.005; |dz - 0.005| = [0.005, 0.005, 0.095, 0.055] -> median 0.03
    assert m["sigma_mad"] == pytest.approx(1.4826 * 0.03)
    assert m["eta"] == pytest.approx(0.25)  # only 0.1 is above 0.05; -0.05 is not strictly above
    assert set(m) == {"bias", "sigma_mad", "eta"}


def test_sigma_mad_of_a_gaussian():
    dz = np.random.default_rng(0).normal(0.0, 0.02, 200_000)
    assert sigma_mad(dz) == pytest.approx(0.02, rel=0.01)


def test_errors():
    with pytest.raises(ValueError, match="same length"):
        photoz_metrics([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        photoz_metrics([np.nan], [0.1])
    with pytest.raises(ValueError, match="1-D"):
        photoz_metrics(np.zeros((2, 2)), np.zeros((2, 2)))


# ---------------------------------------------------------------- classification, latent, attacks, certified

from advrobust.metrics import (  # noqa: E402
    AttackAccumulator, CertifiedAccumulator, ClassificationAccumulator, LatentDistanceAccumulator,
    PhotozAccumulator, average_certified_radius, certified_accuracy, classification_metrics, distance_summary,
    iterations_summary, js_distance, latent_distances, success_rate,
)


def test_weighted_metrics_by_hand():
    y_true = torch.tensor([0, 0, 0, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y_true, y_pred, 3)
    # per class (P, R, F1): 0 (1/2, 1/3, 0.4), 1 (1/3, 1, 0.5), 2 (1, 1/2, 2/3); weights 3/6, 1/6, 2/6
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(23 / 36)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(91 / 180)
    np.testing.assert_array_equal(m["confusion"], [[1, 2, 0], [0, 1, 0], [1, 0, 1]])
    # a class never predicted has precision 0, and one never true has weight 0
    m = classification_metrics([0, 0], [0, 1], 3)
    assert m["precision"] == pytest.approx(1.0) and m["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 1], 3)
    with pytest.raises(TypeError, match="integer"):
        classification_metrics([0.0, 1.0], [0, 1], 3)


def test_latent_distances_and_summary():
    clean = torch.zeros(3, 2, dtype=torch.float64)
    pert = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    d = latent_distances(clean, pert)
    np.testing.assert_allclose(d, [5.0, 1.0, 2.0])
    s = distance_summary(d)
    assert s["median"] == 2.0 and s["mean"] == pytest.approx(8 / 3)
    assert s["sem"] == pytest.approx(np.std([5.0, 1.0, 2.0], ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        latent_distances(clean, pert[:2])


def test_js_distance_limits_and_a_hand_value():
    rng = np.random.default_rng(1)
    a = rng.normal(size=1000)
    assert js_distance(a, a, bins=20) == pytest.approx(0.0, abs=1e-12)
    assert js_distance([0.0, 0.1, 0.2], [10.0, 10.5], bins=10) == pytest.approx(1.0)
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4); JSD = (log2(4/3) + 1/2 log2(2/3) + 1/2 log2(2)) / 2
    jsd = (np.log2(4 / 3) + 0.5 * np.log2(2 / 3) + 0.5) / 2
    assert js_distance([0.1, 0.2], [0.1, 0.9], bins=[0.0, 0.5, 1.0]) == pytest.approx(np.sqrt(jsd))
    with pytest.raises(ValueError, match="no value inside"):
        js_distance([5.0], [0.1], bins=[0.0, 1.0])


def test_attack_metrics():
    assert success_rate(torch.tensor([True, False, True, True])) == 0.75
    s = iterations_summary([0, 10, 80, 20], [True, True, False, True], max_iter=80)
    assert (s["n_success"], s["n_failed"], s["median"], s["mean"], s["max"]) == (3, 1, 10.0, 10.0, 20.0)
    assert np.isnan(iterations_summary([80], [False])["mean"])
    with pytest.raises(ValueError, match="0/1"):
        success_rate([0, 2])


def test_certified_metrics_by_hand():
    pred, rad, lab = [0, 1, -1, 2], [0.5, 0.2, 0.0, 1.0], [0, 0, 1, 2]
    np.testing.assert_allclose(certified_accuracy(pred, rad, lab, [0.0, 0.3, 0.6, 1.0, 2.0]),
                               [0.5, 0.5, 0.25, 0.25, 0.0])
    assert average_certified_radius(pred, rad, lab) == pytest.approx((0.5 + 1.0) / 4)
    with pytest.raises(ValueError, match=">= 0"):
        certified_accuracy([0], [-1.0], [0], [0.0])


# ---------------------------------------------------------------- accumulating = functional on the concatenation

def _batches(seed=0, n=(7, 5, 9)):
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in n:
        z = torch.rand(k, generator=g, dtype=torch.float64)
        out.append(dict(z_spec=z, z_phot=z + 0.05 * torch.randn(k, generator=g, dtype=torch.float64),
                        y=torch.randint(0, 3, (k,), generator=g), p=torch.randint(0, 3, (k,), generator=g),
                        lc=torch.randn(k, 4, generator=g), lp=torch.randn(k, 4, generator=g),
                        succ=torch.rand(k, generator=g) > 0.4, it=torch.randint(0, 81, (k,), generator=g),
                        cp=torch.randint(-1, 3, (k,), generator=g), cr=torch.rand(k, generator=g, dtype=torch.float64)))
    return out


def _accumulators():
    return dict(photoz=PhotozAccumulator(), cls=ClassificationAccumulator(3), lat=LatentDistanceAccumulator(),
                atk=AttackAccumulator(max_iter=80), cert=CertifiedAccumulator([0.0, 0.25, 0.5, 0.75]))


def _update(ms, b):
    ms["photoz"].update(b["z_phot"], b["z_spec"])
    ms["cls"].update(b["y"], b["p"])
    ms["lat"].update(b["lc"], b["lp"])
    ms["atk"].update(b["succ"], b["it"])
    ms["cert"].update(b["cp"], b["cr"], b["y"])


def _accumulate(batches):
    ms = _accumulators()
    for b in batches:
        _update(ms, b)
    return {k: m.compute() for k, m in ms.items()}


def _functional(batches):
    c = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    return dict(photoz=photoz_metrics(c["z_phot"], c["z_spec"]),
                cls=classification_metrics(c["y"], c["p"], 3),
                lat=distance_summary(latent_distances(c["lc"], c["lp"])),
                atk=iterations_summary(c["it"], c["succ"], 80),
                cert=dict(certified_accuracy=certified_accuracy(c["cp"], c["cr"], c["y"], [0.0, 0.25, 0.5, 0.75]),
                          acr=average_certified_radius(c["cp"], c["cr"], c["y"])))


def _assert_same(acc, fun):
    for group, ref in fun.items():
        for key, value in ref.items():
            np.testing.assert_allclose(np.asarray(acc[group][key], dtype=float), np.asarray(value, dtype=float),
                                       rtol=1e-12, err_msg=f"{group}.{key}")


def test_accumulating_equals_functional_on_concatenation():
    batches = _batches()
    _assert_same(_accumulate(batches), _functional(batches))


def test_reset_and_update_after_compute():
    m = ClassificationAccumulator(2)
    m.update([0, 1], [0, 0])
    assert m.compute()["accuracy"] == 0.5
    m.update([1], [1])
    assert m.compute()["accuracy"] == pytest.approx(2 / 3)
    m.reset()
    m.update([1], [1])
    assert m.compute()["accuracy"] == 1.0


def test_updates_stay_on_the_input_device_without_a_host_copy():
    # a meta tensor holds no data: a .cpu(), .item() or NumPy round trip in update would raise
    ms = _accumulators()
    for b in _batches():
        _update(ms, {k: v.to("meta") for k, v in b.items()})
    for name, m in ms.items():
        assert m.device == torch.device("meta"), name
        assert all(t.device.type == "meta" for t in m.local_state().values()), name
    # NumPy / list inputs go to the metric's device
    m = ClassificationAccumulator(3, device="meta")
    m.update([0, 1], np.array([1, 1]))
    assert m.local_state()["confusion"].device.type == "meta"


def test_states_follow_to_and_reset_keeps_the_device():
    m = PhotozAccumulator(device="meta")
    assert all(t.device.type == "meta" for t in m.local_state().values())
    m = LatentDistanceAccumulator()
    m.update(torch.zeros(2, 3), torch.ones(2, 3))
    m.to("meta")
    assert m.local_state()["distances"].device.type == "meta"
    m.reset()
    assert m.device.type == "meta" and m.local_state()["distances"].shape == (0,)


def test_value_errors_of_accumulators_are_raised_in_compute():
    # values are checked once, on the host, in compute (a check per update would be a host sync on a GPU)
    m = ClassificationAccumulator(3)
    m.update([0, 3], [0, 1])
    with pytest.raises(ValueError, match="outside"):
        m.compute()
    with pytest.raises(TypeError, match="integer"):
        m.update([0.0], [0])
    p = PhotozAccumulator()
    p.update([np.nan], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        p.compute()
    with pytest.raises(ValueError, match="lengths differ"):
        p.update([0.1, 0.2], [0.1])
    c = CertifiedAccumulator([0.0])
    c.update([0], [-1.0], [0])
    with pytest.raises(ValueError, match=">= 0"):
        c.compute()
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        LatentDistanceAccumulator().update(torch.zeros(3), torch.zeros(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_updates_do_not_synchronise():
    batches = [{k: v.cuda() for k, v in b.items()} for b in _batches()]
    ms = _accumulators()
    torch.cuda.synchronize()
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")  # any host sync in update raises
    try:
        for b in batches:
            _update(ms, b)
    finally:
        torch.cuda.set_sync_debug_mode(mode)
    assert all(m.device.type == "cuda" for m in ms.values())
    _assert_same({k: m.compute() for k, m in ms.items()}, _functional(_batches()))


def _gloo_worker(rank, world, init_file, out_file):
    import pickle
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        batches = _batches()
        mine = batches[:2] if rank == 0 else batches[2:]  # unequal row counts per rank
        result = _accumulate(mine)
        if rank == 0:
            with open(out_file, "wb") as f:
                pickle.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_reduction_equals_single_process(tmp_path):
    import pickle
    import torch.multiprocessing as mp
    out = tmp_path / "rank0.pkl"
    mp.spawn(_gloo_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    with open(out, "rb") as f:
        reduced = pickle.load(f)
    _assert_same(reduced, _functional(_batches()))
