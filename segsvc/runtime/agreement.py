"""How far each reduced-precision form of a model strays from fp32: the share of pixels whose class agrees
with ONNX Runtime fp32's on a folder of images, pooled and per image. Recorded in the model folder's
`accuracy.json`; backend "auto" serves a bf16 or int8 form only with a record good enough (`segsvc.runtime.auto`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from segsvc.io.modelfolder import read_config, write_accuracy
from segsvc.runtime.forms import FORMS, load_form, unavailable
from segsvc.runtime.predict import predict_mask


def measure_agreement(folder: str | Path, files: Sequence[Path], threads: int | None = None) -> dict[str, dict]:
    """Form name -> {"agreement", "worst", "images"} for every reduced-precision form this machine runs."""
    from segsvc.runtime.quantize import read_rgb

    images = [read_rgb(path) for path in files]
    reference_engine = load_form(folder, FORMS["onnxruntime"], threads)
    references = [predict_mask(reference_engine, image) for image in images]
    del reference_engine
    records = {}
    for name, form in FORMS.items():
        if not form.reduced or unavailable(folder, form) is not None:
            continue
        engine = load_form(folder, form, threads)
        agree = [int((predict_mask(engine, image) == reference).sum()) for image, reference in zip(images, references)]
        pixels = [reference.size for reference in references]
        records[name] = {
            "agreement": round(sum(agree) / sum(pixels), 5),
            "worst": round(min(a / p for a, p in zip(agree, pixels)), 5),
            "images": len(images),
        }
    return records


def record_agreement(folder: str | Path, calibration: str | Path, count: int = 32, threads: int | None = None) -> dict[str, dict]:
    """Measure every reduced form's agreement on `count` images of `calibration` and write them to the folder."""
    from segsvc.runtime.quantize import calibration_images

    read_config(folder)  # a clear error for anything that is not a model folder
    records = measure_agreement(folder, calibration_images(calibration, count), threads)
    for record in records.values():
        record["calibration"] = str(calibration)
    write_accuracy(folder, records)
    return records
