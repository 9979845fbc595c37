"""What a command ends with: a run in words for people and in JSON for scripts (--json); predictions as lines."""
from __future__ import annotations


def as_json(result) -> dict:
    """Where the run went, how good it is and what it cost, as plain JSON values."""
    if result.saved_model_dir is None:  # --dry-run
        return {"run": str(result.run_dir), "dry_run": True, "counts": result.counts, "skipped": len(result.skipped)}
    focus = result.metrics[result.focus]
    return {"run": str(result.run_dir), "model": str(result.saved_model_dir), "published": result.published,
            "version": result.version, "focus": result.focus,
            "accuracy": {name: m["accuracy"] for name, m in result.metrics.items()},
            "epochs": result.epochs, "class_weight": result.class_weight, "most_confused": focus["most_confused"],
            "counts": result.counts, "skipped": len(result.skipped), "tflite": result.tflite, "onnx": result.onnx,
            "seconds": result.seconds,
            "features": result.features, "fine_tune": result.fine_tune, "augment": result.augment}


def as_lines(result) -> list[str]:
    """The summary a person reads: the judged accuracy, the worst confusions, the files to open."""
    if result.saved_model_dir is None:  # --dry-run
        sizes = ", ".join(f"{sum(c.values())} {name}" for name, c in result.counts.items())
        return [f"dry run: {sizes} images; {len(result.skipped)} skipped", f"split: {result.run_dir / 'split.csv'}",
                f"skipped: {result.run_dir / 'skipped.csv'}"]
    focus = result.metrics[result.focus]
    lines = [f"{result.focus} accuracy: {focus['accuracy']:.3f} on {focus['count']} images "
             f"(validation {result.val_accuracy:.3f}, kept epoch {result.epochs})"]
    pairs = [f"{p['true']} as {p['predicted']} ({p['count']})" for p in focus["most_confused"] if p["count"]]
    if pairs:
        lines.append(f"most confused: {', '.join(pairs)}")
    if result.skipped:
        lines.append(f"skipped: {len(result.skipped)} files, listed in {result.run_dir / 'skipped.csv'}")
    if result.augment:
        lines.append(f"augment: {augment_text(result.augment)}")
    if result.fine_tune:
        lines.append(f"fine-tune: {fine_tune_text(result.fine_tune)}")
    if result.tflite:
        lines.append(f"tflite ({result.tflite['kind']}): {export_text(result.tflite, 'tflite_accuracy')}")
    if result.onnx:
        lines.append(f"onnx: {export_text(result.onnx, 'onnx_accuracy')}")
    return lines + [f"model: {result.saved_model_dir}", f"report: {result.run_dir / 'report.html'}"]


# What --augment exported (augmented.choose's "kept"), in words.
AUGMENT_CHOICES = {"without": "the head trained without views", "with": "the head trained with views",
                   "average": "the average of the two heads"}


def augment_text(report: dict) -> str:
    """--augment's choice in words, from augmented.choose's report."""
    loss = report["val_loss"]
    return (f"validation loss {loss['without']:.4f} without views, {loss['with']:.4f} with {report['views']} per "
            f"image, {loss['average']:.4f} for their average; exported {AUGMENT_CHOICES[report['kept']]}")


def fine_tune_text(report: dict) -> str:
    """Phase 2 in words, from finetune.report."""
    return (f"validation loss {report['before']['val_loss']:.4f} -> {report['after']['val_loss']:.4f}"
            + ("" if report["kept"] else "; not lower, so the phase-1 model was exported"))


def prediction_line(result: dict) -> str:
    """One `predict` result as a line: "path: label score  label score ...", or "Error: path: reason"."""
    if "error" in result:
        return f"Error: {result['path']}: {result['error']}"
    return f"{result['path']}: " + "  ".join(f"{p['label']} {p['score']:.3f}" for p in result["predictions"])


def extraction_line(result: dict) -> str:
    """What `extract` did, in one line: files, cache hits, extracted and skipped counts, the namespace."""
    return (f"files: {result['listed']}, cached: {result['cached']}, duplicates: {result['duplicates']}, "
            f"extracted: {result['extracted']}, skipped: {result['skipped']}; cache: {result['namespace']} "
            f"({result['entries']} entries)")


def evaluation_lines(result) -> list[str]:
    """`evaluate` in words: overall accuracy, each label's, and where the report is."""
    return ([f"accuracy: {result.accuracy:.4f} on {result.count} images"]
            + [f"  {label:<24} {accuracy:.3f}" for label, accuracy in result.per_class.items()]
            + [f"report: {result.output}/report.html"])


def check_lines(found) -> list[str]:
    """What `retrain check` ends with: the files to open (found: pipeline.Checked). The audit's own line
    was logged as the check found it; saying it again would print each fact twice."""
    return [f"issues: {found.run_dir / 'data_issues.csv'}", f"report: {found.run_dir / 'report.html'}"]


def export_text(check: dict, key: str) -> str:
    """A converted file's check against the SavedModel (tflite.export_checked, onnx_export.export_checked)."""
    return (f"accuracy {check[key]:.3f} against {check['saved_model_accuracy']:.3f} "
            f"(drop {check['drop_points']:.2f} points); {check['changed_answers']} of {check['images']} "
            "answers changed")
