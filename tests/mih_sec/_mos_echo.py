"""A MoS for the namespace tests: TLS-PSK and DTLS-PSK on port 4551 at each address of ``argv[2:]``, echoing
what a node sends, keyed with the MIH PSK of a fixed test HMK for the MIHF-ID ``argv[1]``. Prints "ready"."""

from __future__ import annotations

import asyncio
import logging
import sys

from aaa_fmip import keys
from aaa_fmip.mih import psk as mihpsk

TEST_HMK = bytes(range(64))
TEST_HMK_NAME = bytes(range(8))


async def main(mihf_id: str, addresses: list[str]) -> None:
    expected = keys.derive_mih_psk(TEST_HMK, TEST_HMK_NAME, mihf_id)

    async def key_for(identity: str) -> bytes | None:
        return expected.psk.reveal() if identity == expected.identity else None

    async def echo(channel: mihpsk.Channel) -> None:
        while data := await channel.recv():
            await channel.send(b"echo:" + data)

    server = mihpsk.PskServer(key_for, echo)
    for address in addresses:  # the published addresses, one listener each (see PskServer.start_dtls)
        await server.start_tls(address, mihpsk.MIH_PORT)
        await server.start_dtls(address, mihpsk.MIH_PORT)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
