"""
Tests for C{gramine/attestd.manifest.template}: it is rendered the way
C{gramine-manifest} renders it (Jinja2 with strict undefined variables and
the same helper names, faked to this machine's paths), parsed as TOML, and
each security-relevant setting is checked, so that a change weakening one
fails here.
"""

from __future__ import annotations

import _ssl
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest

import twisted

tomllib = pytest.importorskip("tomllib")

TEMPLATE = (
    Path(__file__).parent.parent / "gramine" / "attestd.manifest.template"
)
ARCH_LIBDIR = "/lib/" + (
    sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
)
#: The reactor's thread pool grows to this many threads
#: (C{twisted.internet.base.ReactorBase._initThreadPool}).
TWISTED_THREAD_POOL = 10
#: Gramine's own helper threads (IPC, async, TLS handshake) and main.
GRAMINE_EXTRA_THREADS = 4
#: The environment attestd needs inside the enclave, and nothing more.
ENCLAVE_ENV = {
    "LD_LIBRARY_PATH",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "TZ",
}


class FakeGramine:
    """
    The C{gramine} namespace of C{gramine-manifest}'s Jinja environment.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self.libos = str(root / "libsysdb.so")
        self.pkglibdir = str(root)

    def runtimedir(self, libc: str = "glibc") -> str:
        return str(self._root / f"runtime/{libc}")


class FakePython:
    """
    The C{python} namespace of C{gramine-manifest}'s Jinja environment,
    answering for the interpreter running the tests.
    """

    stdlib = sysconfig.get_path("stdlib")
    platstdlib = sysconfig.get_path("platstdlib")
    purelib = sysconfig.get_path("purelib")

    def get_sys_path(self, interpreter: str) -> Iterator[Path]:
        """
        The existing entries of C{interpreter}'s C{sys.path}, as
        C{gramine-manifest} yields them.
        """
        output = subprocess.run(
            [
                interpreter,
                "-c",
                "import json, sys; print(json.dumps(sys.path))",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
        ).stdout
        for entry in json.loads(output):
            if entry and Path(entry).exists():
                yield Path(entry)


def render(tmp_path: Path, **variables: Any) -> str:
    """
    Render the template as C{gramine-manifest -D...} does.
    """
    runtime = FakeGramine(tmp_path)
    entrypoint = tmp_path / "gramine-ratls"
    entrypoint.touch()
    interpreter = sys.executable
    twistd = str(Path(sys.executable).parent / "twistd")
    defines = {
        "arch_libdir": ARCH_LIBDIR,
        "entrypoint": str(entrypoint),
        "interpreter": interpreter,
        "twistd": twistd,
        "isvprodid": "5",
        "isvsvn": "9",
        **variables,
    }
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    environment.globals.update(
        gramine=runtime, python=FakePython(), env={}, ldd=lambda *a: []
    )
    template = environment.from_string(TEMPLATE.read_text())
    return template.render(
        **{k: v for k, v in defines.items() if v is not None}
    )


@pytest.fixture
def manifest(tmp_path: Path) -> dict[str, Any]:
    """
    The rendered manifest, parsed.
    """
    return tomllib.loads(render(tmp_path))


def walk_keys(table: Any, prefix: str = "") -> Iterator[str]:
    """
    Every dotted key of a parsed TOML document, tables in arrays included.
    """
    if isinstance(table, dict):
        for key, value in table.items():
            yield prefix + key
            yield from walk_keys(value, prefix + key + ".")
    elif isinstance(table, list):
        for item in table:
            yield from walk_keys(item, prefix)


def trusted(manifest: dict[str, Any]) -> list[str]:
    """
    The host paths of C{sgx.trusted_files}, with their trailing slashes.
    """
    out = []
    for entry in manifest["sgx"]["trusted_files"]:
        uri = entry["uri"] if isinstance(entry, dict) else entry
        assert uri.startswith("file:")
        out.append(uri[len("file:") :])
    return out


def covered(path: str, trusted_paths: list[str]) -> bool:
    """
    Whether a host path is measured: it is a trusted file, or inside a
    trusted directory.
    """
    path = path.rstrip("/")
    for t in trusted_paths:
        if t.endswith("/") and (path + "/").startswith(t):
            return True
        if t == path:
            return True
    return False


class TestEntrypoint:
    """
    gramine-ratls, then the interpreter running twistd in the foreground.
    """

    def test_gramine_ratls_first(
        self, tmp_path: Path, manifest: dict[str, Any]
    ) -> None:
        """
        The enclave starts C{gramine-ratls}, mounted from the host's binary.
        """
        assert manifest["libos"]["entrypoint"] == "/gramine-ratls"
        mounts = {m["path"]: m for m in manifest["fs"]["mounts"]}
        assert (
            mounts["/gramine-ratls"]["uri"]
            == f"file:{tmp_path / 'gramine-ratls'}"
        )

    def test_certificate_on_tmpfs(self, manifest: dict[str, Any]) -> None:
        """
        The certificate and key are written to C{/tmp}, a tmpfs (enclave
        memory), and the daemon reads them from there.
        """
        argv = manifest["loader"]["argv"]
        cert, key = argv[1], argv[2]
        assert (cert, key) == ("/tmp/ra-tls.crt.pem", "/tmp/ra-tls.key.pem")
        [tmp] = [m for m in manifest["fs"]["mounts"] if m["path"] == "/tmp"]
        assert tmp.get("type") == "tmpfs"
        assert argv[argv.index("--cert") + 1] == cert
        assert argv[argv.index("--key") + 1] == key

    def test_exec_of_twistd(self, manifest: dict[str, Any]) -> None:
        """
        After C{--}, gramine-ratls execs the interpreter by absolute path,
        running twistd in the foreground (C{-n}) with the attestd plugin.
        """
        argv = manifest["loader"]["argv"]
        command = argv[argv.index("--") + 1 :]
        assert command[0] == sys.executable
        assert Path(command[1]).name == "twistd"
        assert all(Path(c).is_absolute() for c in command[:2])
        assert command[2] == "-n"
        assert "attestd" in command
        assert "--pidfile=" in command[: command.index("attestd")]

    def test_listens_on_8080(self, manifest: dict[str, Any]) -> None:
        """
        The daemon listens on port 8080, the port the image exposes.
        """
        argv = manifest["loader"]["argv"]
        assert argv[argv.index("--listen") + 1] == "tcp:8080"


class TestSecurity:
    """
    Settings that must never be weakened.
    """

    def test_dcap(self, manifest: dict[str, Any]) -> None:
        """
        Remote attestation is DCAP.
        """
        assert manifest["sgx"]["remote_attestation"] == "dcap"

    def test_not_debug(self, manifest: dict[str, Any]) -> None:
        """
        The enclave is a production enclave, and that is written literally
        in the template, not taken from a variable.
        """
        assert manifest["sgx"]["debug"] is False
        lines = [
            line
            for line in TEMPLATE.read_text().splitlines()
            if line.strip().startswith("sgx.debug")
        ]
        assert lines == ["sgx.debug = false"]

    def test_no_insecure_option(self, manifest: dict[str, Any]) -> None:
        """
        No C{insecure__} option appears, rendered or in the template.
        """
        assert [k for k in walk_keys(manifest) if "insecure__" in k] == []
        assert "insecure__" not in TEMPLATE.read_text()

    def test_sigterm_injection(self, manifest: dict[str, Any]) -> None:
        """
        SIGTERM from the host reaches the daemon.
        """
        assert manifest["sys"]["enable_sigterm_injection"] is True

    def test_strict_file_checks(self, manifest: dict[str, Any]) -> None:
        """
        No allowed (unmeasured) files, and the default strict file check
        policy.
        """
        assert manifest["sgx"].get("allowed_files", []) == []
        assert manifest["sgx"].get("file_check_policy", "strict") == "strict"

    def test_every_mount_measured(self, manifest: dict[str, Any]) -> None:
        """
        Every host path mounted into the enclave is a trusted file or lies
        in a trusted directory, so nothing unmeasured (an executable
        included) can be reached.
        """
        paths = trusted(manifest)
        for mount in manifest["fs"]["mounts"]:
            if mount.get("type") == "tmpfs":
                continue
            host = mount["uri"][len("file:") :]
            assert covered(host, paths), host

    def test_interpreter_stdlib_site_packages(
        self, manifest: dict[str, Any]
    ) -> None:
        """
        The interpreter, its standard library (and extension modules) and
        site-packages are trusted files.
        """
        paths = trusted(manifest)
        assert sys.executable in paths
        # One module of each: the standard library, an extension module
        # (lib-dynload) and a package from site-packages.
        for module in (os, _ssl, twisted):
            assert covered(module.__file__, paths), module.__file__
        assert covered(
            sysconfig.get_path("purelib") + "/OpenSSL/SSL.py", paths
        )
        assert covered(str(Path(sys.executable).parent / "twistd"), paths)

    def test_system_libraries_trusted(
        self, tmp_path: Path, manifest: dict[str, Any]
    ) -> None:
        """
        The loader's runtime, gramine-ratls and the system libraries are
        trusted.
        """
        paths = trusted(manifest)
        assert str(tmp_path / "gramine-ratls") in paths
        assert f"{tmp_path}/runtime/glibc/" in paths
        assert f"{ARCH_LIBDIR}/" in paths
        assert f"/usr{ARCH_LIBDIR}/" in paths

    def test_only_needed_environment(self, manifest: dict[str, Any]) -> None:
        """
        Only the variables attestd needs are set, each to a fixed value;
        nothing passes through from the host.
        """
        environment = manifest["loader"]["env"]
        assert set(environment) == ENCLAVE_ENV
        assert all(isinstance(v, str) for v in environment.values())
        assert (
            environment["LD_LIBRARY_PATH"]
            == f"/lib:{ARCH_LIBDIR}:/usr{ARCH_LIBDIR}"
        )


class TestIdentityAndSizing:
    """
    Measured identity and resources.
    """

    def test_isv_from_build_arguments(self, tmp_path: Path) -> None:
        """
        ISVPRODID and ISVSVN are whatever the build passes.
        """
        manifest = tomllib.loads(render(tmp_path, isvprodid="12", isvsvn="34"))
        assert (manifest["sgx"]["isvprodid"], manifest["sgx"]["isvsvn"]) == (
            12,
            34,
        )

    @pytest.mark.parametrize("missing", ["isvprodid", "isvsvn", "interpreter"])
    def test_required_variables(self, tmp_path: Path, missing: str) -> None:
        """
        Rendering without a build argument fails instead of guessing.
        """
        with pytest.raises(jinja2.UndefinedError, match=missing):
            render(tmp_path, **{missing: None})

    def test_threads(self, manifest: dict[str, Any]) -> None:
        """
        There are enough enclave threads for Twisted's thread pool and
        Gramine's helpers, and the template says why.
        """
        assert manifest["sgx"]["max_threads"] >= (
            TWISTED_THREAD_POOL + GRAMINE_EXTRA_THREADS
        )
        text = TEMPLATE.read_text()
        reason = text[: text.index("sgx.max_threads")].rsplit("\n\n", 1)[1]
        assert "thread pool" in reason
        assert "10 + 4" in reason

    def test_enclave_size(self, manifest: dict[str, Any]) -> None:
        """
        The enclave size is a power of two of at least 512 MiB, with the
        reason written next to it.
        """
        size = manifest["sgx"]["enclave_size"]
        units = {"M": 2**20, "G": 2**30}
        value = int(size[:-1]) * units[size[-1]]
        assert value >= 512 * 2**20
        assert value & (value - 1) == 0
        text = TEMPLATE.read_text()
        reason = text[: text.index("sgx.enclave_size")].rsplit(
            "sgx.max_threads", 1
        )[1]
        assert "#" in reason
        assert "power of two" in reason

    def test_no_edmm(self, manifest: dict[str, Any]) -> None:
        """
        EDMM is off: the enclave's pages are all measured up front.
        """
        assert manifest["sgx"]["edmm_enable"] is False
