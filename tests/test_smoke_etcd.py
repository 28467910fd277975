import aiohttp

from corral.store.embedded import EmbeddedEtcd


async def test_the_session_etcd_answers_health(etcd: EmbeddedEtcd) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{etcd.endpoint}/health") as r:
        assert r.status == 200
