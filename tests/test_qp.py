"""advrobust.data.write_qp: files that qp.read gives back with the same p.d.f.s, ids and z_spec."""
import sys

import numpy as np
import pytest
import torch

from advrobust.data import write_qp
from advrobust.metrics import pdf_columns
from advrobust.redshift import bin_edges


@pytest.fixture
def qp():
    return pytest.importorskip("qp")


def _pdfs(n=25, bins=180, seed=0):
    logits = torch.randn(n, bins, generator=torch.Generator().manual_seed(seed)) * 3
    return torch.softmax(logits, dim=1)


def test_written_file_reads_back_with_qp(tmp_path, qp):
    pdf, edges = _pdfs(), bin_edges(180, 4.0)
    ids = np.arange(1000, 1025, dtype=np.int64)
    z_spec = np.linspace(0.05, 3.9, 25)
    path = tmp_path / "photoz.hdf5"
    write_qp(path, pdf, edges, ids=ids, z_spec=torch.from_numpy(z_spec))
    ensemble = qp.read(str(path))
    assert ensemble.gen_class is qp.hist_gen and ensemble.npdf == 25
    np.testing.assert_allclose(ensemble.metadata["bins"].ravel(), edges.numpy(), rtol=0, atol=0)
    p = pdf.double().numpy()
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ensemble.objdata["pdfs"] * np.diff(edges.numpy()), p, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(ensemble.ancil["id"], ids)
    np.testing.assert_array_equal(ensemble.ancil["z_spec"], z_spec)
    # qp's own CDF of the file at z_spec is the PIT of advrobust.metrics
    pit_qp = np.squeeze(ensemble.cdf(np.vstack(z_spec)))
    np.testing.assert_allclose(pit_qp, pdf_columns(pdf, z_spec, edges)["pit"], atol=1e-12)


def test_without_ancillary_columns(tmp_path, qp):
    path = tmp_path / "p.hdf5"
    write_qp(path, [[0.25, 0.75], [1.0, 0.0]], [0.0, 0.5, 1.5])
    ensemble = qp.read(str(path))
    np.testing.assert_allclose(ensemble.objdata["pdfs"], [[0.5, 0.75], [2.0, 0.0]], rtol=1e-15)
    assert not ensemble.ancil


def test_bad_input_raises(tmp_path, qp):
    edges = [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"\.hdf5"):
        write_qp(tmp_path / "p.pq", [[0.5, 0.5]], edges)
    with pytest.raises(ValueError, match="strictly increasing"):
        write_qp(tmp_path / "p.hdf5", [[0.5, 0.5]], [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="negative"):
        write_qp(tmp_path / "p.hdf5", [[1.5, -0.5]], edges)
    with pytest.raises(ValueError, match=r"ids must have one value per p.d.f., shape \(1,\)"):
        write_qp(tmp_path / "p.hdf5", [[0.5, 0.5]], edges, ids=[1, 2])
    with pytest.raises(ValueError, match="z_spec contains NaN"):
        write_qp(tmp_path / "p.hdf5", [[0.5, 0.5]], edges, z_spec=[np.nan])
    assert not any(tmp_path.iterdir())  # nothing written, no temporary file left


def test_missing_qp_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "qp", None)  # import qp now raises ImportError
    with pytest.raises(ImportError, match="pip install qp-prob"):
        write_qp(tmp_path / "p.hdf5", [[0.5, 0.5]], [0.0, 0.5, 1.0])
