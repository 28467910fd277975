"""schemathesis hooks for the API fuzz (tests/api/test_fuzz.py), loaded through ``SCHEMATHESIS_HOOKS``."""

from typing import Any

import schemathesis


@schemathesis.hook
def map_query(ctx: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """No ``watch``: a watch is a stream that ends only when the client goes (tested elsewhere), and
    the fuzzer would wait on each until its request timeout."""
    if query and "watch" in query:
        return {k: v for k, v in query.items() if k != "watch"}
    return query
