"""Reports name each metric's own label and the model (weights hash) behind a model-backed metric."""

from __future__ import annotations

from bench.reports.load import metric_info, model_text


def test_manifest_display_name_and_model_reach_the_metric_info():
    manifest = {"metrics": {"wer_whisper": {
        "higher_is_better": False, "unit": "fraction", "display_name": "WER (Whisper large-v3)",
        "model": {"model": "openai/whisper-large-v3", "weights_sha256": "ab" * 32, "folder": "/x",
                  "env": "BENCH_WHISPER_MODEL", "normaliser": "whisper-normalizer 0.1.12"}}}}
    info = metric_info("wer_whisper", manifest)
    assert info.display == "WER (Whisper large-v3)" and info.direction_source == "manifest"
    assert info.model == "openai/whisper-large-v3, weights sha256 abababababab, normaliser whisper-normalizer 0.1.12"


def test_missing_weights_are_said_and_signal_metrics_have_no_model():
    assert model_text({"model": "microsoft/wavlm-base-plus-sv", "error": "not in the cache"}) == \
        "microsoft/wavlm-base-plus-sv, weights missing"
    assert model_text(None) == ""
    assert metric_info("si_sdr", {"metrics": {"si_sdr": {"higher_is_better": True, "unit": "dB"}}}).model == ""


def test_the_report_lists_metrics_and_models(tmp_path):
    from bench.reports.make import make_report
    from bench.reports.synthetic import make_items, make_run

    items = make_items(tmp_path / "a", n_speakers=1, per_speaker=2, n_tracks=0, n_general=0)
    run = make_run(tmp_path / "run", items=items)
    written = make_report(run, tmp_path / "rep", formats=["md", "html"], n_boot=100, with_audio=False)
    md = written["md"].read_text()
    assert "## Metrics and models" in md and "none (signal metric)" in md
    assert 'id="metrics">Metrics and models' in written["html"].read_text()
