"""The training recipe a short YAML gets, chosen from what the data check measured.

As nnU-Net derives its configuration from a dataset's "fingerprint" (Isensee et al. 2021), each setting
the YAML leaves unset is chosen here from the train split's statistics, with the reason, so the run can
print why: class weighting when the classes are imbalanced, a schedule long enough in optimizer steps
whatever the number of images, and a crop that suits the image sizes. A value in the YAML always wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Most / least frequent class (train pixels) from which ENet weighting pays: a class at under a tenth of
# another's pixels is what a plain cross-entropy learns last (3% hazelnuts next to dates and figs: IoU 0.00
# unweighted, 0.57-0.72 weighted).
IMBALANCE_FOR_WEIGHTING = 10.0
# With three classes or more, a milder imbalance already starves the rarer ones at a short budget: an aerial
# set of 5 classes at 6:1 (rarest 9% of the pixels) left road at IoU 0.00 and vegetation 0.02 unweighted after
# 40 epochs (val mIoU 0.40), 0.50 with ENet weighting (road 0.47). Two classes keep the 10:1 rule (a person
# against background learns unweighted), so binary sets are chosen for as before.
MULTICLASS_IMBALANCE_FOR_WEIGHTING = 3.0
# Schedule: about EPOCHS passes over the train images, but never fewer than MIN_STEPS optimizer steps (18
# images at batch 8 are 2 steps per epoch) nor more than MAX_STEPS; about VALIDATIONS validations per run.
EPOCHS, MIN_STEPS, MAX_STEPS, VALIDATIONS = 100, 2000, 20000, 25
# The latest checkpoint (for --ckpt_path last) about every CHECKPOINT_STEPS steps, not after each 1-step epoch:
# a 24 MB save takes ~0.1 s, more than a training step of a small set.
CHECKPOINT_STEPS = 50
# Square crop: this share of the median train image's short side, a multiple of 32 within these bounds.
CROP_SHARE, MIN_CROP, MAX_CROP = 0.75, 128, 512


@dataclass(frozen=True)
class Choice:
    """One setting the data chose: where it lives in the YAML, its value and why."""

    setting: str
    value: object
    reason: str

    def __str__(self) -> str:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.setting}: {value}   ({self.reason})"


def choose_class_weighting(class_pixels: list[int], class_names: list[str]) -> Choice:
    """"enet" when the most frequent class has IMBALANCE_FOR_WEIGHTING times the pixels of the rarest (with three
    classes or more, MULTICLASS_IMBALANCE_FOR_WEIGHTING times), else "none"."""
    present = [(count, name) for count, name in zip(class_pixels, class_names) if count > 0]
    if len(present) < 2:
        return Choice("model.class_weighting", "none", "fewer than two classes in the train masks")
    (most, _), (least, rare) = max(present), min(present)
    total = sum(count for count, _ in present)
    ratio = most / least
    shown = f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"  # 2.9:1 is not shown as 3:1 when 3:1 is the rule
    measured = f"most/least frequent class {shown}:1 in train pixels, {rare} rarest at {100 * least / total:.1f}%"
    threshold = MULTICLASS_IMBALANCE_FOR_WEIGHTING if len(present) >= 3 else IMBALANCE_FOR_WEIGHTING
    if ratio >= threshold:
        return Choice("model.class_weighting", "enet", f"{measured}, at least {threshold:.0f}:1 for {len(present)} classes: rare classes weigh more")
    return Choice("model.class_weighting", "none", f"{measured}, under {threshold:.0f}:1 for {len(present)} classes: balanced enough")


def choose_schedule(train_images: int, batch_size: int) -> tuple[Choice, Choice]:
    """(trainer.max_epochs, trainer.check_val_every_n_epoch): enough optimizer steps, a bounded number of validations."""
    steps_per_epoch = max(train_images // batch_size, 1)  # the train loader drops a last partial batch
    steps = min(max(EPOCHS * steps_per_epoch, MIN_STEPS), MAX_STEPS)
    epochs = math.ceil(steps / steps_per_epoch)
    reason = (
        f"{train_images} train images at batch {batch_size}: {steps_per_epoch} step(s) per epoch; "
        f"{epochs * steps_per_epoch} steps: about {EPOCHS} epochs, at least {MIN_STEPS} and at most {MAX_STEPS} steps"
    )
    every = max(1, epochs // VALIDATIONS)
    return (
        Choice("trainer.max_epochs", epochs, reason),
        Choice("trainer.check_val_every_n_epoch", every, f"about {VALIDATIONS} validations in {epochs} epochs"),
    )


def choose_checkpoint_interval(train_images: int, batch_size: int) -> Choice:
    """Epochs between `latest.ckpt` saves: about every CHECKPOINT_STEPS optimizer steps, at least every epoch."""
    steps_per_epoch = max(train_images // batch_size, 1)
    every = max(1, CHECKPOINT_STEPS // steps_per_epoch)
    reason = f"about every {CHECKPOINT_STEPS} steps at {steps_per_epoch} step(s) per epoch"
    return Choice("latest checkpoint every_n_epochs", every, reason)


def choose_crop_size(sizes: dict[str, int], scale_range: tuple[float, float] = (0.5, 2.0)) -> Choice:
    """A square crop from the train image sizes ("WxH" -> count): CROP_SHARE of the median short side.

    The reason also says at what resolution the model learns and serves: crops of the images at `scale_range`
    times their own size, and whole images at their own size (tiled when large), so a 12 MP photo is not shrunk."""
    short_sides = sorted(side for size, count in sizes.items() for side in [min(map(int, size.split("x")))] * count)
    median = short_sides[len(short_sides) // 2]
    side = min(max(int(median * CROP_SHARE) // 32 * 32, MIN_CROP), MAX_CROP)
    largest = max(sizes, key=lambda size: math.prod(map(int, size.split("x"))))
    reason = (
        f"median train image short side {median} px (of {short_sides[0]}-{short_sides[-1]}): "
        f"about {CROP_SHARE:.0%} of it, a multiple of 32 in {MIN_CROP}-{MAX_CROP}; the model trains on {side}x{side} "
        f"crops of the images at {scale_range[0]:g}-{scale_range[1]:g}x their own size (up to {largest}) and serves "
        "whole images at their own size"
    )
    return Choice("data.crop_size", (side, side), reason)


def format_recipe(choices: list[Choice]) -> str:
    """The lines a run prints: each chosen setting and why; a YAML value of the same name overrides it."""
    if not choices:
        return ""
    lines = ["recipe (chosen from the data; set any of these in the YAML to choose yourself):"]
    return "\n".join(lines + [f"  {choice}" for choice in choices])
