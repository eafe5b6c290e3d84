"""Tests of the ShapesWorld prompt grammar: round trips, skill tags, parse errors and sampling."""

from __future__ import annotations

import pytest

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.world import (
    HARD_NEGATIVE_EDITS,
    TEMPLATES,
    Absence,
    ObjectSpec,
    SceneSpec,
    TemplateMix,
    describe,
    enumerate_prompts,
    hard_negative,
    parse_prompt,
    sample_prompts,
    sample_spec,
)


@pytest.mark.parametrize("template", TEMPLATES)
def test_sampled_prompts_round_trip(template: str) -> None:
    for seed in range(150):
        spec = sample_spec(template, seed)
        text = describe(spec)
        assert parse_prompt(text) == spec, text
        assert describe(parse_prompt(text)) == text
        assert spec.template == template


@pytest.mark.parametrize("template", TEMPLATES)
def test_enumerated_prompts_round_trip_and_are_distinct(template: str) -> None:
    prompts = list(enumerate_prompts(template))
    assert len({p.text for p in prompts}) == len(prompts)
    stride = max(1, len(prompts) // 600)
    for p in prompts[::stride]:
        assert parse_prompt(p.text) == p.spec, p.text


def test_enumeration_covers_sampling() -> None:
    support = {t: {p.text for p in enumerate_prompts(t)} for t in ("single", "counting", "comparison", "universal")}
    for p in sample_prompts(400, seed=3):
        if p.template in support:
            assert p.text in support[p.template]


@pytest.mark.parametrize(
    ("text", "template", "skills"),
    [
        ("a red circle", "single", ("object", "attribute")),
        ("a big blue square", "single", ("object", "attribute")),
        ("a red circle and a blue square", "conjunction", ("object", "attribute")),
        ("a red circle and two blue squares", "conjunction", ("object", "attribute", "counting")),
        ("two green triangles", "counting", ("object", "attribute", "counting")),
        ("one red circle", "counting", ("object", "attribute", "counting")),
        ("four white squares", "counting", ("object", "attribute", "counting")),
        ("a red circle to the left of a blue square", "relation", ("object", "attribute", "spatial relation")),
        ("two red circles above a blue square", "relation", ("object", "attribute", "spatial relation", "counting")),
        ("a red circle bigger than a blue square", "comparison", ("object", "attribute", "comparison")),
        ("a blue square and no circles", "negation", ("object", "attribute", "negation")),
        ("two red triangles and no blue shapes", "negation", ("object", "attribute", "counting", "negation")),
        ("a circle and two squares, all of them blue", "universal", ("object", "attribute", "counting", "universal")),
    ],
)
def test_templates_and_skill_tags(text: str, template: str, skills: tuple[str, ...]) -> None:
    spec = parse_prompt(text)
    assert spec.template == template
    assert spec.skills == skills
    assert describe(spec) == text


def test_parsed_meaning() -> None:
    spec = parse_prompt("two red triangles and no blue shapes")
    assert spec.objects == (ObjectSpec("triangle", "red", 2),)
    assert spec.absent == Absence(colour="blue")
    spec = parse_prompt("a circle, a square and two triangles, all of them white")
    assert [(o.shape, o.colour, o.count) for o in spec.objects] == [
        ("circle", "white", 1),
        ("square", "white", 1),
        ("triangle", "white", 2),
    ]
    spec = parse_prompt("a small green triangle below a big yellow circle")
    assert spec.relation == "below" and spec.objects[0].size == "small" and spec.objects[1].size == "big"


def test_parse_is_lenient_about_case_spaces_and_full_stop() -> None:
    assert parse_prompt("  A Red   CIRCLE to the left of a blue square. ") == parse_prompt(
        "a red circle to the left of a blue square"
    )
    assert parse_prompt("one red circle and a blue square") == parse_prompt("a red circle and a blue square")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("a purple circle", "'purple'"),
        ("a red hexagon and a blue star", "'hexagon', 'blue'"),
        ("a red circle on a table", "'on', 'table'"),
        ("five red circles", "'five'"),
        ("a red circle blue square", "'blue square'"),
        ("two red circle", "'circle'"),
        ("a red circles", "'circles'"),
        ("a red circle bigger a blue square", "'a blue square'"),
        ("a red circle and no", "ended early"),
        ("a circle", "'circle'"),
        ("red circle", "'red circle'"),
    ],
)
def test_out_of_grammar_text_names_the_words(text: str, named: str) -> None:
    with pytest.raises(InputError) as err:
        parse_prompt(text)
    message = str(err.value)
    assert message.startswith(f"prompt {text!r}") or message.startswith("prompt")
    for word in named.split(", "):
        assert word.strip("'") in message, message


def test_unknown_word_did_you_mean() -> None:
    with pytest.raises(InputError, match="did you mean 'circle'"):
        parse_prompt("a red circel")


@pytest.mark.parametrize("text", ["", "   ", "."])
def test_empty_prompt(text: str) -> None:
    with pytest.raises(InputError, match="non-empty"):
        parse_prompt(text)


@pytest.mark.parametrize(
    "text",
    [
        "a blue square and no squares",
        "a blue square and no blue shapes",
        "a red circle and a red circle",
        "four red circles and a blue square",
        "two big red circles",
        "a big red circle and a big blue square",
        "a small red circle bigger than a blue square",
    ],
)
def test_impossible_scenes_are_rejected(text: str) -> None:
    with pytest.raises(InputError):
        parse_prompt(text)


def test_input_error_is_value_error_and_non_strings_rejected() -> None:
    with pytest.raises(ValueError):
        parse_prompt("a purple circle")
    with pytest.raises(InputError, match="expected a str"):
        parse_prompt(3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="expected a SceneSpec"):
        describe("a red circle")  # type: ignore[arg-type]


def test_spec_validation() -> None:
    with pytest.raises(InputError, match="colour"):
        ObjectSpec("circle", "purple")
    with pytest.raises(InputError, match="count"):
        ObjectSpec("circle", "red", count=5)
    with pytest.raises(InputError, match="relation"):
        SceneSpec("relation", (ObjectSpec("circle", "red"), ObjectSpec("square", "blue")))
    with pytest.raises(InputError, match="template"):
        SceneSpec("story", (ObjectSpec("circle", "red"),))
    with pytest.raises(InputError, match="neither"):
        Absence()


def test_sampling_is_deterministic_and_follows_the_mix() -> None:
    a = [p.text for p in sample_prompts(200, seed=7)]
    assert a == [p.text for p in sample_prompts(200, seed=7)]
    assert a != [p.text for p in sample_prompts(200, seed=8)]
    assert {p.template for p in sample_prompts(700, seed=0)} == set(TEMPLATES)
    only = sample_prompts(50, seed=0, mix=TemplateMix(0, 0, 0, 1, 0, 0, 0))
    assert {p.template for p in only} == {"relation"}
    with pytest.raises(InputError, match="mix"):
        sample_prompts(5, mix={"stories": 1.0})
    with pytest.raises(InputError, match="n"):
        sample_prompts(-1)
    with pytest.raises(InputError, match="weight"):
        TemplateMix(single=-1.0)
    with pytest.raises(InputError, match="template"):
        sample_spec("story")


def test_hard_negatives_differ_and_apply() -> None:
    seen = set()
    for p in sample_prompts(200, seed=11):
        for edit in HARD_NEGATIVE_EDITS:
            try:
                kind, neg = hard_negative(p.spec, 0, edit)
            except InputError:
                continue
            seen.add(kind)
            assert kind == edit and neg != p.spec
            assert parse_prompt(describe(neg)) == neg
    assert seen == set(HARD_NEGATIVE_EDITS)
    with pytest.raises(InputError, match="does not apply"):
        hard_negative(parse_prompt("a red circle"), 0, "relation")
