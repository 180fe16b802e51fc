"""The audiocnn dashboard: ``streamlit run app.py``.

A multipage app: Analyze (landing page), Layers, Compare, Model and Map. Models are loaded
once per process into a small shared cache (``ui.resources``); each session serves its own
choice, picked in the sidebar (``ui.model_picker``) or given at launch with
``streamlit run app.py -- --checkpoint runs/x/best.pt`` (or ``$AUDIOCNN_CHECKPOINT``). The
current clip and its analysis live in ``st.session_state`` (``ui.state``) so every page
talks about the same sound.
"""

import streamlit as st

from ui import components, model_picker

st.set_page_config(page_title="audiocnn — what the CNN hears", page_icon="🔊", layout="wide")

page = st.navigation([
    st.Page("pages/analyze.py", title="Analyze", icon="🎧", default=True),
    st.Page("pages/layers.py", title="Layers", icon="🧅"),
    st.Page("pages/compare.py", title="Compare", icon="⚖️"),
    st.Page("pages/model.py", title="Model", icon="🧠"),
    st.Page("pages/map.py", title="Map", icon="🗺️"),
])  # fmt: skip
model_picker.sidebar()
page.run()
components.sidebar_summary()
