"""advrobust.data.readers: row ranges of image cubes in every format, converted per chunk, without
reading the whole file."""
import os
import pickle

import numpy as np
import pytest
import torch

from advrobust.data import SurveyDataset, load_images, load_survey, open_images, save_arrays

RNG = np.random.default_rng(12)
CUBE = RNG.normal(size=(10, 3, 5, 4)).astype(np.float64)


def _write(tmp_path, kind):
    """A file holding CUBE in one of the formats a survey may come in; returns (path, key)."""
    if kind == "npy-big-endian-f8":
        path = tmp_path / "cube.npy"
        np.save(path, CUBE.astype(">f8"))
    elif kind == "npy-fortran-f4":
        path = tmp_path / "cube.npy"
        np.save(path, np.asfortranarray(CUBE.astype(np.float32)))
    elif kind == "npz":
        path = tmp_path / "cube.npz"
        np.savez(path, images=CUBE.astype(np.float32))
    elif kind == "h5-big-endian":
        import h5py

        path = tmp_path / "cube.h5"
        with h5py.File(path, "w") as handle:
            handle.create_dataset("cutouts", data=CUBE.astype(">f4"), chunks=(2, 3, 5, 4))
        return path, "cutouts"
    elif kind in ("fits", "fits-compressed", "fits.gz"):
        from astropy.io import fits

        path = tmp_path / ("cube.fits.gz" if kind == "fits.gz" else "cube.fits")
        hdu = (fits.CompImageHDU if kind == "fits-compressed" else fits.ImageHDU)(CUBE.astype(np.float32), name="SCI")
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
        return path, None
    return path, None


KINDS = ["npy-big-endian-f8", "npy-fortran-f4", "npz", "h5-big-endian", "fits", "fits-compressed", "fits.gz"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_format_serves_row_ranges_as_native_float32(tmp_path, kind):
    path, key = _write(tmp_path, kind)
    expected = CUBE.astype(np.float32)
    with open_images(path, key) as reader:
        assert len(reader) == 10 and reader.shape == (10, 3, 5, 4)
        assert reader.whole_file == (kind == "npz")
        rows = reader.read(3, 7)
        assert rows.dtype == np.float32 and rows.dtype.isnative and rows.flags.writeable
        np.testing.assert_allclose(rows, expected[3:7], rtol=1e-6 if kind == "fits-compressed" else 0, atol=1e-3
                                   if kind == "fits-compressed" else 0)
        assert reader.read(8, 100).shape == (2, 3, 5, 4) and reader.read(5, 5).shape == (0, 3, 5, 4)
        starts = [start for start, _ in reader.chunks(4)]
        assert starts == [0, 4, 8]
        np.testing.assert_allclose(np.concatenate([c for _, c in reader.chunks(4)]), reader.read(0, 10))
    np.testing.assert_allclose(load_images(path, key), reader.read(0, 10))


def test_fits_scaling_blank_and_3d_cubes(tmp_path):
    from astropy.io import fits

    raw = np.arange(2 * 4 * 4, dtype=np.int16).reshape(2, 4, 4)
    hdu = fits.ImageHDU(raw, name="IMAGES")
    hdu.header.update(BSCALE=2.0, BZERO=10.0, BLANK=5)
    path = tmp_path / "scaled.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with open_images(path) as reader:
        assert reader.shape == (2, 1, 4, 4) and reader.dtype == np.dtype(">i2")
        rows = reader.read(0, 1)
    assert rows[0, 0, 0, 0] == 10.0 and rows[0, 0, 0, 2] == 14.0 and np.isnan(rows[0, 0, 1, 1])  # BLANK = 5


def test_reader_errors_and_reopening_after_pickling(tmp_path):
    path, key = _write(tmp_path, "h5-big-endian")
    with pytest.raises(ValueError, match="no dataset 'images'; it holds cutouts"):
        open_images(path)
    with pytest.raises(FileNotFoundError):
        open_images(tmp_path / "absent.h5")
    with pytest.raises(ValueError, match="key='x' does not apply"):
        open_images(_write(tmp_path, "npy-fortran-f4")[0], key="x")
    reader = open_images(path, key)
    with pytest.raises(TypeError, match="start must be an integer"):
        reader.read(1.5, 3)
    with pytest.raises(ValueError, match="rows must be an integer >= 1"):
        next(reader.chunks(0))
    first = reader.read(0, 2)
    clone = pickle.loads(pickle.dumps(reader))  # what DataLoader workers get: the file is reopened there
    np.testing.assert_array_equal(clone.read(0, 2), first)
    reader.close()
    clone.close()


def test_survey_dataset_streams_and_scans_for_nan_per_chunk(tmp_path, monkeypatch):
    import h5py

    cube = CUBE.astype(np.float32)
    cube[6, 1, 2, 2] = np.nan
    path = tmp_path / "survey.h5"
    save_arrays(path, {"images": cube, "z_spec": np.linspace(0.1, 1.0, 10), "ebv": np.full(10, 0.02)})
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, args, *more, **kwargs):
        out = original(self, args, *more, **kwargs)
        reads.append((self.name, np.shape(out)[0] if np.ndim(out) else 0))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    ds = load_survey(path, columns=["z_spec", "ebv"])  # catalogue in the same file: the cube is not read
    assert [r for r in reads if r[0] == "/images"] == []
    assert torch.equal(ds[2]["image"], torch.from_numpy(cube[2]))
    assert max(n for name, n in reads if name == "/images") == 1
    with pytest.raises(ValueError, match="object 6 .* 1 NaN/Inf pixels"):
        ds[6]
    reads.clear()
    rejected = SurveyDataset(open_images(path), nan_policy="reject", scan_rows=3)
    assert rejected.indices.tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    assert [n for name, n in reads if name == "/images"] == [3, 3, 3, 1]  # chunk by chunk
    loader = torch.utils.data.DataLoader(rejected, batch_size=4)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 5, 4) and batch["index"].tolist() == [0, 1, 2, 3]


def test_npy_reads_map_only_the_rows_asked_for(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.zeros((64, 4, 32, 32), dtype=">f4"))
    with open_images(path) as reader:
        before = _mapped_bytes(path)
        reader.read(10, 12)
        assert _mapped_bytes(path) == before == 0  # the window is unmapped after the copy


def _mapped_bytes(path) -> int:
    """Bytes of ``path`` mapped into this process (Linux), 0 elsewhere."""
    if not os.path.exists("/proc/self/maps"):
        return 0
    total = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(str(path)):
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                total += hi - lo
    return total
