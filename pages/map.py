"""Map: where the model puts every held-out clip, where it puts yours, and what it hears yours as most like."""

import streamlit as st

from ui import embedding, resources

model = resources.predictor()
st.title("🗺️ Embedding map")
embedding.show(model)
