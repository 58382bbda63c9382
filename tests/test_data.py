import logging
import os

import cv2
import numpy as np
import pytest

from tfxai import data
from tfxai.errors import DataError
from tfxai.synthetic import make_synthetic_xrays


def _write_split(root, split, classes, n=6, size=40, seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        folder = os.path.join(root, split, c)
        os.makedirs(folder, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 255, (size, size + 8), dtype=np.uint8)
            cv2.imwrite(os.path.join(folder, f"person{seed}{i:03d}_{c.lower()}_{i}.png"), img)


@pytest.mark.parametrize("train_name,classes", [
    ("train", ["NORMAL", "PNEUMONIA"]),           # the Kaggle layout
    ("Train", ["normal", "pneumonia"]),           # dataset/{train,val}/{normal,pneumonia}
    ("train", ["COVID", "normal", "PNEUMONIA"]),  # more than two classes
])
def test_folder_layouts_are_accepted_case_insensitively(tmp_path, train_name, classes):
    _write_split(tmp_path, train_name, classes, n=12)
    _write_split(tmp_path, "VAL", [c.swapcase() for c in classes], n=30, seed=1)
    splits = data.load_splits(str(tmp_path), 32, cache_dir=None, progress=False)
    assert [c.lower() for c in splits.class_names][0] == "normal"  # normal first: index 1 is the finding
    assert len(splits.class_names) == len(classes)
    assert len(splits.train) == 12 * len(classes) and not splits.val_from_train
    assert splits.train.images.shape[1:] == (32, 32, 1) and splits.train.images.dtype == np.uint8


@pytest.mark.parametrize("make,expected", [
    (lambda r: _write_split(r, "training_data", ["NORMAL", "PNEUMONIA"]), "has no 'train' folder"),
    (lambda r: _write_split(r, "train", ["PNEUMONIA"]), "single class folder"),
    (lambda r: (_write_split(r, "train", ["NORMAL"]), os.makedirs(os.path.join(r, "train", "PNEUMONIA"))), "is empty"),
    (lambda r: (os.makedirs(os.path.join(r, "train")),
                cv2.imwrite(os.path.join(r, "train", "a.png"), np.zeros((8, 8), np.uint8))), "no class folders"),
    (lambda r: (_write_split(r, "train", ["NORMAL", "PNEUMONIA"]), _write_split(r, "val", ["NORMAL", "COVID"])),
     "no folder for class"),
])
def test_wrong_layouts_stop_with_a_message_naming_the_path(tmp_path, make, expected):
    make(str(tmp_path))
    with pytest.raises(DataError, match=expected) as err:
        data.load_splits(str(tmp_path), 32, cache_dir=None, progress=False)
    assert str(tmp_path) in str(err.value)


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_splits(str(tmp_path / "nope"), 32, cache_dir=None)


def test_corrupt_files_are_skipped_and_reported(tmp_path, caplog):
    _write_split(tmp_path, "train", ["NORMAL", "PNEUMONIA"], n=30)
    bad = tmp_path / "train" / "PNEUMONIA"
    (bad / "person900_zero_1.jpeg").write_bytes(b"")
    (bad / "person901_text_1.png").write_text("not an image")
    good_jpeg = cv2.imencode(".jpg", np.full((40, 40), 128, np.uint8))[1].tobytes()
    (bad / "person902_trunc_1.jpeg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    with caplog.at_level(logging.WARNING, logger="tfxai.data"):
        splits = data.load_splits(str(tmp_path), 32, val_fraction=0.2, cache_dir=None, progress=False)
    skipped = {os.path.basename(p): reason for p, reason in splits.train.skipped}
    assert set(skipped) == {"person900_zero_1.jpeg", "person901_text_1.png", "person902_trunc_1.jpeg"}
    assert "empty" in skipped["person900_zero_1.jpeg"] and "truncated" in skipped["person902_trunc_1.jpeg"]
    assert len(splits.train) + len(splits.val) == 60
    assert "skipped 3 unreadable file(s)" in caplog.text and "person901_text_1.png" in caplog.text
    assert "skipped 3 unreadable" in splits.summary()


def test_patient_ids_from_kermany_names():
    assert data.patient_id("x/person1234_bacteria_5678.jpeg") == "person1234"
    assert data.patient_id("person1234_virus_99.jpeg") == "person1234"
    assert data.patient_id("IM-0115-0001.jpeg") == "im-0115"
    assert data.patient_id("NORMAL2-IM-0383-0001.jpeg") == "normal2-im-0383"
    # No pattern: the image is its own patient (same-named files in two folders, or every entry
    # of a MedMNIST .npz, are not one patient).
    assert data.patient_id("scan_17.png") == "scan_17.png"
    assert data.patient_id("a/image.dcm") != data.patient_id("b/image.dcm")
    assert data.patient_id("pneumoniamnist.npz:test[3]") != data.patient_id("pneumoniamnist.npz:test[4]")


def test_grouped_split_keeps_patients_on_one_side_and_stratifies():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(300), rng.integers(1, 5, 300))
    labels = (patients % 4 != 0).astype(int)  # about 1:3 like Kermany, constant within a patient
    tr, va = data.grouped_split(labels, patients, val_fraction=0.15, seed=0)
    assert not set(patients[tr]) & set(patients[va])
    assert len(tr) + len(va) == len(labels)
    assert abs(len(va) / len(labels) - 0.15) < 0.05
    assert abs(labels[va].mean() - labels.mean()) < 0.05


def test_16bit_rgba_and_dicom_decode(tmp_path):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ramp = np.tile(np.arange(64, dtype=np.uint16) * 1000, (48, 1))
    cv2.imwrite(str(tmp_path / "a16.png"), ramp)
    rgba = np.dstack([np.full((20, 30), v, np.uint8) for v in (10, 20, 30, 255)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    img16 = data.decode_image(str(tmp_path / "a16.png"))
    assert img16.dtype == np.uint8 and img16.shape == (48, 64, 1)
    assert img16[0, 0, 0] < 10 and img16[0, -1, 0] > 245  # full range used, order kept
    assert data.decode_image(str(tmp_path / "rgba.png"), channels=3).shape == (20, 30, 3)

    def write_dicom(path, photometric):
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns = ramp.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = ramp.tobytes()
        ds.save_as(path, enforce_file_format=True)

    write_dicom(str(tmp_path / "m2.dcm"), "MONOCHROME2")
    write_dicom(str(tmp_path / "m1"), "MONOCHROME1")  # no extension: found by the DICM marker
    m2 = data.decode_image(str(tmp_path / "m2.dcm"))
    m1 = data.decode_image(str(tmp_path / "m1"))
    assert m2.shape == (48, 64, 1)
    assert m2[0, -1, 0] > m2[0, 0, 0]
    np.testing.assert_array_equal(m1, 255 - m2)  # MONOCHROME1 is inverted


@pytest.mark.parametrize("mode", data.RESIZE_MODES)
def test_resize_modes_and_heatmaps_map_back_to_the_original(mode):
    img = np.zeros((100, 200, 1), np.uint8)
    img[:, 150:] = 255  # bright right quarter
    out, info = data.resize_image(img, 64, mode)
    assert out.shape == (64, 64, 1)
    if mode == "pad":
        assert info.h == 32 and info.w == 64 and out[:16].max() == 0  # aspect kept, black bands
    heat = (out[:, :, 0] / 255.0).astype(np.float32)
    back = data.heatmap_to_original(heat, info)
    assert back.shape == (100, 200)
    if mode != "crop":
        assert back[:, 170:].mean() > 0.8 and back[:, :120].mean() < 0.1


def test_pipeline_is_deterministic_for_a_seed_and_augments_within_range():
    d = make_synthetic_xrays(40, 32, seed=0)
    imgs = d.images[..., None]

    def batches(seed):
        ds = data.make_dataset(imgs, d.labels, 2, batch_size=16, training=True, seed=seed)
        return [x.numpy() for x, _ in ds]

    a1, a2 = batches(7), batches(7)
    epoch_a = [x.numpy() for x, _ in data.make_dataset(imgs, d.labels, 2, 16, training=True, seed=7)]
    b = batches(8)
    np.testing.assert_array_equal(a1[0], a2[0])
    np.testing.assert_array_equal(a1[0], epoch_a[0])
    assert not np.array_equal(a1[0], b[0])
    assert all(0.0 <= x.min() and x.max() <= 255.0 for x in a1)
    plain = [x.numpy() for x, _ in data.make_dataset(imgs, d.labels, 2, 16)]
    np.testing.assert_array_equal(np.concatenate(plain), imgs.astype(np.float32))


def test_each_epoch_gets_new_augmentations():
    d = make_synthetic_xrays(16, 32, seed=0)
    ds = data.make_dataset(d.images[..., None], d.labels, 2, batch_size=16, training=True, seed=1)
    first, second = [next(iter(ds))[0].numpy() for _ in range(2)]
    assert not np.array_equal(first, second)


def test_decoded_images_are_cached_on_disk(tmp_path, monkeypatch):
    _write_split(tmp_path / "d", "train", ["NORMAL", "PNEUMONIA"], n=20)
    cache = str(tmp_path / "cache")
    first = data.load_splits(str(tmp_path / "d"), 32, cache_dir=cache, progress=False)
    assert len(os.listdir(cache)) == 1

    def fail(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data, "decode_image", fail)
    second = data.load_splits(str(tmp_path / "d"), 32, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(first.train.images, second.train.images)


def test_medmnist_npz_loads_and_names_missing_keys(tmp_path):
    d = make_synthetic_xrays(30, 28, seed=0)
    path = tmp_path / "pneumoniamnist.npz"
    np.savez(path, train_images=d.images, train_labels=d.labels[:, None],
             val_images=d.images[:10], val_labels=d.labels[:10, None])
    splits = data.load_splits(str(path), 28)
    assert len(splits.train) == 30 and len(splits.val) == 10
    assert splits.class_names == ["NORMAL", "PNEUMONIA"]
    assert splits.train.images.shape == (30, 28, 28, 1)
    with pytest.raises(DataError, match="no 'test_images'"):
        data.load_npz_split(str(path), "test")


def test_pneumoniamnist_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    from tfxai.errors import MissingDownloadError

    monkeypatch.setenv("TFXAI_CACHE_DIR", str(tmp_path))
    with pytest.raises(MissingDownloadError, match=str(tmp_path / "pneumoniamnist.npz")):
        data.pneumoniamnist_path(download=False)


def test_class_weights_balance_the_loss():
    w = data.class_weights(np.array([0] * 25 + [1] * 75), 2)
    assert w[0] * 25 == pytest.approx(w[1] * 75)
    assert w[0] == pytest.approx(2.0)


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_kermany_train_folder_scans_with_the_right_counts(shared_data):
    paths, labels, names = data.scan_class_folders(str(shared_data / "chest_xray_224" / "train"))
    assert names == ["NORMAL", "PNEUMONIA"]
    assert (labels == 0).sum() == 1341 and (labels == 1).sum() == 3875


@pytest.mark.realdata
@pytest.mark.slow
def test_kermany_patient_grouped_split_has_no_shared_patient(shared_data, tmp_path):
    splits = data.load_splits(str(shared_data / "chest_xray_224"), 64, cache_dir=str(tmp_path), progress=False)
    assert len(splits.train) + len(splits.val) == 5216 and not splits.train.skipped
    assert splits.val_from_train
    train_p = {data.patient_id(p) for p in splits.train.paths}
    val_p = {data.patient_id(p) for p in splits.val.paths}
    assert not train_p & val_p
    assert 0.10 < len(splits.val) / 5216 < 0.20


@pytest.mark.realdata
def test_original_resolution_xrays_of_different_sizes_decode(shared_data):
    folder = shared_data / "chest_xray_original" / "train"
    files = sorted(str(p) for p in folder.rglob("*.jpeg"))
    assert len(files) == 24
    shapes = set()
    for f in files:
        x, original, info = data.load_image(f, 128)
        assert x.shape == (128, 128, 1) and x.dtype == np.uint8
        assert info.original_hw == original.shape[:2]
        shapes.add(original.shape[:2])
    assert len(shapes) > 10  # sizes really differ


@pytest.mark.realdata
def test_real_xray_as_dicom_like_16bit_input_decodes_like_the_jpeg(shared_data, tmp_path):
    src = sorted((shared_data / "chest_xray_original" / "val" / "NORMAL").glob("*.jpeg"))[0]
    img8 = data.decode_image(str(src))
    cv2.imwrite(str(tmp_path / "x16.png"), img8[:, :, 0].astype(np.uint16) * 257)  # 16-bit like a detector
    img16 = data.decode_image(str(tmp_path / "x16.png"))
    assert img16.shape == img8.shape
    assert np.corrcoef(img16.ravel(), img8.ravel())[0, 1] > 0.99


@pytest.mark.realdata
def test_pneumoniamnist_npz_loads_with_the_official_counts(shared_data):
    splits = data.load_splits(str(shared_data / "pneumoniamnist" / "pneumoniamnist_trainval.npz"), 28)
    assert splits.train.counts() == {"NORMAL": 1214, "PNEUMONIA": 3494}
    assert splits.val.counts() == {"NORMAL": 135, "PNEUMONIA": 389}
    assert not splits.val_from_train and splits.train.images.shape[1:] == (28, 28, 1)
