"""Pure learning code: vision model, OoD detectors, GU ranker, privacy filter, aggregation.

Rule: torch/numpy only; no files, no sockets, no printing, no wire types. Import submodules
directly (`peerdata.ml.vision`, `peerdata.ml.ood`, `peerdata.ml.ranker`).
"""
