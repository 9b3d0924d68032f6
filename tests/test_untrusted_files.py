"""Files a user (or anyone) hands to the loaders: data outside the file, headers that lie about their
size, layouts that would be read wrong, catalogues that do not match (issue: no silent answer)."""
from __future__ import annotations

import zipfile

import h5py
import numpy as np
import pytest

from advrobust.data import load_catalogue, load_images, load_survey, save_arrays
from advrobust.data.readers import open_images


def _secret(tmp_path):
    path = tmp_path / "secret.bin"
    np.arange(2 * 1 * 4 * 4, dtype=np.float32).tofile(path)
    return path


def test_hdf5_images_with_external_storage_are_refused(tmp_path):
    secret = _secret(tmp_path)
    path = tmp_path / "crafted.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", shape=(2, 1, 4, 4), dtype="f4", external=[(str(secret), 0, 128)])
    with pytest.raises(ValueError, match="keeps its data in external files .*secret.bin"):
        open_images(path)


def test_hdf5_virtual_dataset_is_refused(tmp_path):
    source = tmp_path / "other.h5"
    with h5py.File(source, "w") as handle:
        handle.create_dataset("data", data=np.ones((2, 1, 4, 4), np.float32))
    layout = h5py.VirtualLayout(shape=(2, 1, 4, 4), dtype="f4")
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(2, 1, 4, 4))
    path = tmp_path / "virtual.h5"
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset("images", layout)
    with pytest.raises(ValueError, match="virtual dataset"):
        open_images(path)


def test_hdf5_catalogue_reads_only_the_columns_asked_for(tmp_path):
    path = tmp_path / "cat.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("z_spec", data=np.linspace(0.1, 0.3, 4))
        # an unrequested column whose data cannot be read: reading it would raise
        handle.create_dataset("huge", shape=(4,), dtype="f8", external=[(str(tmp_path / "gone.bin"), 0, 32)])
    table = load_catalogue(path, columns=["z_spec"])
    assert list(table.columns) == ["z_spec"] and len(table) == 4
    assert table.attrs["file_columns"] == ["huge", "z_spec"]
    with pytest.raises(ValueError, match="'huge' keeps its data in external files"):
        load_catalogue(path, columns=["huge"])


def _npz_with_lying_header(path, name: str, shape: tuple) -> None:
    """An .npz whose member header claims ``shape`` but holds 10 float64 values."""
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name + ".npy", buffer.getvalue() + np.zeros(10).tobytes())


def test_npz_member_asking_for_more_than_it_holds_is_refused_before_allocating(tmp_path):
    images = tmp_path / "images.npz"
    _npz_with_lying_header(images, "images", (100_000, 5, 64, 64))  # 16 GB claimed, 80 bytes held
    with pytest.raises(ValueError, match=r"claims shape \(100000, 5, 64, 64\).*holds 80 bytes.*refusing to allocate"):
        open_images(images)
    catalogue = tmp_path / "cat.npz"
    _npz_with_lying_header(catalogue, "z_spec", (300_000_000,))
    with pytest.raises(ValueError, match="refusing to allocate"):
        load_catalogue(catalogue, columns=["z_spec"])


def test_channels_last_cube_is_refused_with_the_transpose(tmp_path):
    path = tmp_path / "nhwc.fits"
    save_arrays(path, {"images": np.zeros((2, 32, 32, 3), np.float32)})
    with pytest.raises(ValueError, match=r"looks channels-last \(N, H, W, C\).*transpose\(cube, \(0, 3, 1, 2\)\)"):
        load_images(path)
    np.save(tmp_path / "nhwc.npy", np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="channels-last"):
        open_images(tmp_path / "nhwc.npy")
    # a genuine (N, C, H, W) cube with many bands is read as it is
    assert open_images(_save_npy(tmp_path, (2, 20, 32, 32))).shape == (2, 20, 32, 32)


def _save_npy(tmp_path, shape):
    path = tmp_path / "nchw.npy"
    np.save(path, np.zeros(shape, np.float32))
    return path


def test_a_single_2d_fits_image_says_a_cube_of_cutouts_is_needed(tmp_path):
    from astropy.io import fits

    path = tmp_path / "frame.fits"
    fits.PrimaryHDU(np.zeros((50, 60), np.float32)).writeto(path)
    with pytest.raises(ValueError, match=r"cube of cutouts \(N, C, H, W\).*got shape \(50, 60\).*Cutout2D"):
        load_images(path)
    with pytest.raises(ValueError, match=r"cube of cutouts \(N, C, H, W\).*got shape \(50, 60\)"):
        load_images(path, key="PRIMARY")


def test_a_catalogue_without_columns_is_still_opened_and_checked(tmp_path):
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((5, 1, 4, 4), np.float32))
    short = tmp_path / "short.csv"
    short.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(ValueError, match="catalogue has 2 rows but there are 5 images"):
        load_survey(images, short)
    with pytest.raises(FileNotFoundError):
        load_survey(images, tmp_path / "missing.csv")
    full = tmp_path / "full.csv"
    full.write_text("a\n" + "\n".join(map(str, range(5))) + "\n")
    assert len(load_survey(images, full)) == 5


def test_the_pixel_unit_is_read_from_the_file(tmp_path):
    from astropy.io import fits

    cube = np.zeros((2, 3, 8, 8), np.float32)
    hdu = fits.ImageHDU(cube, name="IMAGES")
    hdu.header["BUNIT"] = "electron/s"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "cube.fits")
    assert open_images(tmp_path / "cube.fits").unit == "electron/s"
    with h5py.File(tmp_path / "cube.h5", "w") as handle:
        handle.create_dataset("images", data=cube).attrs["unit"] = "nanomaggy"
    assert open_images(tmp_path / "cube.h5").unit == "nanomaggy"
    np.save(tmp_path / "cube.npy", cube)
    assert open_images(tmp_path / "cube.npy").unit is None


def test_hdf5_external_link_is_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("data", data=np.ones((2, 1, 4, 4), np.float32))
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as handle:
        handle["images"] = h5py.ExternalLink(str(other), "data")
    with pytest.raises(ValueError, match="external link"):
        open_images(path)


def test_small_channels_last_stamps_are_refused_too(tmp_path):
    np.save(tmp_path / "nhwc.npy", np.zeros((2, 15, 15, 5), np.float32))
    with pytest.raises(ValueError, match="channels-last"):
        open_images(tmp_path / "nhwc.npy")


def test_a_catalogue_with_an_auxiliary_array_is_still_measured(tmp_path):
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((10, 1, 4, 4), np.float32))
    catalogue = tmp_path / "cat.npz"
    np.savez(catalogue, z=np.linspace(0.1, 1, 10), band_names=np.arange(5))
    assert len(load_catalogue(catalogue, columns=[])) == 10
    assert len(load_survey(images, catalogue)) == 10
