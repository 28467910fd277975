"""The cluster's network settings are checked field by field and recorded once for every node."""

import secrets

import pytest

from corral.model.cluster import CLUSTER_CONFIG_KEY, ClusterConfig, differences, validate_cluster_config
from corral.model.errors import Invalid
from corral.roles.control import ensure_cluster_config
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore


def test_the_defaults_are_valid_and_every_bad_setting_is_named() -> None:
    validate_cluster_config(ClusterConfig())
    with pytest.raises(Invalid) as err:
        validate_cluster_config(ClusterConfig(cluster_cidr="10.42.0.0/33", service_cidr="10.42.0.0/16x",
                                              cluster_domain="bad..domain", vxlan_vni=0))
    fields = {d.field for d in err.value.details}
    assert fields == {"clusterCIDR", "serviceCIDR", "clusterDomain", "vxlanVNI"}


def test_a_service_cidr_inside_the_cluster_cidr_is_refused() -> None:
    with pytest.raises(Invalid) as err:
        validate_cluster_config(ClusterConfig(cluster_cidr="10.0.0.0/8", service_cidr="10.43.0.0/16"))
    assert [d.field for d in err.value.details] == ["serviceCIDR"]


def test_differences_name_each_setting_that_differs() -> None:
    assert differences(ClusterConfig(), ClusterConfig()) == []
    assert differences(ClusterConfig(), ClusterConfig(backend="host-gw")) == ["backend: vxlan (recorded) vs host-gw (asked)"]


@pytest.mark.etcd
async def test_the_first_control_instance_records_the_settings_and_later_ones_keep_them(etcd: EmbeddedEtcd) -> None:
    store = EtcdStore([etcd.endpoint])
    try:
        if await store.get(CLUSTER_CONFIG_KEY) is not None:
            await store.delete(CLUSTER_CONFIG_KEY)
        first = await ensure_cluster_config(store, ClusterConfig(cluster_domain=f"c{secrets.token_hex(3)}.local"))
        second = await ensure_cluster_config(store, ClusterConfig(backend="host-gw"))
        assert second == first, "a later instance uses the recorded settings, not its own flags"
    finally:
        await store.close()
