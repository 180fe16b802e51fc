"""The Model page's "How faithful are the explanations" section: the table ``training.explain_eval``
stores under ``explanations`` in the shipped metrics, one row per method and layer, with the random
ranking every row is measured against."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from audiocnn import attribution

REMOVAL_NAMES = {"floor": "set to the floor", "impute": "imputed from neighbours"}


def rows(table: dict[str, Any]) -> pd.DataFrame:
    """One row per method: mean ± std over clips of each area, the gap and margins, fidelity, cost."""

    def cell(spread: dict[str, float]) -> str:
        return f"{spread['mean']:.2f} ± {spread['std']:.2f}"

    records = []
    for key, t in table["methods"].items():
        record: dict[str, Any] = {"method": attribution.METHODS[key].label if key in attribution.METHODS else key}
        for removal, name in REMOVAL_NAMES.items():
            if removal not in t:
                continue
            a = t[removal]
            record |= {f"top first ({name})": cell(a["most_first"]), f"bottom first ({name})": cell(a["least_first"]),
                       f"random ({name})": cell(a["random"]), f"gap ({name})": cell(a["gap"])}  # fmt: skip
        record |= {"fidelity-in": t["fidelity_in"], "fidelity-out": t["fidelity_out"], "ms per map": t["map_ms_median"]}
        records.append(record)
    return pd.DataFrame(records)


def show(metrics: dict[str, Any] | None) -> None:
    st.markdown("### How faithful are the explanations")
    tables = (metrics or {}).get("explanations") or {}
    held = tables.get("heldout")
    if not held:
        st.info(
            "No explanation evaluation ships yet. Create it with `python -m training.explain_eval --data-dir "
            "<ESC-50 folder> --folds 5 --store heldout` (and `--folds 1 2 3 4 --store selection` for the default)."
        )
        return
    selection = tables.get("selection") or {}
    st.caption(
        f"{held['clips']} held-out fold-5 clips ({held['clips_planned']} planned, taken class by class), each "
        "explained for its predicted class. Each area is the mean over 0–50 % of the cells deleted of the class's "
        "probability relative to the untouched window (one view): lower is better when the map's top cells go "
        "first, higher when its bottom cells go first; the gap is their difference, and the random ranking is the "
        f"baseline. Fidelity: with the top {held['keep_share']:.0%} of the map kept and resynthesised, the kept "
        "part alone still gives the class (in) and the removed part loses it (out). Milliseconds per map are "
        "those of the evaluation machine."
    )
    st.dataframe(rows(held), hide_index=True, width="stretch", column_config={
        "fidelity-in": st.column_config.NumberColumn(format="percent"),
        "fidelity-out": st.column_config.NumberColumn(format="percent"),
        "ms per map": st.column_config.NumberColumn(format="%.0f"),
    })  # fmt: skip
    best = (selection.get("best") or {}).get("impute")
    if best in held["methods"]:
        row = held["methods"][best]["impute"]
        st.caption(
            f"The Analyze page's default is {attribution.METHODS[best].label}: the best gap with imputed deletion "
            f"among the methods that beat the random ranking in both orders on {selection['clips']} clips of folds "
            f"1-4 (the model's training data). On fold 5 it beats random by {row['margin_most_first']['mean']:.2f} "
            f"(top first) and {row['margin_least_first']['mean']:.2f} (bottom first)."
        )
