"""The optional members of components go through one documented place (``vlpbench/core/capabilities.py``):
a capability protocol asked with ``offers`` (attribute lookup, so forwarding wrappers count) and the
table of optional attributes read with ``declared`` (its default when absent, an error for a name the
table does not document)."""

from __future__ import annotations

from typing import Any

import pytest

from vlpbench.core.capabilities import (OPTIONAL_ATTRIBUTES, HasProvenance, HasStatistics, Preparable, Subsettable,
                                        Verifiable, declared, offers)
from vlpbench.data.real.chexpert import CheXpert
from vlpbench.data.synthcxr_source import SynthCXRSource
from vlpbench.engine.validation import ValidationSource


class _Source:
    provides = ("labels",)
    evaluation = "test"

    def prepare(self) -> None: ...

    def provenance(self) -> dict[str, Any]:
        return {"name": "x"}


def test_offers_looks_the_methods_up_on_instances_classes_and_forwarding_wrappers() -> None:
    source = _Source()
    assert offers(source, Preparable) and offers(_Source, Preparable) and offers(source, HasProvenance)
    assert not offers(source, Verifiable) and not offers(source, HasStatistics) and not offers(source, Subsettable)
    wrapped = ValidationSource(source)  # forwards attributes with __getattr__: offers what the source offers
    assert offers(wrapped, HasProvenance) and not offers(wrapped, Verifiable)


def test_a_method_set_to_none_is_not_offered() -> None:
    class NoPrepare(_Source):
        prepare = None  # type: ignore[assignment]

    assert not offers(NoPrepare(), Preparable)


def test_the_built_in_sources_offer_what_the_commands_rely_on() -> None:
    """``vlpbench data verify`` accepts the datasets read from local files and refuses SynthCXR."""
    assert offers(CheXpert, Verifiable) and offers(CheXpert, Preparable) and offers(CheXpert, HasProvenance)
    assert not offers(SynthCXRSource, Verifiable) and offers(SynthCXRSource, HasStatistics)


def test_declared_reads_the_attribute_or_its_documented_default() -> None:
    source = _Source()
    assert declared(source, "provides") == ("labels",)
    assert declared(source, "requires") == () and declared(source, "protocol_version") == "unversioned"
    assert declared(source, "batch_negatives") is True and declared(source, "label_type") is None
    assert declared(ValidationSource(source), "evaluation") == "validation"  # the wrapper's own declaration
    assert declared(object(), "Params") is None


def test_declared_refuses_an_attribute_the_table_does_not_document() -> None:
    with pytest.raises(KeyError, match="'provide' is not an optional attribute"):
        declared(_Source(), "provide")


def test_every_optional_attribute_says_where_it_lives_and_what_it_means() -> None:
    for name, row in OPTIONAL_ATTRIBUTES.items():
        assert row.on and len(row.meaning) > 20, name
