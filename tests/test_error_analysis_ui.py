"""The logic and figures behind the Model page's confusions, its training history and the Map page
(no script run here: the pages themselves are in test_app_error_analysis.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiocnn.embedding import ReferenceClips
from audiocnn.labels import CLASS_NAMES, class_info
from ui import confusions, history, plots
from ui.embedding import EmbeddingMap, build_map, map_figure, nearest_rows
from ui.resources import METRICS_PATH

ANIMALS = "Animals"


def record(clip: str, target: int, *top: tuple[int, float]) -> dict:
    return {"clip": clip, "target": target, "top": [list(pair) for pair in top]}


METRICS = {
    "class_names": list(CLASS_NAMES),
    "held_out_clips": {"clips": [
        record("5-1-A-0", 0, (5, 0.6), (0, 0.3)), record("5-2-A-0", 0, (5, 0.8), (1, 0.1)),
        record("5-3-A-0", 0, (0, 0.9), (5, 0.05)), record("5-4-A-48", 48, (25, 0.5), (48, 0.2)),
    ]},
}  # fmt: skip


def test_a_cell_lists_its_clips_most_confident_first_with_both_probabilities():
    clips = confusions.records(METRICS)
    dog_as_cat = confusions.cell(clips, 0, 5)
    assert [c.name for c in dog_as_cat] == ["5-2-A-0", "5-1-A-0"]
    assert dog_as_cat[1].probability(0) == 0.3 and dog_as_cat[0].probability(0) is None  # below its top classes
    assert [c.name for c in confusions.cell(clips, 0, 0)] == ["5-3-A-0"]
    assert confusions.cell(clips, 5, 0) == []  # true and predicted are not interchangeable


def test_most_confused_pairs_follow_the_category_filter():
    confusion = confusions.records_confusion(confusions.records(METRICS), 50)
    everything = confusions.confused_pairs(confusion, range(50))
    assert everything == [(0, 5, 2), (48, 25, 1)]
    animals = confusions.in_category(CLASS_NAMES, ANIMALS)
    assert all(class_info(CLASS_NAMES[i]).category == ANIMALS for i in animals) and len(animals) == 10
    assert confusions.confused_pairs(confusion, animals) == [(0, 5, 2)]  # no Fireworks -> Footsteps under Animals


def test_a_click_on_a_cell_names_its_true_and_predicted_class():
    confusion = np.zeros((50, 50), dtype=int)
    confusion[3, 7] = 4
    keep = [0, 3, 7, 12]
    figure = confusions.matrix_figure(confusion, CLASS_NAMES, keep, normalise=False, selected=(3, 7))
    cells = figure.data[-1]
    assert cells.type == "scatter" and figure.data[0].type == "heatmap"
    for x, y, data in zip(cells.x, cells.y, cells.customdata):
        true, predicted = int(data[0]), int(data[1])
        assert y == plots.class_label(CLASS_NAMES[true]) and x == plots.class_label(CLASS_NAMES[predicted])
        assert data[2] == confusion[true, predicted]
    assert sum(1 for d in cells.customdata if d[2] == 4) == 1 and len(cells.x) == len(keep) ** 2
    outline = figure.layout.shapes[0]
    assert (outline.x0 + 0.5, outline.y0 + 0.5) == (keep.index(7), keep.index(3))  # column = predicted, row = true


def test_the_shipped_records_are_the_shipped_matrix():
    metrics = json.loads(METRICS_PATH.read_text(encoding="utf-8"))
    clips = confusions.records(metrics)
    assert len(clips) == metrics["num_clips"] == 400
    assert confusions.records_confusion(clips, 50).tolist() == metrics["confusion"]


STAGE_ONE = {"source": "runs/base/best.pt", "recipe": {"lr": 0.002, "epochs": 3}, "epochs": 3,
             "history": [{"epoch": e, "train_loss": 4.0 - e, "train_accuracy": 0.2 * e, "lr": 1e-3 / e}
                         for e in (1, 2, 3)]}  # fmt: skip
OWN = [{"epoch": e, "train_loss": 0.5, "train_accuracy": 0.9, "lr": 3e-4} for e in (1, 2)]


def test_history_stages_from_lineage_shipped_file_or_own_run_only():
    parent = {"recipe": STAGE_ONE["recipe"], "epochs_trained": 3, "train_folds": [1, 2, 3, 4]}
    tuned = {"history": OWN, "epochs_trained": 2, "initialised_from": parent, "recipe": {"lr": 3e-4}}
    shipped = history.stages(tuned, [STAGE_ONE])
    assert [s.epochs for s in shipped] == [3, 2] and shipped[0].name == "runs/base/best.pt"
    lineage = {**tuned, "lineage": [{**STAGE_ONE, "source": "from lineage"}]}
    assert history.stages(lineage, [STAGE_ONE])[0].name == "from lineage"  # the checkpoint's own record wins
    other_parent = {**tuned, "initialised_from": {**parent, "recipe": {"lr": 0.1}}}
    assert [s.epochs for s in history.stages(other_parent, [STAGE_ONE])] == [2]  # not its parent: not shown
    assert [s.epochs for s in history.stages({"history": OWN}, [STAGE_ONE])] == [2]
    assert history.stages({}, [STAGE_ONE]) == []
    assert [s.epochs for s in history.stages({**tuned, "lineage": [{"bad": 1}, "x"]}, [])] == [2]


def test_the_shipped_model_shows_both_stages(shipped_checkpoint):
    from audiocnn.checkpoint import load_checkpoint

    found = history.stages(load_checkpoint(shipped_checkpoint).metadata, history.read_shipped_lineage())
    assert [s.epochs for s in found] == [300, 10] and len(found[0].history) == 300


def test_curves_run_on_one_epoch_axis_in_distinct_colours_with_a_log_lr_axis():
    stages = [history._stage(STAGE_ONE, "s1"), history.Stage("own", 2, tuple(OWN))]
    figure = history.curves_figure(stages)
    by_name = {trace.name: trace for trace in figure.data}
    assert list(by_name["train_loss"].x) == [1, 2, 3, 4, 5]  # the second stage continues at epoch 4
    assert list(by_name["lr"].y) == pytest.approx([1e-3, 5e-4, 1e-3 / 3, 3e-4, 3e-4])
    colours = [trace.line.color for trace in figure.data]
    assert len(set(colours)) == len(colours) == 3  # train_loss and train_accuracy no longer share one colour
    assert figure.layout.yaxis3.type == "log" and figure.layout.yaxis3.exponentformat == "e"  # not "300μ"
    assert len(figure.layout.shapes) >= 3  # the stages are marked


def test_per_class_axis_shows_its_100_percent_tick():
    figure = plots.per_class_figure({"dog": 1.0, "cat": 0.5})
    assert 1.0 in figure.layout.xaxis.tickvals and figure.layout.xaxis.range[1] > 1.0


def test_timeline_lines_differ_in_colour_and_marker():
    probabilities = np.random.default_rng(0).dirichlet(np.ones(50), size=4)
    figure = plots.timeline_figure(np.arange(4.0), 5.0, probabilities, CLASS_NAMES, [0, 35, 10, 20, 30], 1)
    assert len({t.line.color for t in figure.data}) == 5 and len({t.marker.symbol for t in figure.data}) == 5


def test_confusion_colour_bar_clears_the_toolbar_and_the_title_clears_the_labels():
    figure = plots.confusion_figure(np.eye(3, dtype=int), ["dog", "cat", "cow"], normalise=True)
    assert figure.layout.margin.t >= 30 and figure.data[0].colorbar.title.side == "right"
    assert figure.layout.xaxis.title.standoff >= 10


def tiny_map() -> EmbeddingMap:
    features = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    layout = np.array([[0.0, 0.0], [0.5, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    names = ("5-1-A-0", "5-2-A-0", "5-3-A-5", "5-4-A-48")
    reference = ReferenceClips(names, np.array([0, 0, 5, 48]), features, "x", layout)
    return build_map(reference, "test", 0.0)


def test_neighbours_can_be_limited_to_playable_clips_and_skip_the_clip_itself():
    emap = tiny_map()
    query = np.array([1.0, 0.05, 0.0])
    assert [row for row, _ in nearest_rows(emap, query, None, None, k=2)] == [0, 1]
    assert [row for row, _ in nearest_rows(emap, query, None, 0, k=2)] == [1, 2]  # the clip is not its own neighbour
    assert [row for row, _ in nearest_rows(emap, query, [2, 3, 1], None, k=2)] == [1, 2]  # rows of the whole map


def test_map_points_carry_their_row_and_the_current_clip_is_a_star():
    emap = tiny_map()
    figure = map_figure(emap, CLASS_NAMES, True, {"5-2-A-0": 5}, (np.array([0.1, 0.2]), "mine"), [0, 1])
    points = [t for t in figure.data if t.mode == "markers"]
    rows = {int(d[0]): t for t in points for d in t.customdata}
    assert sorted(rows) == [0, 1, 2, 3]
    for trace in points:
        for data, x, y in zip(trace.customdata, trace.x, trace.y):
            assert (x, y) == pytest.approx(tuple(emap.coordinates[int(data[0])]))
    crosses = next(t for t in points if t.name == "misclassified")
    assert [int(d[0]) for d in crosses.customdata] == [1] and crosses.marker.symbol == "x-thin"  # heard as class 5
    star = next(t for t in figure.data if t.name == "current clip")
    assert star.marker.symbol == "star" and list(star.x) == [0.1]
    assert sum(1 for t in figure.data if t.mode == "lines") == 2
    tsne_figure = map_figure(emap, CLASS_NAMES, True, {}, None, (), "t-SNE")
    for trace in tsne_figure.data:
        for data, x, y in zip(trace.customdata, trace.x, trace.y):
            assert (x, y) == pytest.approx(tuple(emap.layout[int(data[0])]))


def test_a_reference_clip_sits_on_its_own_point_and_a_new_one_is_placed_without_refit():
    emap = tiny_map()
    assert emap.locate(np.zeros(3), "t-SNE", 2) == pytest.approx(emap.layout[2])
    before = emap.layout.copy()
    near_first = emap.locate(np.array([1.0, 0.0, 0.0]), "t-SNE", None)
    assert np.array_equal(emap.layout, before)
    assert np.linalg.norm(near_first - emap.layout[0]) < np.linalg.norm(near_first - emap.layout[3])
    assert emap.locate(np.array([1.0, 0.0, 0.0]), "PCA", None) == pytest.approx(emap.projection.transform(
        np.array([1.0, 0.0, 0.0])))  # fmt: skip


def test_a_local_copy_adds_its_fold_5_clips_to_a_computed_map(tiny_esc50, monkeypatch):
    from audiocnn.heldout import ESC50_ENV, bundled_clips
    from ui.embedding import _available_clips

    monkeypatch.setenv(ESC50_ENV, str(tiny_esc50))
    found = _available_clips()
    bundled = {clip.name for clip in bundled_clips()}
    local = [(name, target) for name, target, path in found if name not in bundled]
    assert sorted(local) == sorted((f"5-{t:03d}-A-0", t) for t in range(50))  # fold 5 only, with its classes
    assert all(path.parent == tiny_esc50 / "audio" for name, _, path in found if name not in bundled)
