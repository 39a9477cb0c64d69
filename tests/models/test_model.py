from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import segsvc
from segsvc.models.encoder import MOBILENET_V2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return segsvc.build_model(num_classes=11)


def test_encoder_states_its_skips_and_they_are_true(model):
    encoder = model.encoder
    assert encoder.out_channels == (16, 24, 32, 96, 320)
    assert encoder.reductions == (2, 4, 8, 16, 32)
    skips = encoder(torch.randn(1, 3, 64, 96))
    assert len(skips) == 5
    for skip, channels, reduction in zip(skips, encoder.out_channels, encoder.reductions):
        assert skip.shape == (1, channels, 64 // reduction, 96 // reduction)


def test_encoder_follows_the_table(model):
    blocks = list(model.encoder.features)[1:]
    assert len(blocks) == sum(n for _, _, n, _ in MOBILENET_V2) == 17
    i = 0
    for t, c, n, s in MOBILENET_V2:
        for repeat in range(n):
            assert blocks[i].out_channels == c and blocks[i].stride == (s if repeat == 0 else 1)
            assert (len(blocks[i].conv) == 3) is (t == 1)
            i += 1


def test_logits_shape_and_bad_sizes(model):
    assert model(torch.randn(2, 3, 96, 128)).shape == (2, 11, 96, 128)
    with pytest.raises(ValueError, match="height 100 is not a multiple of 32; pad to 128"):
        model(torch.randn(1, 3, 100, 128))
    with pytest.raises(ValueError, match="width 33 is not a multiple of 32; pad to 64"):
        model(torch.randn(1, 3, 64, 33))
    with pytest.raises(ValueError, match=r"expected images \(N, 3, H, W\)"):
        model(torch.randn(1, 1, 64, 64))


def test_every_parameter_gets_a_gradient():
    model = segsvc.build_model(num_classes=5).train()
    model(torch.randn(2, 3, 64, 64)).logsumexp(1).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_decoder_and_head_use_transposed_convolutions(model):
    ups = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)] + [model.head]
    assert len(ups) == 5 and all(isinstance(m, torch.nn.ConvTranspose2d) for m in ups)
    assert all(m.stride == (2, 2) and m.kernel_size == (2, 2) for m in ups)
    x = torch.zeros(1, 3, 96, 128)
    with torch.no_grad():
        features = model.decoder(model.encoder(x))
    assert tuple(features.shape) == (1, 16, 48, 64)  # the decoder stops at H/2; the head doubles it
    assert tuple(model.head(features).shape) == (1, 11, 96, 128)


def _load_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _imagenet_batch(path) -> torch.Tensor:
    preprocess = torchvision.transforms.Compose(
        [
            torchvision.transforms.Resize(256),
            torchvision.transforms.CenterCrop(224),
            torchvision.transforms.ToTensor(),
            torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    return preprocess(Image.open(path).convert("RGB"))[None]


@pytest.fixture(scope="module")
def torchvision_reference(imagenet_weights):
    from safetensors.torch import load_file

    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(load_file(str(imagenet_weights)), strict=True)
    return reference.eval()


def test_encoder_matches_torchvision_with_shared_weights(imagenet_weights, torchvision_reference, shared):
    ours = segsvc.build_model(11, encoder_weights=imagenet_weights).eval()
    x = _imagenet_batch(shared / "images" / "cat.png")
    with torch.no_grad():
        deepest = ours.encoder(x)[-1]
        expected = torchvision_reference.features[:18](x)
    assert (deepest - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("image,label", [("cat.png", "Egyptian cat"), ("bird.png", "chickadee")])
def test_encoder_with_torchvision_classifier_recognises_real_images(
    image, label, imagenet_weights, torchvision_reference, shared
):
    ours = segsvc.build_model(11, encoder_weights=imagenet_weights).eval()
    classes = (shared / "weights" / "imagenet_classes.txt").read_text().splitlines()
    with torch.no_grad():
        features = torchvision_reference.features[18](ours.encoder(_imagenet_batch(shared / "images" / image))[-1])
        logits = torchvision_reference.classifier(features.mean((2, 3)))
    assert classes[logits.argmax().item()] == label


def test_encoder_loads_torchvision_state_dict_strictly():
    state = torchvision.models.mobilenet_v2().state_dict()
    encoder = segsvc.build_model(3).encoder
    own = {k: v for k, v in state.items() if not (k.startswith("classifier") or k.startswith("features.18."))}
    encoder.load_state_dict(own, strict=True)


def test_encoder_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder weights file not found"):
        segsvc.build_model(3, encoder_weights=tmp_path / "missing.safetensors")


def test_save_load_round_trip_is_bit_exact(tmp_path, model):
    names = [f"class{i}" for i in range(11)]
    path = segsvc.save_model(model, tmp_path / "m", class_names=names)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.onnx", "model.safetensors"]
    loaded = segsvc.load_model(path, fuse=False)
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    assert loaded.class_names == names and len(loaded.palette) == 11
    x = torch.randn(1, 3, 64, 64)
    reference = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)  # load_model's layout
    with torch.no_grad():
        assert torch.equal(reference(x), loaded(x))


def test_load_model_refuses_another_format_version(tmp_path, model):
    import json

    path = segsvc.save_model(model, tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "format_version": 1}))
    with pytest.raises(ValueError, match="format_version 1, this segsvc reads 2; export the model again"):
        segsvc.load_model(path)


def test_load_model_rejects_non_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a segsvc model folder"):
        segsvc.load_model(tmp_path)


@pytest.mark.parametrize("height,width", [(361, 479), (360, 480), (1, 200), (200, 1), (1, 1), (17, 1000)])
def test_predict_mask_returns_input_size(model, height, width):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = segsvc.predict_mask(model, image)
    assert mask.shape == (height, width) and mask.dtype == np.uint8 and mask.max() < 11


def test_predict_mask_accepts_pil_and_matches_array(model, shared):
    image = Image.open(shared / "images" / "bird.png")
    np.testing.assert_array_equal(segsvc.predict_mask(model, image), segsvc.predict_mask(model, _load_rgb(shared / "images" / "bird.png")))


def test_predict_mask_equals_manual_pipeline(model):
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    x = (torch.from_numpy(image).float() / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    x = torch.nn.functional.pad(x.permute(2, 0, 1)[None], (0, 96 - 70, 0, 64 - 50))
    with torch.no_grad():
        expected = model.eval()(x)[0, :, :50, :70].argmax(0).numpy()
    np.testing.assert_array_equal(segsvc.predict_mask(model, image), expected)


def test_predict_mask_rejects_bad_arrays(model):
    with pytest.raises(ValueError, match="expected an RGB uint8 array"):
        segsvc.predict_mask(model, np.zeros((10, 10), dtype=np.uint8))
