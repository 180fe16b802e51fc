"""Benchmarks of what users wait for: explaining a clip in the app, and retraining a model.

Kept outside ``audiocnn`` because the training half exercises ``training``'s data path,
which the library must never import.
"""
