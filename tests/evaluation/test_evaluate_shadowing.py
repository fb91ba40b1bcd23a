"""`evaluate.py` at the repository root must not hide the `evaluate` library: not from `python
evaluate.py`, not from pytest or `python -c` started in the root, not from code inside the packages."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
LIBRARY_CHECK = "import evaluate; assert hasattr(evaluate, 'load'), evaluate.__file__; print(evaluate.__file__)"


def run(args, cwd=ROOT):
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                            env=dict(os.environ, HF_EVALUATE_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_import_evaluate_in_this_process_gets_the_library():
    import evaluate

    assert hasattr(evaluate, "load") and "site-packages" in evaluate.__file__


def test_python_started_in_the_root_gets_the_library():
    assert "site-packages" in run(["-c", LIBRARY_CHECK])  # sys.path[0] is '' (the root) here


def test_script_run_from_the_root_sees_the_library_and_runs(tmp_path):
    out = run(["-c", "import runpy, sys; sys.argv = ['evaluate.py', '--help']; "
                     "runpy.run_path('evaluate.py', run_name='__main__')"])
    assert "usage" in out.lower()
    assert "usage" in run(["evaluate.py", "--help"]).lower()
    # the same when launched from elsewhere by path
    assert "usage" in run([str(ROOT / "evaluate.py"), "--help"], cwd=tmp_path).lower()


def test_code_inside_the_packages_gets_the_library_while_the_script_runs():
    probe = (
        "import sys, runpy; sys.argv = ['evaluate.py', '--help']\n"
        "try:\n    runpy.run_path('evaluate.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "import metrics.vqa_accuracy.vqa_accuracy as m, evaluate\n"
        "assert hasattr(evaluate, 'load') and m.evaluate is evaluate\nprint('ok')"
    )
    assert run(["-c", probe]).strip().endswith("ok")


def test_the_script_imports_under_another_name():
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert hasattr(module, "main")
    import evaluate

    assert evaluate is not module and hasattr(evaluate, "load")
