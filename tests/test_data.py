"""Survey simulator (determinism, physics, learnability) and the file loaders."""
import numpy as np
import pandas as pd
import pytest
import torch

from advrobust import models
from advrobust.data import (
    asinh_stretch,
    SurveyDataset,
    load_arrays,
    load_catalogue,
    load_images,
    load_survey,
    percentile_clip,
    random_dihedral,
    save_arrays,
    simulate_morphology,
    simulate_photoz,
)
from advrobust.data import photometry
from advrobust.metrics import photoz_metrics


@pytest.fixture(scope="module")
def photoz():
    return simulate_photoz(12, seed=7, n_workers=1)


@pytest.fixture(scope="module")
def morphology():
    return simulate_morphology(9, seed=7, n_workers=1)


def test_photoz_output(photoz):
    assert photoz["images"].shape == (12, 5, 64, 64) and photoz["images"].dtype == np.float32
    assert photoz["ebv"].shape == (12,) and photoz["z_spec"].shape == (12,)
    assert np.isfinite(photoz["images"]).all()
    assert np.all((photoz["z_spec"] >= 0.02) & (photoz["z_spec"] < 1.0))
    assert np.all(photoz["ebv"] >= 0)
    # the galaxy is in the middle: the central pixels in i outshine the border
    centre = photoz["images"][:, 3, 28:36, 28:36].mean()
    border = photoz["images"][:, 3, :4, :].mean()
    assert centre > 20 * abs(border)


def test_photoz_deterministic_and_independent_of_workers(photoz):
    again = simulate_photoz(12, seed=7, n_workers=2)
    for key in photoz:
        np.testing.assert_array_equal(again[key], photoz[key])
    other = simulate_photoz(2, seed=8, n_workers=1)
    assert not np.array_equal(other["images"], photoz["images"][:2])


def test_same_sed_is_redder_at_higher_redshift():
    g_minus_r = [np.subtract(*photometry.ab_magnitudes("E", z, ("g", "r"))) for z in (0.05, 0.2, 0.35)]
    assert g_minus_r[0] < g_minus_r[1] < g_minus_r[2]
    # and in the simulated images: the r/g flux ratio of ellipticals grows with z (4000 A break in g -> r)
    data = simulate_photoz(24, seed=3, templates=("E",), z_range=(0.05, 0.4), n_workers=1)
    flux = data["images"][:, :, 24:40, 24:40].sum(axis=(2, 3))
    colour = -2.5 * np.log10(flux[:, 1] / flux[:, 2])
    assert np.corrcoef(colour, data["z_spec"])[0, 1] > 0.8


def test_galaxies_are_fainter_and_smaller_at_higher_redshift():
    """Same template, z ~ 0.075 vs z ~ 0.75: i-band flux falls by the distance dimming, sizes shrink."""
    near = simulate_photoz(30, seed=3, z_range=(0.05, 0.1), templates=("E",), n_workers=1)["images"][:, 3]
    far = simulate_photoz(30, seed=3, z_range=(0.7, 0.8), templates=("E",), n_workers=1)["images"][:, 3]
    flux = [np.median(im[:, 22:42, 22:42].sum(axis=(1, 2))) for im in (near, far)]
    extent = [np.median((im > 0.25 * im.max(axis=(1, 2), keepdims=True)).sum(axis=(1, 2))) for im in (near, far)]
    assert flux[1] < flux[0] / 20
    assert extent[1] < 0.8 * extent[0]


def test_reddening_reddens():
    clean = photometry.apparent_magnitudes("Sbc", 0.3, -21.0, ("g", "r"))
    reddened = photometry.apparent_magnitudes("Sbc", 0.3, -21.0, ("g", "r"), ebv=0.1)
    r_g, r_r = photometry.extinction_coefficients(("g", "r"))
    np.testing.assert_allclose(reddened - clean, [0.1 * r_g, 0.1 * r_r])
    assert r_g > r_r > 0


def test_morphology_output(morphology):
    for key in ("images_y10", "images_y1"):
        assert morphology[key].shape == (9, 3, 100, 100) and morphology[key].dtype == np.float32
    assert morphology["labels"].dtype == np.int64 and set(morphology["labels"]) <= {0, 1, 2}
    again = simulate_morphology(9, seed=7, n_workers=1)
    for key in morphology:
        np.testing.assert_array_equal(again[key], morphology[key])


def test_y1_noisier_than_y10_by_sqrt_ten(morphology):
    corners = np.s_[:, :, :12, :12]
    for band_index, band in enumerate(("g", "r", "i")):
        std = {
            years: morphology[f"images_y{years}"][corners][:, band_index].std() for years in (10, 1)
        }
        for years in (10, 1):
            expected = np.sqrt(photometry.sky_electrons_per_pixel(band, years)) / photometry.electrons_per_nanomaggy(band, years)
            assert std[years] == pytest.approx(expected, rel=0.1)
        assert std[1] / std[10] == pytest.approx(np.sqrt(10.0), rel=0.1)
    # the same galaxies: the noiseless signal agrees, the difference is noise only
    signal = morphology["images_y10"][:, :, 45:55, 45:55].mean()
    assert morphology["images_y1"][:, :, 45:55, 45:55].mean() == pytest.approx(signal, rel=0.1)


def test_morphology_preprocessing_range():
    data = simulate_morphology(3, seed=1, preprocess=True, n_workers=1)
    for key in ("images_y10", "images_y1"):
        assert data[key].min() >= 0.0 and data[key].max() <= 1.0
        assert np.allclose(data[key].max(axis=(1, 2, 3)), 1.0)


def test_asinh_stretch_keeps_band_ratios_and_clips_percentiles():
    rng = np.random.default_rng(0)
    images = rng.uniform(1.0, 2.0, size=(2, 3, 8, 8))
    images[:, 1] = 2.0 * images[:, 0]  # band 1 twice band 0, pixel by pixel
    images[1] *= 1000.0  # a bright galaxy: the stretch is logarithmic there, ratios must still hold
    out = asinh_stretch(images, percentiles=(0.0, 100.0))
    np.testing.assert_allclose(out[:, 1] / out[:, 0], 2.0, rtol=1e-5)
    assert np.allclose(out.max(axis=(1, 2, 3)), 1.0) and out.min() > 0
    images[0, 2, 3, 3] = 1e6  # one hot pixel among 192 values: the 99th percentile removes it
    clipped = percentile_clip(images, (0.0, 99.0))
    assert clipped[0].max() == pytest.approx(np.percentile(images[0], 99.0)) and clipped[0].max() < 10


def test_simulator_argument_errors():
    with pytest.raises(ValueError, match="seed"):
        simulate_photoz(2, seed=-1)
    with pytest.raises(ValueError, match="n must"):
        simulate_photoz(0, seed=0)
    with pytest.raises(ValueError, match="templates"):
        simulate_photoz(2, seed=0, templates=("S0",))
    with pytest.raises(ValueError, match="z_range"):
        simulate_photoz(2, seed=0, z_range=(0.5, 0.1))


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".fits"])
def test_save_load_round_trip(tmp_path, photoz, suffix):
    path = tmp_path / f"survey{suffix}"
    save_arrays(path, photoz)
    loaded = load_arrays(path)
    for key, value in photoz.items():
        np.testing.assert_array_equal(loaded[key], value)
    np.testing.assert_array_equal(load_images(path), photoz["images"])
    catalogue = load_catalogue(path)
    np.testing.assert_array_equal(catalogue["z_spec"].to_numpy(), photoz["z_spec"])


def test_images_from_npy_and_3d_cubes(tmp_path, photoz):
    np.save(tmp_path / "cube.npy", photoz["images"])
    np.testing.assert_array_equal(load_images(tmp_path / "cube.npy"), photoz["images"])
    np.save(tmp_path / "single.npy", photoz["images"][:, 0].astype(np.float64))
    single = load_images(tmp_path / "single.npy")
    assert single.shape == (12, 1, 64, 64) and single.dtype == np.float32
    with pytest.raises(ValueError, match="no array 'cutouts'"):
        load_images(_npz(tmp_path, photoz), key="cutouts")
    with pytest.raises(ValueError, match="unsupported"):
        load_images(tmp_path / "cube.tiff")
    with pytest.raises(FileNotFoundError):
        load_images(tmp_path / "absent.npy")


def _npz(tmp_path, photoz):
    path = tmp_path / "survey.npz"
    np.savez(path, images=photoz["images"])
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".fits"])
def test_load_survey_with_catalogue(tmp_path, photoz, suffix):
    images_path = tmp_path / "cube.h5"
    save_arrays(images_path, {"images": photoz["images"]})
    table = pd.DataFrame({"ZSPEC": photoz["z_spec"], "EBV": photoz["ebv"], "TYPE": photoz["sed_type"]})
    catalogue_path = tmp_path / f"cat{suffix}"
    if suffix == ".csv":
        table.to_csv(catalogue_path, index=False)
    elif suffix == ".parquet":
        table.to_parquet(catalogue_path)
    else:
        from astropy.table import Table

        Table.from_pandas(table).write(catalogue_path)
    dataset = load_survey(images_path, catalogue_path, columns={"z_spec": "ZSPEC", "ebv": "EBV", "label": "TYPE"})
    assert len(dataset) == 12
    item = dataset[5]
    torch.testing.assert_close(item["image"], torch.from_numpy(photoz["images"][5]))
    assert item["z_spec"].item() == pytest.approx(float(photoz["z_spec"][5]))
    assert item["label"].dtype == torch.int64 and item["z_spec"].dtype == torch.float32
    with pytest.raises(ValueError, match=r"no column\(s\) \['REDSHIFT'\]; available: ZSPEC, EBV, TYPE"):
        load_survey(images_path, catalogue_path, columns={"z_spec": "REDSHIFT"})
    table.iloc[:10].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="10 rows but there are 12 images"):
        load_survey(images_path, tmp_path / "short.csv", columns=["ZSPEC"])


def test_nan_policies(photoz):
    images = photoz["images"].copy()
    images[3, 2, 10, 10] = np.nan
    z = photoz["z_spec"].copy()
    z[7] = np.nan
    with pytest.raises(ValueError, match=r"1 objects \(first indices \[7\]\) have NaN/Inf/missing values"):
        SurveyDataset(images, {"z_spec": z})
    lazy = SurveyDataset(images, {"z_spec": photoz["z_spec"]})  # pixels are checked when read
    lazy[2]
    with pytest.raises(ValueError, match=r"object 3 .* has 1 NaN/Inf pixels"):
        lazy[3]
    kept = SurveyDataset(images, {"z_spec": z}, nan_policy="reject")
    assert len(kept) == 10 and not any(torch.isnan(kept[i]["image"]).any() for i in range(10))
    filled = SurveyDataset(images, {"z_spec": photoz["z_spec"]}, nan_policy="fill", fill_value=-1.0)
    assert filled[3]["image"][2, 10, 10] == -1.0
    with pytest.raises(ValueError, match="NaN/Inf/missing values"):
        SurveyDataset(images, {"z_spec": z}, nan_policy="fill")
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        SurveyDataset(images, {"z_spec": z[:5]})
    with pytest.raises(ValueError, match="nan_policy"):
        SurveyDataset(images, nan_policy="ignore")


def test_infinite_pixels_and_values_count_as_bad(photoz):
    images = photoz["images"].copy()
    images[2, 0, 5, 5] = np.inf
    z = photoz["z_spec"].copy()
    z[4] = -np.inf
    with pytest.raises(ValueError, match=r"1 objects \(first indices \[4\]\) have NaN/Inf"):
        SurveyDataset(images, {"z_spec": z})
    with pytest.raises(ValueError, match=r"object 2 .* NaN/Inf pixels"):
        SurveyDataset(images)[2]
    assert len(SurveyDataset(images, {"z_spec": z}, nan_policy="reject")) == 10
    filled = SurveyDataset(images, nan_policy="fill", fill_value=-1.0)
    assert filled[2]["image"][0, 5, 5] == -1.0


def test_fits_image_key_must_exist_and_several_cubes_need_one(tmp_path):
    cube = np.zeros((2, 3, 4, 4), np.float32)
    path = tmp_path / "two.fits"
    save_arrays(path, {"images_y10": cube, "images_y1": cube + 1, "labels": np.arange(2)})
    np.testing.assert_array_equal(load_images(path, key="images_y1"), cube + 1)
    with pytest.raises(ValueError, match=r"no image HDU 'images_y1_typo'; its image HDUs: IMAGES_Y10 \(2, 3, 4, 4\), IMAGES_Y1 \(2, 3, 4, 4\)"):
        load_images(path, key="images_y1_typo")
    with pytest.raises(ValueError, match=r"2 image cubes \(IMAGES_Y10 .*IMAGES_Y1 .*\); name the one to read with key=<HDU name>"):
        load_images(path)
    with pytest.raises(ValueError, match="equal lengths"):
        save_arrays(tmp_path / "bad.fits", {"images": cube, "z_spec": np.zeros(2), "zeropoints": np.zeros(3)})


def test_dihedral_augmentation_covers_the_eight_symmetries():
    image = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    generator = torch.Generator().manual_seed(0)
    seen = {tuple(random_dihedral(image, generator).flatten().tolist()) for _ in range(200)}
    assert len(seen) == 8
    assert all(sorted(variant) == sorted(image.flatten().tolist()) for variant in seen)
    dataset = SurveyDataset(image[None].numpy().repeat(3, 0), augment=True)
    assert dataset[0]["image"].shape == (2, 4, 4)


def test_small_cnn_learns_redshift_from_colours():
    """A few hundred simulated galaxies and a few epochs clearly beat the constant predictor."""
    torch.manual_seed(0)
    learned, constant = _fit_small_photoz_model()
    print(f"sigma_MAD: small CNN {learned:.4f}, constant predictor {constant:.4f}")
    assert learned < 0.6 * constant


def _fit_small_photoz_model() -> tuple[float, float]:
    """sigma_MAD on 80 held-out galaxies of photoz_small trained on 220, and of the training median."""
    data = simulate_photoz(300, seed=11, n_workers=1)
    images, ebv, z = (torch.from_numpy(data[k]) for k in ("images", "ebv", "z_spec"))
    n_train = 220
    model = models.create("photoz_small")
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(10):
        order = torch.randperm(n_train)
        for start in range(0, n_train, 20):
            batch = order[start : start + 20]
            loss = (model.z_phot(images[batch], ebv[batch]) - z[batch]).abs().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        z_phot = model.eval().z_phot(images[n_train:], ebv[n_train:])
    learned = photoz_metrics(z_phot, z[n_train:])["sigma_mad"]
    constant = photoz_metrics(np.full(len(z) - n_train, z[:n_train].median().item()), z[n_train:])["sigma_mad"]
    return learned, constant


def test_morphology_sizes_are_bounded_by_the_stamp(monkeypatch):
    import advrobust.data.simulate as simulate

    def never(*args, **kwargs):  # before the bound, median_radius=200 was drawn (OOM-killed at 24 GB)
        raise AssertionError("rendering started")

    with monkeypatch.context() as patch:
        patch.setattr(simulate, "_map_galaxies", never)
        for radius, size in ((200.0, 100), (50.0, 100), (3.4, 100), (1.1, 32)):
            with pytest.raises(ValueError, match=r"median_radius = .* cannot be drawn in a \d+-pixel stamp"):
                simulate_morphology(2, seed=0, median_radius=radius, size=size)
    data = simulate_morphology(2, seed=0, median_radius=3.3, size=100, n_workers=1)  # the largest allowed
    assert data["images_y10"].shape == (2, 3, 100, 100) and np.isfinite(data["images_y10"]).all()


# ---------------------------------------------------------------- catalogue joins and missing values (issue 12)
_SDSS_IDS = np.array([1237648720693755918, 1237648720693755919, 2**63 - 5, 1237648720693755920], dtype=np.int64)


@pytest.fixture
def cube4(tmp_path):
    images = np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((4, 1, 3, 3), np.float32)
    path = tmp_path / "cube.h5"
    save_arrays(path, {"images": images})
    return path


@pytest.mark.parametrize("ids", [_SDSS_IDS, _SDSS_IDS.astype(np.uint64) + np.uint64(2**63 - 100),
                                 np.array(["J0001+02", "J0001+03", "2MASS J0001", "J0001+04"])])
@pytest.mark.parametrize("suffix", [".parquet", ".fits", ".csv"])
def test_join_on_exact_ids_in_any_order(tmp_path, cube4, ids, suffix):
    order = np.array([2, 0, 3, 1])
    table = pd.DataFrame({"OBJID": ids[order], "ZSPEC": np.array([0.0, 0.1, 0.2, 0.3])[order]})
    catalogue = tmp_path / f"cat{suffix}"
    if suffix == ".parquet":
        table.to_parquet(catalogue)
    elif suffix == ".csv":
        table.to_csv(catalogue, index=False)
    else:
        from astropy.table import Table

        Table.from_pandas(table).write(catalogue)
    ds = load_survey(cube4, catalogue, columns={"z_spec": "ZSPEC"}, id_column="OBJID", image_ids=ids)
    assert ds.join == "id:OBJID" and ds.ids.tolist() == ids.tolist()
    for i in range(4):  # image i has value i and z = i / 10
        item = ds[i]
        assert float(item["image"][0, 0, 0]) == i and item["z_spec"].item() == pytest.approx(i / 10)
        assert ds.ids[int(item["index"])] == ids[i]
    # a catalogue with an id column is never joined by position unless asked: it may be shuffled
    with pytest.raises(ValueError, match=r"has the id column\(s\) \['OBJID'\]: pass id_column='OBJID' .*"
                                         r"join_by_position=True"):
        load_survey(cube4, catalogue, columns={"z_spec": "ZSPEC"})
    from advrobust.options import spelled_as

    with spelled_as({"id_column": "--id-column", "join_by_position": "--join-by-position"}):
        with pytest.raises(ValueError, match="pass --id-column OBJID .* or --join-by-position if row i") as err:
            load_survey(cube4, catalogue, columns={"z_spec": "ZSPEC"})
    assert "id_column=" not in str(err.value)
    positional = load_survey(cube4, catalogue, columns={"z_spec": "ZSPEC"}, join_by_position=True)
    assert positional.join == "position" and positional[0]["z_spec"].item() == pytest.approx(0.2)


def test_join_refuses_duplicates_and_unmatched_ids_and_reads_ids_from_the_images_file(tmp_path):
    images = np.zeros((3, 1, 2, 2), np.float32)
    path = tmp_path / "survey.h5"
    save_arrays(path, {"images": images, "objid": _SDSS_IDS[:3].astype(np.uint64), "z": np.array([0.1, 0.2, 0.3])})
    catalogue = tmp_path / "cat.parquet"
    pd.DataFrame({"objid": _SDSS_IDS[[2, 1, 0, 3]], "Z": [0.3, 0.2, 0.1, 0.9]}).to_parquet(catalogue)
    ds = load_survey(path, catalogue, columns={"z_spec": "Z"}, id_column="objid")  # ids from the HDF5 file
    assert [ds[i]["z_spec"].item() for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert ds.ids.dtype == np.uint64 and ds.ids[0] == np.uint64(1237648720693755918)
    pd.DataFrame({"objid": _SDSS_IDS[[0, 1, 1, 2]], "Z": [0.1] * 4}).to_parquet(catalogue)
    with pytest.raises(ValueError, match=r"duplicated ids, e.g. \[1237648720693755919\]"):
        load_survey(path, catalogue, columns={"z_spec": "Z"}, id_column="objid")
    pd.DataFrame({"objid": _SDSS_IDS[[0, 1]], "Z": [0.1] * 2}).to_parquet(catalogue)
    with pytest.raises(ValueError, match=r"1 images have no row in the catalogue .*indices \[2\]"):
        load_survey(path, catalogue, columns={"z_spec": "Z"}, id_column="objid")
    with pytest.raises(ValueError, match="no image ids 'objid_typo'"):
        load_survey(path, catalogue, columns={"z_spec": "Z"}, id_column="objid", image_ids="objid_typo")


def test_float64_and_uint64_ids_keep_their_values(photoz):
    ids = np.array([1237648720693755918, 2**64 - 1, 7], dtype=np.uint64)
    ds = SurveyDataset(photoz["images"][:3], {"z_spec": photoz["z_spec"][:3]}, ids=ids)
    assert ds.ids.tolist() == [1237648720693755918, 2**64 - 1, 7]
    float_ids = np.array([1237648720693755918.0, 1.0, 2.0])  # the float64 value stays that float64
    assert SurveyDataset(photoz["images"][:3], ids=float_ids).ids[0] == float_ids[0]
    with pytest.raises(ValueError, match="uint64 values beyond int64"):
        SurveyDataset(photoz["images"][:3], {"objid": ids})


def test_fits_tnull_is_missing_and_sentinels_are_refused(tmp_path, cube4):
    from astropy.io import fits

    columns = [fits.Column(name="TYPE", format="J", null=-9999, array=np.array([1, -9999, 2, 0])),
               fits.Column(name="Z", format="D", array=np.array([0.1, 0.2, -99.0, 0.4])),
               fits.Column(name="EBV", format="D", array=np.array([0.01, 0.02, 0.03, -0.5]))]
    catalogue = tmp_path / "cat.fits"
    fits.BinTableHDU.from_columns(columns).writeto(catalogue)
    assert load_catalogue(catalogue)["TYPE"].isna().tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match=r"1 objects \(first indices \[1\]\) have NaN/Inf/missing values"):
        load_survey(cube4, catalogue, columns={"label": "TYPE"})
    assert len(load_survey(cube4, catalogue, columns={"label": "TYPE"}, nan_policy="reject")) == 3
    with pytest.raises(ValueError, match=r"redshifts must be > -1, got \[-99.0\] .*\[2\].*missing_values=\(-99.0,\)"):
        load_survey(cube4, catalogue, columns={"z_spec": "Z"})
    with pytest.raises(ValueError, match=r"E\(B-V\) must be >= 0, got \[-0.5\] .*\[3\]"):
        load_survey(cube4, catalogue, columns={"ebv": "EBV"})
    kept = load_survey(cube4, catalogue, columns={"z_spec": "Z"}, missing_values=(-99,), nan_policy="reject")
    assert kept.indices.tolist() == [0, 1, 3]
    for z in (-1.0, -999.0):
        with pytest.raises(ValueError, match="redshifts must be > -1"):
            SurveyDataset(np.zeros((2, 1, 2, 2), np.float32), {"z": np.array([0.5, z])})


def test_fits_with_two_tables_needs_a_key(tmp_path, cube4):
    from astropy.io import fits

    def table(name, z):
        return fits.BinTableHDU.from_columns([fits.Column(name="Z", format="D", array=np.asarray(z))], name=name)

    catalogue = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(), table("STARS", [9.0] * 4), table("GALAXIES", [0.1, 0.2, 0.3, 0.4])]
                 ).writeto(catalogue)
    with pytest.raises(ValueError, match=r"2 HDUs hold the columns \['Z'\] \(STARS, GALAXIES\); pass catalogue_key"):
        load_survey(cube4, catalogue, columns={"z_spec": "Z"})
    ds = load_survey(cube4, catalogue, columns={"z_spec": "Z"}, catalogue_key="galaxies")
    assert ds[3]["z_spec"].item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no table HDU 'QSO'; its tables: STARS, GALAXIES"):
        load_catalogue(catalogue, key="QSO")


def test_join_int64_against_uint64_ids_exactly():
    from advrobust.data.dataset import _join_by_id

    image_ids = np.array([2**63 - 1, 5, -3], dtype=np.int64)
    catalogue_ids = np.array([5, 2**63 - 1, 2**64 - 3], dtype=np.uint64)  # 2**64 - 3 is -3 wrapped: no match
    with pytest.raises(ValueError, match=r"1 images have no row .*indices \[2\]"):
        _join_by_id(image_ids, catalogue_ids, "objid")
    assert _join_by_id(image_ids[:2], catalogue_ids, "objid").tolist() == [1, 0]
    with pytest.raises(ValueError, match="different kinds"):
        _join_by_id(image_ids.astype(np.float64), catalogue_ids, "objid")


def test_read_images_applies_the_nan_policy_over_rows_kept():
    x = np.arange(5 * 2 * 3 * 3, dtype=np.float32).reshape(5, 2, 3, 3)
    x[1, 0, 0, 0] = np.nan
    rejected = SurveyDataset(x, nan_policy="reject")  # rows 0, 2, 3, 4: not consecutive
    assert np.array_equal(rejected.read_images(0, 3), x[[0, 2, 3]])
    filled = SurveyDataset(x, nan_policy="fill", fill_value=-1.0)
    assert filled.read_images(1, 2)[0, 0, 0, 0] == -1.0
    with pytest.raises(ValueError, match=r"object 1 .* has 1 NaN/Inf pixels"):
        SurveyDataset(x).read_images(0, 5)
