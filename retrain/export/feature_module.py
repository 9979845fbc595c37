"""The backbone, without any classification layer, as a TF-Hub feature-vector module of your own (train on
B, reuse on A): written to --export-module, or to runs/N/feature_vector when phase 2 changed it."""
from __future__ import annotations

from pathlib import Path

from retrain.backbone import trainable


def export_backbone(export_module: Path | None, phase2, module_path: str, image_size: int,
                    run_dir: Path) -> Path | None:
    """Write the module to export_module, else (when phase 2 kept its weights) to run_dir/feature_vector,
    which the classifier export then uses. phase2: finetune.Phase2 or None. Returns the folder, or None
    when nothing was written."""
    if export_module is None and (phase2 is None or not phase2.kept):
        return None
    target = Path(export_module) if export_module is not None else run_dir / "feature_vector"
    backbone = phase2.backbone if phase2 is not None else trainable.load(module_path)
    return trainable.export_module(backbone, image_size, target)
