"""The README's set-up promise: `make test` installs what the suite needs (tools/ensure_chromium.sh
runs before pytest), and CI's `.ci/run` does nothing `make test` does not.

The Chromium script runs here under a PATH holding only stubs (`id`, `sudo`, `apt-get`), so every
branch is exercised without touching the machine's packages.
"""

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "ensure_chromium.sh"
BASH = "/bin/bash"


def _stub(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def run_script(tmp_path, uid: int, sudo: str | None = None, apt: str | None = None, chromium_env=None):
    """Run the script with stubs only; returns (completed process, lines the stub apt-get was called with)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "apt_calls"
    _stub(bin_dir, "id", f'echo {uid}')
    if sudo is not None:
        _stub(bin_dir, "sudo", sudo)
    if apt is not None:
        _stub(bin_dir, "apt-get", f'echo "$*" >> {calls}\n{apt}')
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    if chromium_env is not None:
        env["CHROMIUM"] = chromium_env
    done = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return done, calls.read_text().splitlines() if calls.exists() else []


# apt-get install writes a `chromium` next to itself (the stub folder is PATH), as Debian's package puts one on PATH
INSTALLS = 'if [ "$1" = install ]; then printf "#!/bin/bash\\n" > "${0%/*}/chromium"; /bin/chmod +x "${0%/*}/chromium"; fi'


def test_present_chromium_is_left_alone(tmp_path):
    _stub(tmp_path, "my-chromium", "true")
    done, calls = run_script(tmp_path, uid=1000, apt="exit 1", chromium_env=str(tmp_path / "my-chromium"))
    assert done.returncode == 0 and calls == []
    done, calls = run_script(tmp_path, uid=1000, apt="exit 1", chromium_env=None)  # none on PATH, not root
    assert done.returncode == 1


def test_root_installs_debian_chromium(tmp_path):
    done, calls = run_script(tmp_path, uid=0, apt=INSTALLS)
    assert done.returncode == 0, done.stderr
    assert calls == ["update -qq", "install -y -qq --no-install-recommends chromium"]
    assert (tmp_path / "bin" / "chromium").exists()


def test_passwordless_sudo_installs_through_sudo(tmp_path):
    done, calls = run_script(tmp_path, uid=1000, sudo='[ "$1" = -n ] && shift; [ "$1" = true ] || "$@"', apt=INSTALLS)
    assert done.returncode == 0, done.stderr
    assert calls[-1] == "install -y -qq --no-install-recommends chromium"


@pytest.mark.parametrize("sudo", [None, "exit 1"], ids=["no-sudo", "sudo-needs-password"])
def test_a_user_who_cannot_install_gets_one_line_saying_what_to_install(tmp_path, sudo):
    done, calls = run_script(tmp_path, uid=1000, sudo=sudo, apt=INSTALLS)
    assert done.returncode == 1 and calls == []
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and done.stdout == ""
    assert "apt-get install -y chromium" in lines[0] and "CHROMIUM=" in lines[0]


def test_no_apt_get_says_what_to_install(tmp_path):
    done, _ = run_script(tmp_path, uid=0)
    assert done.returncode == 1 and "no apt-get" in done.stderr and "chromium" in done.stderr


def test_failed_install_is_reported(tmp_path):
    done, calls = run_script(tmp_path, uid=0, apt='[ "$1" = install ] && exit 100; exit 0')
    assert done.returncode == 1 and "apt-get install chromium failed" in done.stderr


def test_a_wrong_chromium_variable_is_named(tmp_path):
    done, _ = run_script(tmp_path, uid=0, apt=INSTALLS, chromium_env=str(tmp_path / "nowhere"))
    assert done.returncode == 1 and f"CHROMIUM={tmp_path / 'nowhere'}" in done.stderr


def _make_dry_run(target: str) -> list[str]:
    # -n prints the recipe without running it; -W marks the install stamp up to date without touching it
    done = subprocess.run(["make", "-n", "-W", "setup.cfg", target], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_test_checks_chromium_before_the_suite():
    lines = _make_dry_run("test")
    check = next(i for i, line in enumerate(lines) if "tools/ensure_chromium.sh" in line)
    suite = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert check < suite


def test_ci_runs_only_the_readme_test_command():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "make test"]
    assert "make test" in (ROOT / "README.md").read_text()
