"""App-side helpers of the Streamlit dashboard (the library ``audiocnn`` never imports Streamlit).

``axes``, ``plots``, ``layers`` and ``sample_index`` are plain Python (testable without
Streamlit); ``resources``, ``state`` and ``components`` hold the Streamlit glue.
"""
