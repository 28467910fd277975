"""The agent's nftables table is rendered from its parts into one replace-everything transaction."""

import asyncio

from corral.network.nftables import NftPart, NftTable, render_table


def test_the_script_creates_deletes_and_declares_the_table_again_so_it_loads_atomically() -> None:
    script = render_table("inet", "corral", [NftPart("b", "chain b_x {\n}"), NftPart("a", "set a_s {\n}")])
    lines = script.splitlines()
    assert lines[:3] == ["table inet corral {}", "delete table inet corral", "table inet corral {"]
    assert script.index("a_s") < script.index("b_x"), "parts are rendered in name order, so the text is stable"
    assert lines[-1] == "}"


def test_setting_the_same_part_twice_changes_nothing_and_a_bad_name_is_refused() -> None:
    table = NftTable("corral-test")
    assert table.set_part(NftPart("policy", "chain policy_f {\n}"))
    assert not table.set_part(NftPart("policy", "chain policy_f {\n}"))
    assert table.drop_part("policy") and not table.drop_part("policy")
    try:
        NftTable("Bad Name")
    except ValueError as e:
        assert "table name" in str(e)
    else:
        raise AssertionError("a table name with spaces was accepted")


def test_an_announced_part_holds_every_load_until_it_is_set() -> None:
    table = NftTable("corral-test")
    table.await_part("policy")
    table.set_part(NftPart("svc", "chain svc_x {\n}"))
    assert asyncio.run(table.apply()) is False, "loaded without the announced part"
    assert table.applies == 0
    table.set_part(NftPart("policy", "chain policy_x {\n}"))
    assert "svc_x" in table.render() and "policy_x" in table.render()
