"""Training, evaluation and data tools for audiocnn (local and on Modal)."""
