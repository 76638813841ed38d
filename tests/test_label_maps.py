"""Label maps, label checks and remapping: every documented rule, at its limits, with the message the user reads."""

from __future__ import annotations

import locale
import sys

import numpy as np
import pytest
from utils.labels.label_stats import label_stats
from utils.labels.label_maps import LabelError, LabelMap, check_labels, install_label_map, remap_labels


def spec(*entries):
    return {"labels": {i: {"name": f"structure {i}", "short": f"S{i}"} for i in entries}}


# --- label maps ----------------------------------------------------------------------------------------------------


def test_label_index_range_is_0_to_255_inclusive():
    assert LabelMap.from_dict(spec(0, 255)).indices == (0, 255)
    for bad in (256, -1):
        with pytest.raises(LabelError, match=rf"lm.yaml: label index {bad} outside \[0, 255\]"):
            LabelMap.from_dict(spec(bad), source="lm.yaml")


def test_a_mapping_without_the_labels_key_is_the_label_table_itself():
    assert LabelMap.from_dict({3: {"name": "liver", "short": "Li"}}).indices == (3,)


@pytest.mark.parametrize("mapping", [None, [], {}, {"labels": {}}, {"labels": [1, 2]}, "labels"])
def test_a_label_map_that_is_not_a_table_is_refused_with_the_expected_form(mapping):
    with pytest.raises(LabelError, match=r"^lm.yaml: expected a mapping 'labels: \{index: \{name: ..., short: ...\}\}'$"):
        LabelMap.from_dict(mapping, source="lm.yaml")


def test_default_source_in_messages_is_label_map():
    with pytest.raises(LabelError, match=r"^label map: label index 300 outside"):
        LabelMap.from_dict(spec(300))


@pytest.mark.parametrize("entry", [{"name": "a"}, {"short": "A"}, "A", None])
def test_every_label_needs_a_name_and_a_short_form(entry):
    with pytest.raises(LabelError, match=r"lm.yaml: label 4 needs 'name' and 'short'"):
        LabelMap.from_dict({"labels": {4: entry}}, source="lm.yaml")


def test_names_and_short_forms_are_text_and_labels_sorted_by_index():
    lm = LabelMap.from_dict({"labels": {7: {"name": "12", "short": "3"}, 2: {"name": "kidney", "short": "Ki"}}})
    assert [(lab.index, lab.name, lab.short, lab.key) for lab in lm] == [(2, "kidney", "Ki", "02_Ki"), (7, "12", "3", "07_3")]
    assert LabelMap.from_dict(lm.to_dict()) == lm
    assert lm.to_dict() == {"labels": {2: {"name": "kidney", "short": "Ki"}, 7: {"name": "12", "short": "3"}}}
    with pytest.raises(LabelError, match=r"^label map: label 7: 'name' and 'short' must be text, found int and int$"):
        LabelMap.from_dict({"labels": {7: {"name": 12, "short": 3}}})


def test_load_names_the_file_in_every_message(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError, match=rf"label map not found: {missing}"):
        LabelMap.load(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("labels:\n  1: {name: a, short: A\n", encoding="utf-8")
    with pytest.raises(LabelError, match=rf"{broken}: label map is not valid YAML \(line \d+, column \d+: "):
        LabelMap.load(broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("labels:\n  1: {name: a}\n", encoding="utf-8")
    with pytest.raises(LabelError, match=rf"^{wrong}: label 1 needs"):
        LabelMap.load(wrong)
    good = tmp_path / "good.yaml"
    good.write_text("labels:\n  0: {name: background, short: Bg}\n  1: {name: Wirbelkörper, short: WK}\n", encoding="utf-8")
    assert [lab.name for lab in LabelMap.load(good)] == ["background", "Wirbelkörper"]


# --- checks and remapping --------------------------------------------------------------------------------------------


def test_check_labels_accepts_a_label_map_a_set_or_precomputed_stats():
    mask = np.zeros((2, 3, 4), np.uint8)
    mask[1, 2, 3] = 2
    lm = LabelMap.from_dict(spec(0, 2))
    assert check_labels(mask, lm, "m") == [0, 2]
    assert check_labels(label_stats(mask), lm, "m") == [0, 2]
    assert check_labels(label_stats(mask), (0, 2), "m") == [0, 2]
    with pytest.raises(LabelError, match=r"m.nii.gz: mask values \[2\] are not in the label map \(allowed: \[0, 1\]\)"):
        check_labels(label_stats(mask), LabelMap.from_dict(spec(0, 1)), "m.nii.gz")


def test_remap_keeps_the_memory_order_of_a_copy():
    mask = np.asfortranarray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    out = remap_labels(mask, {5: 6})
    assert out.flags.f_contiguous and not out.flags.c_contiguous and out is not mask


def test_remap_that_changes_every_value_is_applied_to_every_voxel():
    mask = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    inverse = {v: 255 - v for v in range(256)}
    np.testing.assert_array_equal(remap_labels(mask, inverse), 255 - mask)


@pytest.mark.parametrize("mapping", [{}, {5: 5}])
def test_remap_without_a_change_returns_an_equal_copy(mapping):
    mask = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = remap_labels(mask, mapping)
    np.testing.assert_array_equal(out, mask)
    assert out is not mask
    empty = np.zeros((0, 3, 4), np.uint8)
    assert remap_labels(empty, {0: 1}).shape == (0, 3, 4)


@pytest.mark.parametrize("mapping", [{1: 256}, {1: -1}, {256: 1}, {-1: 0}])
def test_remap_outside_uint8_is_refused_not_wrapped(mapping):
    with pytest.raises(LabelError, match=r"leaves the uint8 range \[0, 255\]"):
        remap_labels(np.ones((2, 2, 2), np.uint8), mapping)


@pytest.fixture
def ascii_locale():
    """The process's character-type locale set to C (ASCII), as on a machine without a UTF-8 locale."""
    if sys.flags.utf8_mode:
        pytest.skip("Python runs in UTF-8 mode here: the locale does not decide how files are read")
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        if "utf" in locale.getpreferredencoding(False).lower().replace("-", ""):
            pytest.skip("this platform's C locale is UTF-8")
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


def test_label_maps_are_read_as_utf8_whatever_the_locale(tmp_path, ascii_locale):
    # A researcher's machine may run an ASCII or GBK locale: label maps (and their copies) are UTF-8 files.
    source = tmp_path / "label_map.yaml"
    source.write_bytes("labels:\n  0: {name: 背景, short: Bg}\n  1: {name: Wirbelkörper, short: WK}\n".encode("utf-8"))
    assert [lab.name for lab in LabelMap.load(source)] == ["背景", "Wirbelkörper"]
    copy = tmp_path / "descriptor" / "label_map.yaml"
    assert [install_label_map(source, copy) for _ in range(2)] == ["written", "identical"]
    assert copy.read_bytes() == source.read_bytes()


def test_label_indices_must_be_plain_integers_and_the_message_says_what_was_found():
    with pytest.raises(LabelError) as info:
        LabelMap.from_dict({"labels": {"7": {"name": "a", "short": "A"}}})
    assert str(info.value) == ("label map: label index '7' is not an integer written plainly (quoted text or a number with a leading "
                               "zero or sign); write label indices as plain integers (1:, not '1': or 01:)")  # fmt: skip
    for index, found in ((7.0, "float"), (True, "bool")):
        with pytest.raises(LabelError, match=rf"label index {index!r} is not an integer written plainly \({found}\)"):
            LabelMap.from_dict({"labels": {index: {"name": "a", "short": "A"}}})


def test_names_and_short_forms_must_each_be_text_and_short_forms_at_most_64_characters():
    with pytest.raises(LabelError, match=r"'name' and 'short' must be text, found int and str"):
        LabelMap.from_dict({"labels": {3: {"name": 3, "short": "A"}}})
    with pytest.raises(LabelError, match=r"'name' and 'short' must be text, found str and int"):
        LabelMap.from_dict({"labels": {3: {"name": "a", "short": 3}}})
    assert LabelMap.from_dict({"labels": {3: {"name": "a", "short": "S" * 64}}}).labels[0].short == "S" * 64
    with pytest.raises(LabelError, match=r"short form 'SSSS.*' of label 3 must be letters, digits or '-'"):
        LabelMap.from_dict({"labels": {3: {"name": "a", "short": "S" * 65}}})
