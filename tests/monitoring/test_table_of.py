"""monitoring.db.table_of: the typed way to reach a table model's Core Table (issue 13, mypy)."""

import pytest
from sqlmodel import SQLModel

from monitoring.db import table_of
from monitoring.models import LabResult, Patient


def test_table_of_is_the_models_own_table() -> None:
    assert table_of(Patient) is Patient.__table__
    assert table_of(LabResult) is LabResult.__table__


class _NotATable(SQLModel):
    x: int = 0


def test_table_of_refuses_a_model_without_a_table() -> None:
    with pytest.raises(TypeError, match="_NotATable is not a table model"):
        table_of(_NotATable)
