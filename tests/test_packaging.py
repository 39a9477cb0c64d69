"""What `pip install .` puts into site-packages: one import root, `segsvc`, with training/ and service/ as its
sub-packages (a user's own `training` or `service` package must not collide with ours)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_the_wheel_installs_one_import_root(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("segsvc-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert archive.read(f"{info}/top_level.txt").decode().split() == ["segsvc"]
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {name.split("/")[0] for name in names} == {"segsvc", info}
    for module in ("segsvc/training/cli.py", "segsvc/training/datamodule.py", "segsvc/service/service.py", "segsvc/service/settings.py"):
        assert module in names, module
    for data in ("segsvc/service/demo/index.html", "segsvc/service/api.md", "segsvc/assets/camvid_default/model.onnx"):
        assert data in names, data
    assert "segsvc = segsvc.training.cli:main" in entry_points and "segsvc-bento = segsvc.service.store:main" in entry_points
