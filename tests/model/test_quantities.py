import pytest

from corral.model.quantities import QuantityError, format_cpu, format_memory, parse_cpu, parse_memory


@pytest.mark.parametrize(("text", "millis"), [("250m", 250), ("0.5", 500), ("2", 2000), ("1.5", 1500), (".1", 100)])
def test_cpu_quantities_parse_to_exact_millicores(text: str, millis: int) -> None:
    assert parse_cpu(text) == millis


@pytest.mark.parametrize(
    ("text", "size"),
    [("64Mi", 64 * 2**20), ("1G", 10**9), ("512", 512), ("1.5Gi", 3 * 2**29), ("2k", 2000), ("1Ki", 1024)],
)
def test_memory_quantities_parse_to_exact_bytes(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["-1", "abc", "", "1.0001", "5x", " 1", "1e3", "1Mi"])
def test_bad_cpu_quantities_are_rejected_with_a_hint(text: str) -> None:
    with pytest.raises(QuantityError, match=r"CPU quantity|negative|millicore|must be"):
        parse_cpu(text)


@pytest.mark.parametrize("text", ["-64Mi", "64MB", "0.5", "lots", "1e999"])
def test_bad_memory_quantities_are_rejected_with_a_hint(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_memory(text)


def test_quantities_format_back_to_their_shortest_form() -> None:
    assert format_cpu(2000) == "2"
    assert format_cpu(250) == "250m"
    assert format_memory(64 * 2**20) == "64Mi"
    assert format_memory(1000) == "1000"
