"""The distribution client: auth challenges, credentials and platform choice on plain data, and the
registry conversation (resolve, verified blob streaming, auth, errors) against a real registry."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from corral.model.errors import Invalid
from corral.runtime.auth import BasicCredentials, Credentials, TokenCache, parse_challenges
from corral.runtime.distribution import (
    MEDIA_OCI_INDEX,
    Descriptor,
    DigestMismatch,
    ImageNotFound,
    Platform,
    RegistryClient,
    RegistryUnauthorized,
    RegistryUnreachable,
    UnsupportedPlatform,
    default_session,
    host_platform,
    select_platform,
)
from corral.runtime.reference import parse_reference
from corral.store.embedded import free_port
from tests.fixtures.registry import Registry

# -- plain data ---------------------------------------------------------------------------------------


def test_a_bearer_challenge_yields_realm_service_and_scope() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:library/busybox:pull", Basic realm="x"'
    )
    bearer, basic = parse_challenges(header)
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:library/busybox:pull",
    }
    assert basic.scheme == "basic" and basic.params == {"realm": "x"}


def test_quoted_challenge_values_keep_escaped_quotes_and_commas() -> None:
    (c,) = parse_challenges(r'Bearer realm="a\"b,c", error="invalid_token"')
    assert c.params == {"realm": 'a"b,c', "error": "invalid_token"}


def test_docker_config_credentials_are_found_by_registry_name() -> None:
    auth = base64.b64encode(b"alice:s3:cret").decode()
    creds = Credentials.from_config(
        {
            "auths": {
                "127.0.0.1:5000": {"auth": auth},
                "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
                "helper.example": {"identitytoken": "ignored"},
            }
        }
    )
    assert creds.lookup("127.0.0.1:5000") == BasicCredentials("alice", "s3:cret")
    assert creds.lookup("docker.io") == BasicCredentials("bob", "pw")
    assert creds.lookup("helper.example") is None
    assert "s3:cret" not in repr(creds) and "s3:cret" not in repr(creds.lookup("127.0.0.1:5000"))


def test_a_malformed_credentials_entry_is_invalid_naming_the_entry() -> None:
    with pytest.raises(Invalid) as err:
        Credentials.from_config({"auths": {"r.example": {"auth": "not base64!"}}})
    assert err.value.details[0].field == "auths.r.example.auth"


def test_a_missing_credentials_file_means_no_credentials(tmp_path: Path) -> None:
    assert Credentials.load(tmp_path / "absent.json").lookup("docker.io") is None


def test_a_cached_token_is_dropped_when_it_is_about_to_expire() -> None:
    cache = TokenCache()
    cache.put("r", "repository:a:pull", "", token="long", expires_in=300)
    cache.put("r", "repository:b:pull", "", token="short", expires_in=5)
    assert cache.get("r", "repository:a:pull", "") == "long"
    assert cache.get("r", "repository:b:pull", "") is None


def _index(*platforms: tuple[str, str, str | None]) -> dict[str, object]:
    return {
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{i:064x}",
                "size": 100 + i,
                "platform": {"os": o, "architecture": a, **({"variant": v} if v else {})},
            }
            for i, (o, a, v) in enumerate(platforms)
        ],
    }


def test_the_host_architecture_maps_to_oci_names() -> None:
    assert host_platform("x86_64") == Platform("linux", "amd64")
    assert host_platform("aarch64") == Platform("linux", "arm64")
    assert host_platform("armv7l") == Platform("linux", "arm", "v7")


def test_an_index_is_narrowed_to_the_wanted_platform() -> None:
    index = _index(("linux", "arm", "v7"), ("linux", "amd64", None), ("linux", "arm64", "v8"))
    assert select_platform(index, Platform("linux", "amd64")).digest == f"sha256:{1:064x}"
    assert select_platform(index, Platform("linux", "arm64")).digest == f"sha256:{2:064x}"
    assert select_platform(index, Platform("linux", "arm", "v7")).digest == f"sha256:{0:064x}"


def test_an_index_without_the_platform_lists_what_it_has() -> None:
    index = _index(("linux", "arm64", "v8"), ("windows", "amd64", None), ("unknown", "unknown", None))
    with pytest.raises(UnsupportedPlatform) as err:
        select_platform(index, Platform("linux", "amd64"))
    assert "linux/amd64" in err.value.message
    assert "linux/arm64/v8, windows/amd64" in err.value.message


# -- against a real registry -------------------------------------------------------------------------


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with default_session(connect_timeout_s=2) as s:
        yield s


async def test_a_tag_resolves_to_a_verified_manifest_with_config_and_layers(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    client = RegistryClient(session)
    image = await client.resolve(parse_reference(registry.ref))
    assert image.target.descriptor.digest == "sha256:" + hashlib.sha256(image.target.data).hexdigest()
    assert image.config.size > 0 and len(image.layers) >= 1
    pinned = await client.resolve(parse_reference(registry.ref).with_digest(image.target.descriptor.digest))
    assert pinned.manifest.data == image.manifest.data


async def test_a_blob_streams_in_chunks_and_hashes_to_its_digest(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    client = RegistryClient(session)
    ref = parse_reference(registry.ref)
    image = await client.resolve(ref)
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    await client.fetch_blob(ref, image.config, sink)
    assert json.loads(b"".join(chunks))["os"] == "linux"


async def test_a_blob_that_is_not_the_described_size_is_a_digest_mismatch(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    client = RegistryClient(session)
    ref = parse_reference(registry.ref)
    config = (await client.resolve(ref)).config
    wrong = Descriptor(config.media_type, config.digest, config.size + 1)

    async def sink(chunk: bytes) -> None:
        pass

    with pytest.raises(DigestMismatch, match="ended after"):
        await client.fetch_blob(ref, wrong, sink)


async def test_an_unknown_tag_is_image_not_found_in_the_registrys_words(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    client = RegistryClient(session)
    with pytest.raises(ImageNotFound, match="MANIFEST_UNKNOWN: manifest unknown"):
        await client.resolve(parse_reference(f"{registry.host}/busybox:no-such-tag"))


async def test_basic_auth_registry_accepts_right_and_refuses_wrong_or_missing_credentials(
    auth_registry: Registry, session: aiohttp.ClientSession
) -> None:
    ref = parse_reference(auth_registry.ref)
    assert auth_registry.username and auth_registry.password
    right = Credentials({auth_registry.host: BasicCredentials(auth_registry.username, auth_registry.password)})
    wrong = Credentials({auth_registry.host: BasicCredentials(auth_registry.username, "wrong")})
    assert (await RegistryClient(session, credentials=right).resolve(ref)).layers
    with pytest.raises(RegistryUnauthorized, match="corral"):
        await RegistryClient(session, credentials=wrong).resolve(ref)
    with pytest.raises(RegistryUnauthorized, match="requires credentials"):
        await RegistryClient(session).resolve(ref)


async def test_a_port_with_nothing_listening_is_registry_unreachable(session: aiohttp.ClientSession) -> None:
    client = RegistryClient(session)
    with pytest.raises(RegistryUnreachable, match="cannot reach registry"):
        await client.resolve(parse_reference(f"127.0.0.1:{free_port()}/busybox:1"))


async def test_only_loopback_and_insecure_registries_are_spoken_to_over_plain_http(
    session: aiohttp.ClientSession,
) -> None:
    client = RegistryClient(session, insecure_registries=["reg.lan:5000"])
    assert client.base_url(parse_reference("127.0.0.1:5000/a")) == "http://127.0.0.1:5000/v2/a"
    assert client.base_url(parse_reference("localhost/a")).startswith("http://")
    assert client.base_url(parse_reference("reg.lan:5000/a")).startswith("http://")
    assert client.base_url(parse_reference("reg.lan:6000/a")).startswith("https://")
    assert client.base_url(parse_reference("busybox")) == "https://registry-1.docker.io/v2/library/busybox"


async def test_bearer_token_auth_fetches_one_token_and_reuses_it(
    token_registry: Registry, session: aiohttp.ClientSession
) -> None:
    assert token_registry.token_server and token_registry.username and token_registry.password
    ref = parse_reference(token_registry.ref)
    creds = Credentials({token_registry.host: BasicCredentials(token_registry.username, token_registry.password)})
    client = RegistryClient(session, credentials=creds, tokens=TokenCache())
    before = token_registry.token_server.requests
    image = await client.resolve(ref)

    async def sink(chunk: bytes) -> None:
        pass

    await client.fetch_blob(ref, image.config, sink)
    await client.resolve(ref)
    assert token_registry.token_server.requests == before + 1


async def test_bearer_token_auth_refuses_wrong_or_missing_credentials(
    token_registry: Registry, session: aiohttp.ClientSession
) -> None:
    assert token_registry.username
    ref = parse_reference(token_registry.ref)
    wrong = Credentials({token_registry.host: BasicCredentials(token_registry.username, "wrong")})
    with pytest.raises(RegistryUnauthorized, match="UNAUTHORIZED: bad credentials"):
        await RegistryClient(session, credentials=wrong).resolve(ref)
    with pytest.raises(RegistryUnauthorized, match="no credentials"):
        await RegistryClient(session).resolve(ref)


async def test_an_index_resolves_to_this_platforms_manifest(registry: Registry, session: aiohttp.ClientSession) -> None:
    client = RegistryClient(session)
    image = await client.resolve(parse_reference(registry.index_ref), platform=Platform("linux", "arm64"))
    assert image.target.descriptor.media_type == MEDIA_OCI_INDEX
    assert image.manifest is not image.target and len(image.children) == 2
    assert (
        image.manifest.descriptor.digest
        == (await client.resolve(parse_reference(registry.ref))).target.descriptor.digest
    )


async def test_an_index_without_this_platform_is_unsupported_platform_naming_what_exists(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(UnsupportedPlatform, match=r"linux/s390x.*linux/amd64, linux/arm64"):
        await RegistryClient(session).resolve(parse_reference(registry.index_ref), platform=Platform("linux", "s390x"))
