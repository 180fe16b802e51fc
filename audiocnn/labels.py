"""ESC-50 class names, display names, emoji and major categories.

The dataset's target index is the model's output index, so ``CLASS_NAMES`` is in
target order. A checkpoint carries its own class names, taken by training from the
dataset's metadata, and those are what inference reports; this module is ESC-50's
list as published (the tests hold the shipped checkpoint to it) and the decoration
(display names, emoji, categories) the app and CLI add.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASS_NAMES: tuple[str, ...] = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops",
    "wind", "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps",
    "laughing", "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks",
    "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
    "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells",
    "airplane", "fireworks", "hand_saw",
)  # fmt: skip

# ESC-50 groups its classes in blocks of ten, one block per major category.
MAJOR_CATEGORIES: tuple[str, ...] = (
    "Animals",
    "Natural soundscapes & water",
    "Human, non-speech",
    "Interior / domestic",
    "Exterior / urban",
)

EMOJI: dict[str, str] = {
    "dog": "🐕", "rooster": "🐓", "pig": "🐖", "cow": "🐄", "frog": "🐸", "cat": "🐈",
    "hen": "🐔", "insects": "🦟", "sheep": "🐑", "crow": "🐦‍⬛",
    "rain": "🌧️", "sea_waves": "🌊", "crackling_fire": "🔥", "crickets": "🦗",
    "chirping_birds": "🐦", "water_drops": "💧", "wind": "🌬️", "pouring_water": "🚰",
    "toilet_flush": "🚽", "thunderstorm": "⛈️",
    "crying_baby": "👶", "sneezing": "🤧", "clapping": "👏", "breathing": "😮‍💨",
    "coughing": "😷", "footsteps": "👣", "laughing": "😂", "brushing_teeth": "🪥",
    "snoring": "😴", "drinking_sipping": "🥤",
    "door_wood_knock": "🚪", "mouse_click": "🖱️", "keyboard_typing": "⌨️",
    "door_wood_creaks": "🚪", "can_opening": "🥫", "washing_machine": "🧺",
    "vacuum_cleaner": "🧹", "clock_alarm": "⏰", "clock_tick": "🕰️", "glass_breaking": "🍷",
    "helicopter": "🚁", "chainsaw": "🪚", "siren": "🚨", "car_horn": "📯", "engine": "🚗",
    "train": "🚆", "church_bells": "🔔", "airplane": "✈️", "fireworks": "🎆", "hand_saw": "🪚",
}  # fmt: skip

_DISPLAY_OVERRIDES = {
    "door_wood_knock": "Door knock",
    "door_wood_creaks": "Door creaks",
    "drinking_sipping": "Drinking / sipping",
    "insects": "Insects (flying)",
}


@dataclass(frozen=True)
class ClassInfo:
    """Everything the UI shows about one class."""

    index: int
    name: str
    display_name: str
    emoji: str
    category: str


def display_name(name: str) -> str:
    """Human-readable form of a dataset class name (``sea_waves`` -> ``Sea waves``)."""
    return _DISPLAY_OVERRIDES.get(name, name.replace("_", " ").capitalize())


def class_info(name: str) -> ClassInfo:
    """Look up a class by its dataset name; unknown names still get a readable entry.

    A checkpoint may carry class names this module does not know (a model trained on
    another label set); those get a neutral emoji and an "Other" category instead of
    failing.
    """
    if name in CLASS_NAMES:
        index = CLASS_NAMES.index(name)
        category = MAJOR_CATEGORIES[index // 10]
    else:
        index, category = -1, "Other"
    return ClassInfo(index, name, display_name(name), EMOJI.get(name, "🔊"), category)
