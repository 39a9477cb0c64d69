from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segsvc.data.datasets import DataError, SegmentationFolder, enet_class_weights
from segsvc.data.transforms import EvalTransform, TrainTransform
from segsvc.training.datamodule import CamVidDataModule, SegmentationDataModule


def write_pair(root, split, stem, size=(40, 30), value=1, mask_size=None):
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size[::-1], 3), 100, np.uint8)).save(root / split / "images" / f"{stem}.png")
    mask_w, mask_h = mask_size or size
    Image.fromarray(np.full((mask_h, mask_w), value, np.uint8)).save(root / split / "masks" / f"{stem}.png")


def folder_module(root, **kwargs):
    return SegmentationDataModule(str(root), ["a", "b", "c"], ignore_index=255, num_workers=0, **kwargs)


def test_camvid_mini_loads_and_eval_pads_with_ignore(camvid_mini):
    module = CamVidDataModule(str(camvid_mini), num_workers=0)
    module.setup("fit")
    image, mask = module.dataset("val")[0]
    assert image.shape == (3, 384, 480) and mask.shape == (384, 480)
    assert (mask[360:] == 11).all() and mask[:360].max() <= 11
    image, mask = module.dataset("train")[0]
    assert image.shape == (3, 256, 256) and mask.shape == (256, 256)


def test_train_transform_keeps_mask_labels_nearest(camvid_mini):
    dataset = SegmentationFolder(camvid_mini / "train", camvid_mini / "trainannot", 11, 11)
    image, mask = dataset.load(0)
    for _ in range(5):
        _, out = TrainTransform((128, 160), (0.5, 2.0), 11)(image, mask)
        assert set(out.unique().tolist()) <= set(np.unique(mask).tolist()) | {11}


def test_a_12_mp_photo_is_decoded_when_drawn_and_cropped_by_its_window(tmp_path, camvid_mini):
    """A photo above LARGE_IMAGE_PIXELS: not cached (decoded when drawn, once an epoch) and cropped without
    rescaling it whole; what the crop holds is the photo's."""
    from segsvc.data.datasets import LARGE_IMAGE_PIXELS
    from tests.conftest import camvid_mosaic

    photo = camvid_mosaic(camvid_mini, 3024, 4032)  # 12 MP of real photographs
    write_pair(tmp_path, "train", "x", size=(3024, 4032))
    Image.fromarray(photo).save(tmp_path / "train" / "images" / "x.jpg", quality=90)
    (tmp_path / "train" / "images" / "x.png").unlink()
    mask = np.zeros((4032, 3024), np.uint8)
    mask[:, 1512:] = 1
    Image.fromarray(mask).save(tmp_path / "train" / "masks" / "x.png")
    dataset = folder_module(tmp_path, crop_size=(512, 512), cache=True).dataset("train")
    image, decoded = dataset.load(0)
    assert image.shape == (4032, 3024, 3) and 3024 * 4032 > LARGE_IMAGE_PIXELS
    assert dataset._cache == {}  # not 48 MB of pixels per photo
    np.testing.assert_array_equal(dataset.load(0)[0], image)
    for _ in range(4):
        crop, crop_mask = dataset[0]
        assert crop.shape == (3, 512, 512) and set(crop_mask.unique().tolist()) <= {0, 1}


def test_eval_transform_matches_library_preprocessing():
    """Training's float arithmetic and inference's lookup table give the same batch, bit for bit."""
    from segsvc.runtime.predict import preprocess

    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    tensor, mask = EvalTransform(255)(image, np.zeros((50, 70), np.uint8))
    np.testing.assert_array_equal(tensor.numpy(), preprocess(image)[0])
    assert mask.shape == (64, 96) and (mask[50:] == 255).all()
    every_value = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3) % 256
    for array in (every_value.astype(np.uint8), np.ascontiguousarray(image[:1, :1]), image[7:40:2, 3:69]):  # views too
        tensor, _ = EvalTransform(255)(array, np.zeros(array.shape[:2], np.uint8))
        batch = preprocess(array)
        assert batch.flags.c_contiguous and batch.dtype == np.float32
        np.testing.assert_array_equal(tensor.numpy(), batch[0])


def test_size_mismatch_names_both_files(tmp_path):
    write_pair(tmp_path, "train", "x", size=(40, 30), mask_size=(41, 30))
    with pytest.raises(DataError, match=r"size mismatch: image .*x\.png.*mask .*x\.png"):
        folder_module(tmp_path).dataset("train").load(0)


def test_mask_values_out_of_range_name_the_file(tmp_path):
    write_pair(tmp_path, "train", "bad", value=7)
    with pytest.raises(DataError, match=r"mask .*bad\.png has values \[7\] outside the classes 0\.\.2"):
        folder_module(tmp_path).dataset("train").load(0)


def test_unreadable_image_names_the_file(tmp_path):
    write_pair(tmp_path, "train", "broken")
    (tmp_path / "train" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"unreadable image .*broken\.png"):
        folder_module(tmp_path).dataset("train").load(0)


def test_missing_mask_and_empty_split(tmp_path):
    write_pair(tmp_path, "train", "a")
    (tmp_path / "train" / "masks" / "a.png").unlink()
    with pytest.raises(DataError, match=r"no mask for image .*a\.png"):
        folder_module(tmp_path).dataset("train")
    (tmp_path / "val" / "images").mkdir(parents=True)
    (tmp_path / "val" / "masks").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty split: no images in .*val/images"):
        folder_module(tmp_path).dataset("val")


def test_setup_validates_every_file_up_front(tmp_path):
    write_pair(tmp_path, "train", "good")
    write_pair(tmp_path, "train", "zbad", value=200)
    write_pair(tmp_path, "val", "v")
    with pytest.raises(DataError, match=r"zbad\.png"):
        folder_module(tmp_path).setup("fit")


def test_enet_weights_favour_rare_classes():
    weights = enet_class_weights(np.array([900, 90, 10]))
    assert weights[0] < weights[1] < weights[2] <= 1 / np.log(1.02)


def test_ignore_index_must_not_be_a_class_and_colour_masks_need_the_colour_format(tmp_path):
    with pytest.raises(DataError, match=r"ignore_index 1 is a class id \(0\.\.2\)"):
        SegmentationDataModule(str(tmp_path), ["a", "b", "c"], ignore_index=1)
    write_pair(tmp_path, "train", "rgb")
    Image.fromarray(np.dstack([np.zeros((30, 40), np.uint8), np.ones((30, 40), np.uint8), np.zeros((30, 40), np.uint8)])).save(
        tmp_path / "train" / "masks" / "rgb.png"
    )
    with pytest.raises(DataError, match=r"mask .*rgb\.png is a colour image; for colour masks set mask_format: color"):
        folder_module(tmp_path).dataset("train").load(0)
