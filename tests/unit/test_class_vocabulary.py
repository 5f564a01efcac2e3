"""Adding a class (exporter/model.py OutcomeClass) touches more than the model: every class needs its
words on the pages (views.CLASS_WORDS), its colour (templates/status.css), its row in docs/metrics.md
(with whether it counts as up and whether it backs off) and its colour on the dashboards (the mixin).
Each place missed fails here, in the unit tier, naming the class and the place
(docs/development.md, "Adding a class")."""

from __future__ import annotations

import re

import pytest

from exporter.model import BACKOFF, CLASSES, UP, OutcomeClass
from exporter.views import CLASS_WORDS

from ..conftest import ROOT

CSS = (ROOT / "exporter" / "templates" / "status.css").read_text(encoding="utf-8")
METRICS_DOC = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
MIXIN_DASHBOARDS = (ROOT / "mixin" / "dashboards" / "dashboards.libsonnet").read_text(encoding="utf-8")
#: a row of the class table in docs/metrics.md: | `class` | up | what happened | what on call does |
DOC_ROW = re.compile(r"^\| `([a-z_]+)` \| (yes|no|no, backs off) \| [^|]+ \| [^|]+ \|$", re.M)
#: the dashboards' class colours: ['class', 'colour']
MIXIN_COLOUR = re.compile(r"\['([a-z_]+)', '[a-z-]+'\]")


def test_the_vocabulary_is_the_enum() -> None:
    assert list(CLASSES) == [c.value for c in OutcomeClass] and len(CLASSES) >= 13
    assert set(CLASSES) >= UP and set(CLASSES) >= BACKOFF and not UP & BACKOFF


@pytest.mark.parametrize("cls", CLASSES)
def test_each_class_has_words_on_the_pages(cls: str) -> None:
    assert CLASS_WORDS.get(cls), f"views.CLASS_WORDS has no words for class {cls}"


def test_the_pages_know_no_class_the_model_does_not() -> None:
    assert set(CLASS_WORDS) == set(CLASSES)


@pytest.mark.parametrize("cls", CLASSES)
def test_each_class_has_its_colour_on_the_pages(cls: str) -> None:
    selectors = {s.strip() for rule in re.findall(r"^([^{}\n]+)\{--c:", CSS, re.M) for s in rule.split(",")}
    assert f".c-{cls}" in selectors, f"exporter/templates/status.css gives class {cls} no colour (.c-{cls})"


def test_docs_list_every_class_once_in_order_with_up_and_backoff() -> None:
    rows = DOC_ROW.findall(METRICS_DOC)
    assert [cls for cls, _ in rows] == list(CLASSES), "docs/metrics.md's class table must list every class, in order"
    for cls, up in rows:
        want = "yes" if cls in UP else "no, backs off" if cls in BACKOFF else "no"
        assert up == want, f"docs/metrics.md says {cls} is '{up}', the model says '{want}'"


def test_the_dashboards_colour_every_class() -> None:
    coloured = MIXIN_COLOUR.findall(MIXIN_DASHBOARDS)
    assert coloured == list(CLASSES), ("mixin/dashboards/dashboards.libsonnet's class colours must list every "
                                       "class, in order (then `make mixin`)")
