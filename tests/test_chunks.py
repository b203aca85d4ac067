import pytest

from nurture.chunks import chunked


def test_chunked_covers_every_value_once() -> None:
    assert list(chunked([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(chunked([], 3)) == []
    with pytest.raises(ValueError, match="chunk size"):
        list(chunked([1], 0))
