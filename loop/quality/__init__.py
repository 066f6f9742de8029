"""Annotator quality: per-annotator reliability figures (reliability), the `[quality]` thresholds that flag an
annotator (flags) and the database reads behind `annotators list`, `status` and the report (inputs)."""
