"""The audiocnn dashboard: ``streamlit run app.py``.

A multipage app: Analyze (landing page), Layers, Compare, Model and Map. The model is loaded
once per process (``ui.resources``); the current clip and its analysis live in
``st.session_state`` (``ui.state``) so every page talks about the same sound.
"""

import streamlit as st

from ui import components

st.set_page_config(page_title="audiocnn — what the CNN hears", page_icon="🔊", layout="wide")

page = st.navigation([
    st.Page("pages/analyze.py", title="Analyze", icon="🎧", default=True),
    st.Page("pages/layers.py", title="Layers", icon="🧅"),
    st.Page("pages/compare.py", title="Compare", icon="⚖️"),
    st.Page("pages/model.py", title="Model", icon="🧠"),
    st.Page("pages/map.py", title="Map", icon="🗺️"),
])  # fmt: skip
page.run()
components.sidebar_summary()
