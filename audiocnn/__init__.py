"""audiocnn: an explainable ESC-50 sound classifier (library: no Streamlit, Modal or training imports)."""

__version__ = "0.1.0"
