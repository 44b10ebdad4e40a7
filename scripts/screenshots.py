"""Refresh the pictures in docs/ from a test run: the terminal summary, the live view
and the web view. The tests write them to test-artifacts/ (a test run never changes
docs/); this copies them over. Needs Debian's chromium, as the web-view tests do.

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PICTURES = {"summary.png": "summary.png", "live.png": "live.png",
            "webview-readme.png": "webview.png"}
TESTS = ["tests/test_first_contact.py::test_the_summary_names_the_failed_branch_with_its_log_"
         "and_is_drawn_for_the_readme",
         "tests/test_first_contact.py::test_the_live_view_shows_each_node_and_the_running_jobs_"
         "and_is_drawn_for_the_readme",
         "tests/test_webview.py::test_a_screenshot_of_a_busy_run_is_saved_for_the_readme"]


def main() -> int:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", *TESTS], cwd=ROOT)
    if done.returncode != 0:
        print("screenshots: the tests failed; docs/ is unchanged", file=sys.stderr)
        return done.returncode
    for made, kept in PICTURES.items():
        shutil.copyfile(ROOT / "test-artifacts" / made, ROOT / "docs" / kept)
        print(f"docs/{kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
