"""Pure parts of loop.ml.dpo: settings validation, the training-data hash and the TRL dataset format."""

import pytest

from loop.config import DPO_LOSS_TYPES, TrainingConfig
from loop.ml.dpo import PreferencePair, build_preference_dataset, training_data_hash
from loop.ml.settings import TrainingSettings

PAIRS = [
    PreferencePair("What is 2+2?", "4", "5"),
    PreferencePair("Name a colour.", "Blue.", "Seven."),
    PreferencePair("Say hi.", "Hi!", "No."),
]


def test_defaults_are_valid_and_round_trip():
    settings = TrainingSettings()
    assert (
        settings.beta == 0.1 and settings.loss_type == "sigmoid" and settings.dtype == TrainingConfig().dtype
    )
    assert TrainingSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("beta", 0.0),
        ("beta", float("nan")),
        ("learning_rate", -1e-5),
        ("epochs", 0),
        ("epochs", 1.5),
        ("batch_size", 0),
        ("gradient_accumulation_steps", 0),
        ("max_length", 1),
        ("loss_type", "dpo"),
        ("lora", "yes"),
        ("lora_r", 0),
        ("lora_alpha", 0),
        ("lora_dropout", 1.0),
        ("lora_target_modules", []),
        ("lora_target_modules", ""),
        ("precompute_ref_log_probs", 1),
        ("dtype", "float16"),
        ("seed", -1),
    ],
)
def test_bad_settings_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"TrainingSettings\.{field}\b"):
        TrainingSettings(**{field: value})


def test_unknown_loss_type_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="sigmoid, hinge, ipo") as err:
        TrainingSettings(loss_type="orpo")
    assert all(name in str(err.value) for name in DPO_LOSS_TYPES)


def test_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match="warmup"):
        TrainingSettings.from_dict({"beta": 0.1, "warmup": 3})


def test_data_hash_is_order_independent_and_content_sensitive():
    base = training_data_hash(PAIRS)
    assert base == training_data_hash(list(reversed(PAIRS)))
    assert len(base) == 64
    flipped = [PreferencePair(p.prompt, p.rejected, p.chosen) for p in PAIRS]
    assert training_data_hash(flipped) != base
    assert training_data_hash([*PAIRS, PAIRS[0]]) != base  # duplicates count
    # Field boundaries matter: moving text between fields changes the hash.
    moved = [PreferencePair("a", "bc", "d")]
    assert training_data_hash([PreferencePair("ab", "c", "d")]) != training_data_hash(moved)


def test_preference_dataset_is_conversational():
    dataset = build_preference_dataset(PAIRS)
    assert len(dataset) == 3
    row = dataset[1]
    assert row["prompt"] == [{"role": "user", "content": "Name a colour."}]
    assert row["chosen"] == [{"role": "assistant", "content": "Blue."}]
    assert row["rejected"] == [{"role": "assistant", "content": "Seven."}]


def test_empty_pairs_are_rejected():
    with pytest.raises(ValueError, match="no preference pairs"):
        build_preference_dataset([])


def test_pair_fields_must_be_strings():
    with pytest.raises(ValueError, match=r"PreferencePair\.chosen"):
        PreferencePair("p", None, "r")  # type: ignore[arg-type]
