"""`make test`'s machine set-up (scripts/test-machine.sh): silent when everything is there, one line naming the
packages and the command to install them when something is missing and the user is not root.

The missing case runs in a mount namespace (``unshare --mount --map-root-user``) where a non-executable file is
bound over each binary the script looks for, then as uid 65534 in a nested user namespace: no real change
to the machine, and no package is installed.
"""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "test-machine.sh"
LOOKED_AT = ("/usr/bin/chromium", "/usr/bin/chromedriver")


def _hide(paths: list[str], blank: Path) -> str:
    return "; ".join(f"mount --bind {blank} {p}" for p in paths)


def test_a_machine_with_everything_needs_nothing():
    done = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_user_without_root_is_told_in_one_line_what_to_install(tmp_path: Path):
    blank = tmp_path / "not-a-binary"
    blank.write_text("")
    postgres = [str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    on_path = subprocess.run(["sh", "-c", "command -v initdb || true"], capture_output=True, text=True, check=True)
    hidden = [*LOOKED_AT, *postgres, *([on_path.stdout.strip()] if on_path.stdout.strip() else [])]
    inner = f"unshare --user --map-user=65534 sh {SCRIPT}"
    done = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", f"{_hide(hidden, blank)}; exec {inner}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "sudo apt-get install -y postgresql chromium chromium-driver" in done.stderr
