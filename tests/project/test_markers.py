"""The test markers hold together: a test marked long (left out of CI) is slow as well (left out of the fast set)."""

import pytest

from tests.conftest import check_long_is_slow


def test_a_test_marked_long_must_be_slow_too() -> None:
    class Item:
        def __init__(self, nodeid: str, *marks: str) -> None:
            self.nodeid, self.marks = nodeid, marks

        def get_closest_marker(self, name: str):
            return name if name in self.marks else None

    check_long_is_slow([Item("a", "slow", "long"), Item("b", "slow"), Item("c")])
    with pytest.raises(pytest.UsageError, match="long but not slow.*d_only_long"):
        check_long_is_slow([Item("a", "slow", "long"), Item("d_only_long", "long")])
