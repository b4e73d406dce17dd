"""
Static checks of C{container/}: hadolint, shellcheck and C{sh -n};
C{systemd-analyze verify} on the unit where systemd is installed; the
Dockerfile's invariants, read by parsing it; the hash-locked requirements;
and C{container/build.sh}, run against a fake C{docker} that records its
arguments and writes a C{.sig} signed with the given key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.sigstructs import mrsigner_of

ROOT = Path(__file__).parent.parent
CONTAINER = ROOT / "container"
DOCKERFILE = CONTAINER / "Dockerfile"
BUILD_SH = CONTAINER / "build.sh"
UNIT = CONTAINER / "attestd.service"
DOCKER_RUN = CONTAINER / "docker-run.sh"
FAKES = Path(__file__).parent / "fakes"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """
    Find a lint binary installed by the project's C{lint} extra (on PATH or
    next to the running interpreter); fail, never skip, when it is absent.
    """
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    assert found, f"{name} is missing: pip install -e '.[lint]'"
    return found


def shell_scripts() -> list[Path]:
    """
    Every shell script of the repository, found by its C{#!} line.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    scripts = []
    for name in listed:
        path = ROOT / name
        if name.startswith("tests/vectors/") or not path.is_file():
            continue
        with path.open("rb") as f:
            first = f.readline()
        if re.match(rb"#!\s*\S*(/|env )(ba)?sh\b", first):
            scripts.append(path)
    return scripts


def instructions(text: str) -> list[tuple[str, str]]:
    """
    Split a Dockerfile into (instruction, arguments), joining continued
    lines and dropping comments.
    """
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages(parsed: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """
    The instructions of each named stage, in order.
    """
    result: dict[str, list[tuple[str, str]]] = {}
    name = ""
    for word, rest in parsed:
        if word == "FROM":
            name = rest.split()[-1]
            result[name] = []
        if name:
            result[name].append((word, rest))
    return result


PARSED = instructions(DOCKERFILE.read_text())
STAGES = stages(PARSED)


class TestLint:
    """
    hadolint, shellcheck, sh -n and systemd-analyze.
    """

    def test_hadolint(self) -> None:
        """
        hadolint finds nothing in the Dockerfile.
        """
        result = subprocess.run(
            [tool("hadolint"), "--no-color", str(DOCKERFILE)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stdout) == (0, "")

    def test_scripts_found(self) -> None:
        """
        The script list includes the build script (the search works).
        """
        assert BUILD_SH in shell_scripts()

    @pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.name)
    def test_shellcheck(self, script: Path) -> None:
        """
        shellcheck finds nothing in the script.
        """
        result = subprocess.run(
            [
                tool("shellcheck"),
                "--external-sources",
                "--source-path=SCRIPTDIR",
                str(script),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert (result.returncode, result.stdout) == (0, "")

    @pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.name)
    def test_syntax(self, script: Path) -> None:
        """
        The script parses (C{sh -n}; C{bash -n} for bash scripts).
        """
        first = script.open("rb").readline()
        shell = "bash" if b"bash" in first else "sh"
        result = subprocess.run(
            [shell, "-n", str(script)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stderr) == (0, "")

    def test_systemd_analyze(self, tmp_path: Path) -> None:
        """
        C{systemd-analyze verify} accepts the unit without a warning.
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            pytest.skip("systemd-analyze is not installed on this machine")
        shutil.copy(UNIT, tmp_path / "attestd.service")
        # The unit requires docker.service; this machine has the docker
        # client but no engine, so a stand-in unit takes its place.
        (tmp_path / "docker.service").write_text(
            "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n"
        )
        result = subprocess.run(
            [analyze, "verify", str(tmp_path / "attestd.service")],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
        )
        assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


class TestUnit:
    """
    The systemd unit's settings.
    """

    text = UNIT.read_text()

    def setting(self, key: str) -> list[str]:
        return re.findall(rf"^{key}=(.*)$", self.text, re.MULTILINE)

    def test_runs_docker_run_script(self) -> None:
        """
        The unit starts the container through the installed
        C{docker-run.sh}, which maps the devices and passes the settings
        file; the unit itself reads no settings file of its own.
        """
        assert self.setting("ExecStart") == [
            "/bin/sh /usr/local/lib/attestd/docker-run.sh"
        ]
        assert "install -m 755 -D container/docker-run.sh" in self.text
        assert self.setting("EnvironmentFile") == []
        assert "ATTESTD_ENV_FILE=/etc/attestd/attestd.env" in (
            self.setting("Environment")
        )

    def test_restart_policy(self) -> None:
        """
        Failures restart the service, within a limit.
        """
        assert self.setting("Restart") == ["on-failure"]
        assert int(self.setting("StartLimitBurst")[0]) > 0
        assert int(self.setting("StartLimitIntervalSec")[0]) > 0

    def test_stop_timeout(self) -> None:
        """
        docker waits longer than the daemon's 10 s drain before killing it,
        and systemd waits longer than docker.
        """
        [stop] = self.setting("ExecStop")
        wait = re.search(r"--time (\d+)", stop)
        assert wait is not None
        docker_wait = int(wait.group(1))
        assert docker_wait > 10
        assert int(self.setting("TimeoutStopSec")[0]) > docker_wait

    def test_image_is_one_setting(self) -> None:
        """
        The image tag is set once, and used by the run command.
        """
        images = [
            e for e in self.setting("Environment") if "ATTESTD_IMAGE" in e
        ]
        assert images == ["ATTESTD_IMAGE=attestd:ubuntu20"]
        assert "image=${ATTESTD_IMAGE:-attestd:ubuntu20}" in (
            DOCKER_RUN.read_text()
        )


class TestDockerRun:
    """
    C{container/docker-run.sh}, run against a fake C{docker} and a fake
    device directory.
    """

    def run(
        self,
        tmp_path: Path,
        env_file: Path | None = None,
        **extra: str,
    ) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
        record = tmp_path / "docker.jsonl"
        env = {
            **extra,
            "PATH": os.environ["PATH"],
            "DOCKER": str(FAKES / "docker"),
            "FAKE_DOCKER_RECORD": str(record),
            "ATTESTD_DEV": str(tmp_path / "dev"),
            "ATTESTD_IMAGE": "registry.example/attestd:1",
            "ATTESTD_ENV_FILE": str(env_file or tmp_path / "absent.env"),
        }
        result = subprocess.run(
            ["sh", str(DOCKER_RUN)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        calls = (
            [json.loads(line) for line in record.read_text().splitlines()]
            if record.exists()
            else []
        )
        return result, calls

    def devices(self, argv: list[str]) -> list[str]:
        return [argv[i + 1] for i, a in enumerate(argv) if a == "--device"]

    def make(self, tmp_path: Path, *names: str) -> Path:
        dev = tmp_path / "dev"
        (dev / "sgx").mkdir(parents=True)
        for name in names:
            (dev / name).touch()
        return dev

    def test_in_kernel_names(self, tmp_path: Path) -> None:
        """
        With the in-kernel driver's nodes only, each is passed under both
        of its names, with the group owning it.
        """
        dev = self.make(tmp_path, "sgx_enclave", "sgx_provision")
        result, [argv] = self.run(tmp_path)
        assert result.returncode == 0, result.stderr
        assert self.devices(argv) == [
            f"{dev}/sgx_enclave:/dev/sgx_enclave",
            f"{dev}/sgx_enclave:/dev/sgx/enclave",
            f"{dev}/sgx_provision:/dev/sgx_provision",
            f"{dev}/sgx_provision:/dev/sgx/provision",
        ]
        gid = str((dev / "sgx_enclave").stat().st_gid)
        assert argv[argv.index("--group-add") + 1] == gid
        assert argv[:2] == ["run", "--rm"]
        assert ["--publish", "8080:8080"] == argv[
            argv.index("--publish") : argv.index("--publish") + 2
        ]
        assert argv[-1] == "registry.example/attestd:1"
        assert "--env-file" not in argv

    def test_udev_symlinks(self, tmp_path: Path) -> None:
        """
        With udev's symlinks as well, the in-kernel nodes are passed.
        """
        dev = self.make(tmp_path, "sgx_enclave", "sgx_provision")
        (dev / "sgx" / "enclave").symlink_to("../sgx_enclave")
        (dev / "sgx" / "provision").symlink_to("../sgx_provision")
        result, [argv] = self.run(tmp_path)
        assert result.returncode == 0, result.stderr
        assert self.devices(argv)[0] == f"{dev}/sgx_enclave:/dev/sgx_enclave"
        assert self.devices(argv)[2] == (
            f"{dev}/sgx_provision:/dev/sgx_provision"
        )

    def test_host_aesm(self, tmp_path: Path) -> None:
        """
        ATTESTD_HOST_AESM_DIR mounts the host's AESM socket directory at
        /var/run/aesmd; a path that is not a directory stops the run.
        """
        self.make(tmp_path, "sgx_enclave", "sgx_provision")
        aesmd = tmp_path / "aesmd"
        aesmd.mkdir()
        result, [argv] = self.run(tmp_path, ATTESTD_HOST_AESM_DIR=str(aesmd))
        assert result.returncode == 0, result.stderr
        assert f"{aesmd}:/var/run/aesmd" == argv[argv.index("--volume") + 1]
        (tmp_path / "docker.jsonl").unlink()
        result, calls = self.run(
            tmp_path, ATTESTD_HOST_AESM_DIR=str(tmp_path / "absent")
        )
        assert (1, []) == (result.returncode, calls)
        assert "is not a directory" in result.stderr

    def test_dcap_driver_names(self, tmp_path: Path) -> None:
        """
        With the DCAP driver's nodes only, they are passed under both names.
        """
        dev = self.make(tmp_path, "sgx/enclave", "sgx/provision")
        result, [argv] = self.run(tmp_path)
        assert result.returncode == 0, result.stderr
        assert self.devices(argv) == [
            f"{dev}/sgx/enclave:/dev/sgx_enclave",
            f"{dev}/sgx/enclave:/dev/sgx/enclave",
            f"{dev}/sgx/provision:/dev/sgx_provision",
            f"{dev}/sgx/provision:/dev/sgx/provision",
        ]

    def test_missing_named(self, tmp_path: Path) -> None:
        """
        A missing device is named with every name tried, and docker is not
        run.
        """
        dev = self.make(tmp_path, "sgx_enclave")
        result, calls = self.run(tmp_path)
        assert result.returncode == 1
        assert calls == []
        assert result.stderr == (
            "attestd: missing SGX device(s) on this host: "
            f"{dev}/sgx_provision (nor {dev}/sgx/provision);\n"
        )

    def test_env_file_passed_whole(self, tmp_path: Path) -> None:
        """
        The settings file goes to docker as a whole (--env-file), so every
        setting in it reaches the start command, not a chosen few.
        """
        self.make(tmp_path, "sgx_enclave", "sgx_provision")
        env_file = tmp_path / "attestd.env"
        env_file.write_text("ATTESTD_AESM=host\nATTESTD_USER=attestd\n")
        result, [argv] = self.run(tmp_path, env_file)
        assert result.returncode == 0, result.stderr
        assert argv[argv.index("--env-file") + 1] == str(env_file)
        assert "--env" not in argv


class TestDockerfile:
    """
    The Dockerfile's invariants.
    """

    def global_args(self) -> dict[str, str]:
        """
        The ARGs before the first FROM, with their defaults.
        """
        out = {}
        for word, rest in PARSED:
            if word == "FROM":
                break
            if word == "ARG":
                name, _, default = rest.partition("=")
                out[name] = default
        return out

    def runs(self, stage: str) -> list[str]:
        return [rest for word, rest in STAGES[stage] if word == "RUN"]

    def test_base_pinned_by_digest(self) -> None:
        """
        The first stage is ubuntu:20.04 pinned by a digest.
        """
        first = next(rest for word, rest in PARSED if word == "FROM")
        assert re.fullmatch(
            r"ubuntu:20\.04@sha256:[0-9a-f]{64} AS base", first
        )

    def test_pins_are_build_arguments(self) -> None:
        """
        The snapshot, Gramine, AESM and Python versions are build arguments
        with defaults.
        """
        args = self.global_args()
        for name in (
            "UBUNTU_SNAPSHOT",
            "GRAMINE_VERSION",
            "SGX_AESM_VERSION",
            "PYTHON_VERSION",
            "SOURCE_DATE_EPOCH",
        ):
            assert args.get(name), name
        assert re.fullmatch(r"\d{8}T\d{6}Z", args["UBUNTU_SNAPSHOT"])
        assert re.fullmatch(r"[0-9a-f]{64}", args["PYTHON_SHA256"])

    def test_ubuntu_snapshot(self) -> None:
        """
        Ubuntu packages come from the dated snapshot.
        """
        [sources] = [r for r in self.runs("base") if "sources.list" in r]
        assert "http://snapshot.ubuntu.com/ubuntu/%s" in sources
        assert '"${UBUNTU_SNAPSHOT}"' in sources
        [env] = [rest for word, rest in STAGES["base"] if word == "ENV"]
        assert "SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}" in env.split()

    @pytest.mark.parametrize(
        ("key", "variable", "repository"),
        [
            (
                "gramine-keyring.gpg",
                "GRAMINE_KEY_SHA256",
                "packages.gramineproject.io",
            ),
            (
                "intel-sgx-deb.asc",
                "INTEL_SGX_KEY_SHA256",
                "intel-sgx/sgx_repo",
            ),
        ],
    )
    def test_repository_keys_checked(
        self, key: str, variable: str, repository: str
    ) -> None:
        """
        Each repository key is checked against its pinned hash before the
        repository is added, and the build refuses to run without the hash.
        """
        [run] = [
            r for r in self.runs("enclave") if key in r and "sha256sum" in r
        ]
        check = run.index(f'echo "${{{variable}}}  /usr/share/keyrings/{key}"')
        assert "sha256sum -c -" in run[check:]
        assert run.index(f"signed-by=/usr/share/keyrings/{key}") > check
        assert (
            repository
            in run[run.index(f"signed-by=/usr/share/keyrings/{key}") :]
        )
        assert f'"${{{variable}:?' in run

    def test_python_checksum(self) -> None:
        """
        The CPython tarball is checked before it is unpacked.
        """
        [run] = [r for r in self.runs("build") if "python.tar.xz" in r]
        assert run.index(
            '"${PYTHON_SHA256}  python.tar.xz" | sha256sum -c -'
        ) < (run.index("tar -xJf"))
        assert "${PYTHON_VERSION}" in run

    def test_pinned_packages(self) -> None:
        """
        Gramine and the Intel packages are installed at their pinned
        versions.
        """
        [run] = [r for r in self.runs("enclave") if "apt-get install" in r]
        assert '"gramine=${GRAMINE_VERSION}"' in run
        assert '"sgx-aesm-service=${SGX_AESM_VERSION}"' in run
        assert '"libsgx-dcap-default-qpl=${SGX_DCAP_VERSION}"' in run
        assert "libsgx-dcap-default-qpl" in run

    def test_require_hashes(self) -> None:
        """
        Every pip install from a requirements file checks hashes.
        """
        pips = [
            r for r in self.runs("build") if "pip install" in r and " -r " in r
        ]
        assert pips
        for run in pips:
            for command in run.split("&&"):
                if "pip install" in command and " -r " in command:
                    assert "--require-hashes" in command

    def test_secret_key(self) -> None:
        """
        The key reaches gramine-sgx-sign only as a BuildKit secret, and no
        key file is copied into the image.
        """
        [run] = [r for r in self.runs("sign") if "gramine-sgx-sign" in r]
        assert run.startswith(
            "--mount=type=secret,id=enclave-key,required=true "
        )
        assert "--key /run/secrets/enclave-key" in run
        for word, rest in PARSED:
            if word in ("COPY", "ADD"):
                assert "key" not in rest.lower() or "keyring" in rest.lower()
                assert ".pem" not in rest

    def test_stages(self) -> None:
        """
        Build, sign and runtime are separate stages; build tools stay in
        the build stage and the runtime is the last stage.
        """
        assert {"base", "build", "enclave", "sign", "runtime"} <= set(STAGES)
        assert list(STAGES)[-1] == "runtime"
        for name, body in STAGES.items():
            text = " ".join(rest for _, rest in body)
            if name != "build":
                assert "build-essential" not in text
        copies = [r for w, r in STAGES["enclave"] if w == "COPY"]
        assert "--from=build /opt/python /opt/python" in copies

    def test_plugin_cache_prebuilt(self) -> None:
        """
        The build stage writes Twisted's plugin cache (read-only in the
        enclave) after attestd is installed, and checks it lists attestd.
        """
        runs = self.runs("build")
        install = next(
            i for i, r in enumerate(runs) if "--no-index /usr/src/dist" in r
        )
        [cache] = [r for r in runs if "dropin.cache" in r]
        assert runs.index(cache) > install
        assert "getPlugins(IPlugin)" in cache
        assert "'attestd' in [p.tapname" in cache
        copies = [r for w, r in STAGES["enclave"] if w == "COPY"]
        assert "--from=build /opt/python /opt/python" in copies

    def test_runtime(self) -> None:
        """
        The runtime runs as a non-root user, exposes 8080 and starts with
        the start command.
        """
        runtime = STAGES["runtime"]
        [user] = [rest for word, rest in runtime if word == "USER"]
        assert user.split(":")[0] not in ("root", "0")
        assert ("EXPOSE", "8080") in runtime
        [entrypoint] = [rest for word, rest in runtime if word == "ENTRYPOINT"]
        assert json.loads(entrypoint)[1:] == ["-m", "attestd.start"]


class TestRequirements:
    """
    The hash-locked requirements.
    """

    def requirements(self, name: str) -> dict[str, tuple[str, list[str]]]:
        text = (CONTAINER / name).read_text().replace("\\\n", " ")
        out = {}
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            spec, *hashes = line.split()
            package, _, version = spec.partition("==")
            out[package] = (version, hashes)
        return out

    @pytest.mark.parametrize(
        "name", ["requirements.txt", "build-requirements.txt"]
    )
    def test_pinned_and_hashed(self, name: str) -> None:
        """
        Every requirement is pinned exactly and carries a SHA-256 hash.
        """
        for package, (version, hashes) in self.requirements(name).items():
            assert version, package
            assert hashes, package
            for h in hashes:
                assert re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h), package

    def test_covers_dependencies(self) -> None:
        """
        Every runtime dependency of the project is locked.
        """
        tomllib = pytest.importorskip("tomllib")
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        locked = set(self.requirements("requirements.txt"))
        for dependency in project["project"]["dependencies"]:
            name = re.split(r"[<>=\[ ;]", dependency, maxsplit=1)[0]
            assert re.sub(r"[_.]", "-", name.lower()) in locked, name


@pytest.fixture(scope="module")
def good_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    An RSA-3072 key with exponent 3, as gramine-sgx-gen-private-key makes.
    """
    return write_key(tmp_path_factory.mktemp("keys") / "good.pem", 3, 3072)


def write_key(path: Path, exponent: int, bits: int) -> Path:
    key = rsa.generate_private_key(public_exponent=exponent, key_size=bits)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path


def run_build(
    tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """
    Run build.sh with the fake docker first on PATH; return the result and
    the docker calls.
    """
    record = tmp_path / "docker.jsonl"
    environ = {
        "PATH": os.pathsep.join(
            [str(FAKES), str(VENV_BIN), os.environ["PATH"]]
        ),
        "HOME": str(tmp_path / "home"),
        "ATTESTD_OUT_DIR": str(tmp_path / "out"),
        "FAKE_DOCKER_RECORD": str(record),
        **env,
    }
    result = subprocess.run(
        [str(BUILD_SH), *args],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
        timeout=120,
    )
    calls = (
        [json.loads(line) for line in record.read_text().splitlines()]
        if record.exists()
        else []
    )
    return result, calls


class TestBuildScript:
    """
    container/build.sh, with a fake docker.
    """

    @pytest.mark.parametrize(
        "args", [["ubuntu22"], ["focal"], [], ["ubuntu20", "x"]]
    )
    def test_other_targets_refused(
        self, tmp_path: Path, good_key: Path, args: list[str]
    ) -> None:
        """
        Anything but the one target C{ubuntu20} is refused with a usage
        message, before docker runs.
        """
        result, calls = run_build(
            tmp_path, *args, SGX_SIGNING_KEY=str(good_key)
        )
        assert result.returncode == 2
        assert "the only target is ubuntu20" in result.stderr
        if args[:1] == ["ubuntu22"]:
            assert "unknown target 'ubuntu22'" in result.stderr
        assert calls == []

    def test_builds_and_measures(self, tmp_path: Path, good_key: Path) -> None:
        """
        With a good key the image is built for linux/amd64 with the key as a
        secret and the snapshot as a build argument, and MRENCLAVE and
        MRSIGNER of the .sig are printed and written to a file.
        """
        result, calls = run_build(
            tmp_path,
            "ubuntu20",
            SGX_SIGNING_KEY=str(good_key),
            UBUNTU_SNAPSHOT="20240301T000000Z",
        )
        assert result.returncode == 0, result.stderr
        assert len(calls) == 2
        for call in calls:
            assert call[:2] == ["buildx", "build"]
            assert call[call.index("--platform") + 1] == "linux/amd64"
            assert call[call.index("--secret") + 1] == (
                f"id=enclave-key,src={good_key}"
            )
            assert "UBUNTU_SNAPSHOT=20240301T000000Z" in call
            assert call[call.index("--file") + 1] == str(DOCKERFILE)
        assert calls[0][calls[0].index("--target") + 1] == "measurements"
        assert calls[1][calls[1].index("--target") + 1] == "runtime"
        assert calls[1][calls[1].index("--tag") + 1] == "attestd:ubuntu20"
        key = serialization.load_pem_private_key(good_key.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        mrenclave = hashlib.sha256(
            b"UBUNTU_SNAPSHOT=20240301T000000Z"
        ).hexdigest()
        mrsigner = mrsigner_of(key).hex()
        measurements = (tmp_path / "out" / "measurements.txt").read_text()
        for text in (measurements, result.stdout):
            assert f"mr_enclave: {mrenclave}" in text
            assert f"mr_signer: {mrsigner}" in text

    def test_default_key_location(
        self, tmp_path: Path, good_key: Path
    ) -> None:
        """
        Without SGX_SIGNING_KEY the key is Gramine's default,
        C{$HOME/.config/gramine/enclave-key.pem}.
        """
        default = tmp_path / "home" / ".config" / "gramine" / "enclave-key.pem"
        default.parent.mkdir(parents=True)
        shutil.copy(good_key, default)
        result, calls = run_build(tmp_path, "ubuntu20")
        assert result.returncode == 0, result.stderr
        assert f"id=enclave-key,src={default}" in calls[0]

    @pytest.mark.parametrize(
        ("exponent", "bits", "message"),
        [
            (3, 2048, "RSA-2048 with exponent 3"),
            (65537, 3072, "RSA-3072 with exponent 65537"),
        ],
    )
    def test_wrong_key_refused(
        self, tmp_path: Path, exponent: int, bits: int, message: str
    ) -> None:
        """
        A key that is not RSA-3072 with exponent 3 is refused, naming what
        it is, before docker runs.
        """
        key = write_key(tmp_path / "key.pem", exponent, bits)
        result, calls = run_build(
            tmp_path, "ubuntu20", SGX_SIGNING_KEY=str(key)
        )
        assert result.returncode == 1
        assert message in result.stderr
        assert "SGX needs RSA-3072 with exponent 3" in result.stderr
        assert calls == []

    def test_missing_key(self, tmp_path: Path) -> None:
        """
        A missing key is named, with how to make one.
        """
        result, calls = run_build(
            tmp_path, "ubuntu20", SGX_SIGNING_KEY=str(tmp_path / "nope.pem")
        )
        assert result.returncode == 1
        assert (
            f"signing key {tmp_path / 'nope.pem'} is missing" in result.stderr
        )
        assert "gramine-sgx-gen-private-key" in result.stderr
        assert calls == []

    def test_not_a_key(self, tmp_path: Path) -> None:
        """
        A file that is not an RSA key is refused.
        """
        bad = tmp_path / "bad.pem"
        bad.write_text("not a key\n")
        result, calls = run_build(
            tmp_path, "ubuntu20", SGX_SIGNING_KEY=str(bad)
        )
        assert result.returncode == 1
        assert "is not an RSA private key" in result.stderr
        assert calls == []
