"""The real `segsvc` CLI on camvid_mini: training, checkpoints, kill-and-resume, export, configs, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT, SHARED, run_segsvc

SEGSVC = [sys.executable, "-m", "segsvc.training.cli"]


def smoke_config(tmp_path: Path, **replace: str) -> Path:
    """configs/smoke.yaml with ../shared pointing at SEGSVC_SHARED (runs move with --trainer.default_root_dir)."""
    text = (ROOT / "configs" / "smoke.yaml").read_text().replace("../shared", str(SHARED))
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "smoke.yaml"
    path.write_text(text)
    return path


def events(version_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(version_dir), size_guidance={"images": 0, "scalars": 0}).Reload()


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a TensorBoard scalar over every version of a run, oldest first."""
    found = []
    for version in sorted((run_dir / "lightning_logs").glob("version_*")):
        run = events(version)
        if tag in run.Tags()["scalars"]:
            found += [(e.step, e.value) for e in run.Scalars(tag)]
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory, camvid_mini):
    tmp_path = tmp_path_factory.mktemp("smoke")
    config = smoke_config(tmp_path)
    result = run_segsvc("fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "run"),
                     "--trainer.enable_progress_bar", "false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "run"


def test_smoke_fit_writes_everything_under_default_root_dir_and_loss_falls(trained):
    # The YAML names runs/smoke once; --trainer.default_root_dir moved checkpoints, logs, overlays, config.
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert list((trained / "checkpoints").glob("best-epoch*.ckpt"))
    assert list(trained.glob("lightning_logs/version_0/overlays/epoch*.png"))
    assert (trained / "lightning_logs" / "version_0" / "config.yaml").is_file()  # resolved config beside the logs
    assert "mask values seen" in (trained / "data_check.txt").read_text()
    epoch_losses = [value for _, value in scalars(trained, "train/loss_epoch")]
    assert len(epoch_losses) == 5 and epoch_losses[-1] < epoch_losses[0]


def test_tensorboard_has_overlay_images_per_class_iou_and_learning_rate(trained):
    run = events(trained / "lightning_logs" / "version_0")
    tags = run.Tags()
    assert len(run.Images("val/overlays")) == 5  # one picture per validation epoch
    picture = run.Images("val/overlays")[-1]
    assert (picture.width, picture.height) == (3 * 480, 3 * 360)  # image | truth | prediction, 3 val images (the default)
    assert {"val/miou", "val/pixel_acc", "val/iou_road", "val/iou_bicyclist"} <= set(tags["scalars"])
    rates = [value for _, value in scalars(trained, "lr-AdamW/pg2")]
    assert len(rates) > 5 and rates[-1] < max(rates)  # warm-up, then cosine decay, step by step


def test_export_writes_a_model_the_library_loads_without_lightning(trained, tmp_path, camvid_mini):
    out = tmp_path / "exported"
    result = run_segsvc("export", str(trained / "checkpoints" / "last.ckpt"), "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    code = (
        "import sys, numpy as np, segsvc; from PIL import Image;"
        f"m = segsvc.load_model({str(out)!r}); assert m.class_names[0] == 'sky', m.class_names;"
        f"mask = segsvc.predict_mask(m, Image.open({str(next((camvid_mini / 'test').iterdir()))!r}));"
        "assert mask.shape == (360, 480); assert 'pytorch_lightning' not in sys.modules and 'lightning' not in sys.modules"
    )
    check = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]
    from segsvc.io.modelfolder import ONNX_FILE, graph_stamp, weights_digest

    assert graph_stamp(out / ONNX_FILE) == weights_digest(out)  # the folder carries its graph, stamped


def test_kill_and_resume_continues_the_global_step(tmp_path, camvid_mini):
    config = smoke_config(tmp_path, **{"max_epochs: 5": "max_epochs: 200", "runs/smoke": str(tmp_path / "run")})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [*SEGSVC, "fit", "--config", str(config), "--trainer.enable_progress_bar", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "stderr.txt").open("w"),
    )  # fmt: skip
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 400
    while time.time() < deadline and not last.exists() and process.poll() is None:
        time.sleep(0.5)
    assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
    time.sleep(3)  # let it train on past the checkpoint, then crash hard
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.exists(), "no checkpoint appeared before the kill"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    step, epoch = saved["global_step"], saved["epoch"]
    assert step > 0
    result = run_segsvc(
        "fit", "--config", str(config), "--ckpt_path", "last",
        "--trainer.max_epochs", str(epoch + 3), "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = torch.load(last, map_location="cpu", weights_only=False)
    steps_per_epoch = 3  # 12 camvid_mini train images, batch 4
    assert resumed["epoch"] == epoch + 2 and resumed["global_step"] == steps_per_epoch * (epoch + 3)
    newest = sorted((tmp_path / "run" / "lightning_logs").glob("version_*"))[-1]
    first = events(newest).Scalars("train/loss_step")[0]
    assert first.step >= step  # continued, not restarted from 0


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_instantiates(config, imagenet_weights, tmp_path):
    moved = "dirpath" not in config.read_text()  # one default_root_dir moves checkpoints too
    code = (
        f"import sys; sys.argv = ['segsvc', '--config', {str(config)!r}, '--trainer.default_root_dir', {str(tmp_path)!r},"
        f"'--model.encoder_weights', {str(imagenet_weights)!r}];"  # no downloads in tests (the CLI's default is imagenet)
        "from segsvc.training.cli import build_cli; cli = build_cli(None, run=False); data = cli.datamodule;"
        "assert cli.model.hparams.num_classes == data.num_classes == len(data.class_names) > 1;"
        "assert cli.model.model.class_names == data.class_names; print(type(data).__name__);"
        f"assert not {moved} or {{c.dirpath for c in cli.trainer.checkpoint_callbacks}} == {{{str(tmp_path / 'checkpoints')!r}}}"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEGSVC_DATA_ROOT": str(SHARED / "datasets")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_print_config_and_overrides():
    result = run_segsvc("fit", "--config", "configs/smoke.yaml", "--trainer.max_epochs", "7", "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "max_epochs: 7" in result.stdout and "CamVidDataModule" in result.stdout


def test_missing_dataset_is_one_clear_line(tmp_path):
    result = run_segsvc("fit", "--config", "configs/smoke.yaml", "--data.init_args.root", str(tmp_path / "nope"),
                     "--data.class_path", "segsvc.training.datamodule.SegmentationDataModule",
                     "--data.init_args.class_names", "[a,b]", "--trainer.enable_progress_bar", "false",
                     "--model.encoder_weights", "null")  # fmt: skip  (checked before the data: no ../shared needed)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"segsvc: error: dataset folder not found: {tmp_path / 'nope'}"
    assert "Traceback" not in result.stderr



@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model.aux_weight", "-1"], "segsvc: error: aux_weight must be 0 (no auxiliary head) or more, got -1.0"),
        (["--model.architecture", "smp_linknet", "--model.aux_weight", "0.4"],
         "segsvc: error: aux_weight and frozen_stages need architecture 'segsvc' (our encoder's stages), not 'smp_linknet': set them to 0"),
        (["--model.frozen_stages", "9"], "segsvc: error: frozen_stages must be 0 to 5 (the encoder's stages), got 9"),
    ],
)  # fmt: skip
def test_a_model_option_that_cannot_work_is_one_clear_line(options, message, tmp_path):
    result = run_segsvc("fit", "--config", "configs/smoke.yaml", "--trainer.default_root_dir", str(tmp_path),
                        "--model.encoder_weights", "null", *options)  # fmt: skip  (no ../shared needed: fails on the model)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in result.stderr and not (tmp_path / "checkpoints").exists()


def test_export_missing_checkpoint_is_one_clear_line(tmp_path):
    result = run_segsvc("export", str(tmp_path / "none.ckpt"), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"segsvc export: error: checkpoint not found: {tmp_path / 'none.ckpt'}"


def not_checkpoints(folder: Path) -> list[Path]:
    """Files named .ckpt that `segsvc fit` did not write: text, a torch file of something else, a cut one."""
    text, other, cut = folder / "text.ckpt", folder / "other.ckpt", folder / "cut.ckpt"
    text.write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(3)}, other)
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {}}, cut)
    cut.write_bytes(cut.read_bytes()[:600])
    return [text, other, cut]


@pytest.mark.parametrize("command", ["export", "predict"])
def test_a_file_that_is_not_a_checkpoint_is_one_clear_line(command, tmp_path):
    """torch.load's errors (UnpicklingError with advice to load untrusted pickles, KeyError, a zip error) were
    tracebacks of export and predict."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48)).save(images / "a.png")
    for path in not_checkpoints(tmp_path):
        if command == "export":
            result = run_segsvc("export", str(path), "-o", str(tmp_path / "out"))
        else:
            result = run_segsvc("predict", "--model", str(path), "--input", str(images), "--output", str(tmp_path / "out"))
        assert result.returncode == 2, result.stderr[-2000:]
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith(f"segsvc {command}: error: {path} is not a checkpoint of segsvc fit: it could not be read ("), line
        assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--trainer.precision", "bf16-mixed"],
        ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"],  # gloo, 2 processes
    ],
    ids=["bf16-mixed", "ddp-2-processes"],
)
def test_gpu_code_paths_run_on_cpu(tmp_path, extra, camvid_mini):
    config = smoke_config(tmp_path, **{"max_epochs: 5": "max_epochs: 2", "runs/smoke": str(tmp_path / "run")})
    result = run_segsvc("fit", "--config", str(config), "--trainer.enable_progress_bar", "false", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert scalars(tmp_path / "run", "val/miou")


def test_export_onnx_from_checkpoint(trained, tmp_path):
    result = run_segsvc("export", str(trained / "checkpoints" / "last.ckpt"), "-o", str(tmp_path / "m.onnx"), "--format", "onnx")
    assert result.returncode == 0, result.stderr[-2000:]
    from segsvc.runtime.onnxruntime_engine import OnnxRuntimeEngine

    assert OnnxRuntimeEngine(tmp_path / "m.onnx").run_batch(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 11, 64, 64)


def test_every_command_ends_its_process_group(tmp_path):
    """A DDP group Lightning leaves alive is destroyed before exit, even on an error: else Gloo's threads can abort the exit."""
    import torch.distributed as dist

    from segsvc.training.cli import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(SystemExit) as exited:
            main(["export", str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "out")])
        assert exited.value.code == 2
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_fit_help_explains_the_model_and_data_options():
    """`segsvc fit --help` shows each option's help from the Args: docstrings, the data module's included."""
    result = run_segsvc("fit", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    help_text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "--model.encoder_weights ENCODER_WEIGHTS Where the MobileNetV2 encoder starts" in help_text
    assert '--data.mask_suffix MASK_SUFFIX How mask file names end after the shared stem: "_mask.png" pairs X.png with X_mask.png' in help_text
    assert "--data.mask_values+ MASK_VALUES Per class, the mask value(s) meaning it" in help_text


@pytest.mark.parametrize(("words", "message"), [([], "no command"), (["fti"], "unknown command 'fti'")])
def test_a_missing_or_mistyped_command_is_one_line_naming_every_command(words, message):
    """Lightning's parser named only fit, validate, test and predict; argparse's only the others."""
    result = run_segsvc(*words)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"segsvc: error: {message}: the commands are fit, validate, test, predict, data, export, evaluate, "
        "quantize, accuracy (segsvc --help)"
    )


def test_help_lists_every_command():
    result = run_segsvc("--help")
    assert result.returncode == 0
    for command in ("fit", "predict", "data init", "data check", "export", "evaluate", "quantize", "accuracy"):
        assert f"segsvc {command}" in result.stdout, command
