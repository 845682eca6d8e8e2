"""Every user-facing text exists in Russian and English with the same placeholders, counts read right in both, and
the code asks only for texts that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fluent.syntax import ast, visitor

from bot.formatting import Markup
from bot.texts import LOCALES_DIR, Texts, all_keys, json_text_to_ftl, messages, pick_language

BOT = Path(__file__).resolve().parents[2] / "bot"


class _Variables(visitor.Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def visit_VariableReference(self, node: ast.VariableReference) -> None:  # noqa: N802 (the visitor's naming)
        self.names.add(node.id.name)


def _variables(message: ast.Message) -> set[str]:
    found = _Variables()
    found.visit(message)
    return found.names


def test_both_languages_have_the_same_texts_and_placeholders() -> None:
    assert all_keys("en") == all_keys("ru")
    en, ru = messages("en"), messages("ru")
    for key in en:
        assert _variables(en[key]) == _variables(ru[key]), key


def test_every_text_the_code_asks_for_exists() -> None:
    used = set()
    for path in BOT.rglob("*.py"):
        used |= set(re.findall(r"\bt(?:\.plain)?\(\s*\"([a-z_]+)\"", path.read_text()))
        used |= set(re.findall(r"(?:DrawInputError|TrainRefused|ImageRefused|IntakeResult|Refusal\.__init__|super\(\)\.__init__)\([^\"\n)]*\"([a-z_]+)\"",
                               path.read_text()))
    assert used and used <= all_keys("en"), used - all_keys("en")


def test_no_text_dodges_a_count_with_brackets_or_abbreviations() -> None:
    """"photo(s)", "поделился(-лась)", "чел." read like a form, not like a person."""
    for language in ("en", "ru"):
        source = (LOCALES_DIR / f"{language}.ftl").read_text(encoding="utf-8")
        for dodge in ("(s)", "(а)", "(-лась)", "чел.", "сиды", "{ $name }s"):
            assert dodge not in source, (language, dodge)


COUNTS = {
    "en": {1: "1 photo", 2: "2 photos", 5: "5 photos", 21: "21 photos"},
    "ru": {1: "1 фотография", 2: "2 фотографии", 5: "5 фотографий", 21: "21 фотография"},
}


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("n", [1, 2, 5, 21])
def test_counts_read_right_in_both_languages(language: str, n: int) -> None:
    t = Texts(language)
    assert COUNTS[language][n] in t("photos_sheet", count=n, min=3, max=20)
    people = {"en": {1: "1 person", 2: "2 people", 5: "5 people", 21: "21 people"},
              "ru": {1: "рисует 1 человек", 2: "рисуют 2 человека", 5: "рисуют 5 человек", 21: "рисует 21 человек"}}
    assert people[language][n] in t("model_links_open", links=n, people=n)
    models = {"en": {1: "1 model", 2: "2 models", 5: "5 models", 21: "21 models"},
              "ru": {1: "1 модель", 2: "2 модели", 5: "5 моделей", 21: "21 модель"}}
    assert models[language][n] in t("forget_ask", models=n, photos=n)


def test_values_are_escaped_and_numbers_keep_their_digits() -> None:
    t = Texts("ru")
    text = t("draw_png_caption", seed=4294967295)
    assert "4294967295" in text and isinstance(text, Markup)
    assert "&lt;b&gt;" in t("model_deleted", name="<b>")
    assert t.plain("model_deleted", name="<b>").count("<b>") == 1


def test_a_text_added_the_json_way_converts_to_the_same_fluent_text() -> None:
    source = ["\n✂️ {n} left, {{not a placeholder}}", "  [indented] * line"]
    ftl = json_text_to_ftl("k", source)
    from fluent.runtime import FluentBundle, FluentResource

    bundle = FluentBundle(["en"], use_isolating=False)
    bundle.add_resource(FluentResource(ftl))
    text, errors = bundle.format_pattern(bundle.get_message("k").value, {"n": 3})
    assert not errors and text == "\n".join(source).replace("{n}", "3").replace("{{", "{").replace("}}", "}")


def test_json_inboxes_are_empty_or_hold_only_strings() -> None:
    for language in ("en", "ru"):
        path = LOCALES_DIR / f"{language}.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            assert all(isinstance(v, str | list) for v in data.values())


def test_language_follows_the_telegram_client_unless_the_user_chose() -> None:
    assert pick_language("ru") == "ru" and pick_language("ru-RU") == "ru"
    assert pick_language("de") == "en" and pick_language(None) == "en"
    assert pick_language("ru", chosen="en") == "en" and pick_language("de", chosen="ru") == "ru"


def test_the_locales_command_moves_waiting_json_texts_into_fluent(tmp_path: Path, monkeypatch) -> None:
    import shutil

    import tools.locales as command

    for language in ("en", "ru"):
        shutil.copy(LOCALES_DIR / f"{language}.ftl", tmp_path / f"{language}.ftl")
        (tmp_path / f"{language}.json").write_text(json.dumps({"brand_new": f"{language}: {{n}} new"}))
    monkeypatch.setattr(command, "LOCALES_DIR", tmp_path)
    assert command.main(["--check"]) == 1
    assert command.main([]) == 0
    assert command.main(["--check"]) == 0
    assert "brand_new = ru: { $n } new" in (tmp_path / "ru.ftl").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "en.json").read_text()) == {}
    # the rest of the file survives the move unchanged in meaning
    assert "photos_saved" in (tmp_path / "en.ftl").read_text(encoding="utf-8")


def test_a_long_value_such_as_a_list_of_many_models_fits_in_a_text() -> None:
    choices = Markup("\n".join(f"• <code>sks_{i} dog</code>" for i in range(200)))
    text = Texts("ru")("draw_no_identifier", choices=choices)
    assert text.endswith("<code>sks_199 dog</code>") and len(text) > 3000
