"""The container image, built for real with scripts/build-image and run with podman.

The image is built once per run under a tag of its own and removed at the end, with the build-stage images that
build left behind. The Debian base and Redis images that scripts/build-image makes where no registry is
reachable are kept, like a pulled base: CI builds them once per run (.ci/run), later builds reuse them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.container._podman import BUILD_IMAGE, PODMAN_LIMITS, BuiltImage, Cleanup, Podman

BUILD_TIMEOUT = 1500  # s: the first build on a clean machine also debootstraps the base


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (scripts/install-deps installs podman, runc and debootstrap)")
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and subprocess.run([PODMAN_LIMITS, "--check"], check=False).returncode != 0:
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        subprocess.run([PODMAN_LIMITS, "--write", str(conf)], check=True, timeout=30)
        env["CONTAINERS_CONF"] = str(conf)
    return Podman(env)


@pytest.fixture(scope="session")
def built(podman: Podman) -> Iterator[BuiltImage]:
    """The project image, built from this checkout (and the local Redis image beside it).

    pip is given one harmless setting of this run's own (a trusted host that nothing resolves), so the tests can
    look for it in the image: it reaches the build only as a build secret.
    """
    tag = f"localhost/aaa-fmip-test:{secrets.token_hex(4)}"
    canary = f"pip-canary-{secrets.token_hex(6)}.invalid"
    configured = podman.env.get("PIP_TRUSTED_HOST")
    podman.env["PIP_TRUSTED_HOST"] = f"{configured} {canary}" if configured else canary
    before = podman.image_ids()
    try:
        proc = podman.exec([str(BUILD_IMAGE), "--tag", tag, "--redis", "--no-cache"], timeout=BUILD_TIMEOUT, check=True)
        stages = podman.untagged(podman.image_ids() - before)
        yield BuiltImage(tag, canary, stages, proc.stdout)
    finally:
        if configured is None:
            del podman.env["PIP_TRUSTED_HOST"]
        else:
            podman.env["PIP_TRUSTED_HOST"] = configured
        podman.run("rmi", "--force", tag, check=False)
        # The build stage of the multi-stage build stays behind as an untagged image: remove ours only.
        for image_id in podman.untagged(podman.image_ids() - before):
            podman.run("rmi", "--force", image_id, check=False)


@pytest.fixture(scope="session")
def image(built: BuiltImage) -> str:
    return built.tag


@pytest.fixture
def cleanup(podman: Podman) -> Iterator[Cleanup]:
    made = Cleanup()
    yield made
    for name in made.containers:
        proc = podman.run("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", name, check=False)
        made.volumes.extend(proc.stdout.split() if proc.returncode == 0 else [])
        podman.run("rm", "--force", "--volumes", "--time", "0", name, check=False)
    for volume in made.volumes:
        podman.run("volume", "rm", "--force", volume, check=False)
