"""``corral secrets rotate-key``: the cluster's Secret-sealing key is replaced and every Secret re-sealed.

The API does the work (``POST /encryption/rotate``, admin only; see ``store/sealing.py``): a new key
goes first in the key file, every Secret is re-encrypted with it, then the old keys are dropped.
Every control instance must share the key file (``--encryption-key-file``); instances re-read it
when it changes.
"""

from __future__ import annotations

import click
import msgspec

from corral.api.client import ApiClient
from corral.cli.connection import api_command, connection_options


@click.group()
def secrets() -> None:
    """Secrets at rest: the encryption key."""


@secrets.command("rotate-key")
@connection_options
@api_command
async def rotate_key(client: ApiClient) -> int:
    """Make a new encryption key, re-encrypt every Secret with it, then drop the old key."""
    answer = msgspec.json.decode(await client.request("POST", "/encryption/rotate", timeout=600))
    click.echo(f"encryption key is now {answer['keyId']}; {answer['resealed']} secret(s) re-encrypted")
    return 0
