from __future__ import annotations

import subprocess
import sys

import pytest

from cryoflow.errors import ConfigError
from cryoflow.failpoints import Failpoints


def test_a_crash_point_exits_with_137_on_its_nth_hit() -> None:
    code = ("from cryoflow.failpoints import Failpoints\n"
            "f = Failpoints('p=crash@2')\nf.hit('p')\nprint('first', flush=True)\nf.hit('p')\n"
            "print('never')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 137
    assert done.stdout == "first\n"


def test_points_without_a_spec_do_nothing() -> None:
    Failpoints("").hit("anything")


@pytest.mark.parametrize("spec", ["p", "p=explode", "p=crash@x", "p=delay:soon"])
def test_a_malformed_spec_says_how_to_write_it(spec: str) -> None:
    with pytest.raises(ConfigError, match="CRYOFLOW_FAILPOINTS"):
        Failpoints(spec)
