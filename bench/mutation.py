"""Mutation testing (mutmut) of the modules where a silent error costs users most, each against only its
nearest test files. Slow (minutes per module on two cores), so not part of CI.

    .venv/bin/pip install -e ".[test,mutation]"
    .venv/bin/python bench/mutation.py                       # every module
    .venv/bin/python bench/mutation.py quantizers masks      # some of them
    .venv/bin/python bench/mutation.py core --survivors-only # the last run's survivors, after new tests

Each module runs in its own copy of the committed tree (`git archive HEAD` under bench/work/mutation/), so
the working tree is never mutated. Rows of bench/results/mutation.json are replaced per module run, others
kept: module, mutants, killed, survived, timeout. A test process that crashes (segfault) counts as killed;
a mutant no test reaches counts as survived. The surviving mutants' diffs are written beside each copy
(survivors.diff) for the "Mutation testing" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "mutation.json"
WORK = ROOT / "bench" / "work" / "mutation"
PACKAGE = "src/bertcompress"

# module -> (files mutated, nearest test files)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "core": ([f"{PACKAGE}/core/*"], ["test_core.py", "test_config_registry.py", "test_method_contract.py",
                                     "test_targets.py"]),
    "surgery": ([f"{PACKAGE}/surgery/*"], ["test_surgery.py"]),
    "io": ([f"{PACKAGE}/io.py"], ["test_io.py", "test_reliability.py"]),
    "quantizers": ([f"{PACKAGE}/methods/quantization/quantizers.py"], ["test_quantizers.py", "test_properties.py"]),
    "masks": ([f"{PACKAGE}/methods/pruning/masks.py"], ["test_magnitude.py"]),
    "latency": ([f"{PACKAGE}/evaluation/latency.py"], ["test_latency.py"]),
    "loop": ([f"{PACKAGE}/training/loop.py"], ["test_training.py"]),
}
# core/ knows no model family (arch/ does): its contract cases run on BERT and the three task types only, so a
# surviving mutant costs 1.5 minutes rather than 3
TEST_FILTERS: dict[str, str] = {"core": "not roberta and not electra and not distilbert"}
ROW_KEYS = ("module", "mutants", "killed", "survived", "timeout")


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def prepare(name: str) -> Path:
    """A fresh copy of the committed tree with mutmut configured for this module alone."""
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")
    with (work / "pyproject.toml").open("a") as config:
        config.write(_mutmut_config(name))
    return work


def _mutmut_config(name: str) -> str:
    mutated, tests = MODULES[name]
    selection = [f"tests/unit/{t}" for t in tests]
    if name in TEST_FILTERS:
        selection += ["-k", TEST_FILTERS[name]]
    return ("\n[tool.mutmut]\n"
            'source_paths = ["src/"]\n'
            f"only_mutate = {_toml_list(mutated)}\n"
            f"pytest_add_cli_args_test_selection = {_toml_list(selection)}\n"
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]\n'
            'process_isolation = "forkserver"\n'  # torch is not fork-safe once a test has run
            "use_git_change_detection = false\n")


def refresh_tests(name: str) -> Path:
    """The last run's copy with today's tests and test selection: its survivors can be run again alone."""
    work = WORK / name
    if not (work / "mutants").is_dir():
        raise SystemExit(f"{name}: no earlier run under {work}; run the module whole first")
    for target in (work / "tests", work / "mutants" / "tests"):
        shutil.rmtree(target)
        shutil.copytree(ROOT / "tests", target)
    config = (work / "pyproject.toml").read_text().split("\n[tool.mutmut]\n")[0]
    (work / "pyproject.toml").write_text(config + _mutmut_config(name))
    return work


def _mutmut(work: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "BERTCOMPRESS_QUIET": "1", "BERTCOMPRESS_CACHE": str(work / ".cache"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["nice", "-n", "19", str(executable), *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _not_killed(work: Path, kinds: tuple[str, ...] = ("survived", "no tests")) -> list[str]:
    return [line.split(":")[0].strip() for line in _mutmut(work, "results", "--all", "true").stdout.splitlines()
            if line.strip().endswith(kinds)]


def run_module(name: str, timeout: float, survivors_only: bool = False) -> dict:
    """Every mutant of the module in a fresh copy; or, with `survivors_only`, only the last run's survivors,
    timeouts and mutants it did not reach, against the current tests (the killed stay killed: tests were
    only added). mutmut forgets every verdict when the test selection changes (a new test file in MODULES):
    then run the module whole."""
    work = refresh_tests(name) if survivors_only else prepare(name)
    again = _not_killed(work, ("survived", "no tests", "timeout", "not checked", "suspicious")) \
        if survivors_only else []
    started = time.perf_counter()
    try:
        _mutmut(work, "run", "--max-children", "1", *again, timeout=timeout)
    except subprocess.TimeoutExpired:  # the row still counts what ran: mutants beyond killed+survived+timeout
        print(f"{name}: stopped after {timeout:.0f}s; the mutants not reached are left out of every count")
    _mutmut(work, "export-cicd-stats")
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = _not_killed(work)
    diffs = [_mutmut(work, "show", mutant).stdout for mutant in survivors]
    (work / "survivors.diff").write_text("\n".join(diffs))
    print(f"{name}: {stats} in {time.perf_counter() - started:.0f}s; survivors in {work / 'survivors.diff'}")
    return {"module": name, "mutants": stats["total"] - stats.get("skipped", 0),
            "killed": stats["killed"] + stats.get("segfault", 0),
            "survived": stats["survived"] + stats.get("no_tests", 0) + stats.get("suspicious", 0),
            "timeout": stats["timeout"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", choices=[[], *MODULES], default=[], metavar="MODULE",
                        help=f"some of: {', '.join(MODULES)} (default: all)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per module")
    parser.add_argument("--survivors-only", action="store_true",
                        help="run only the last run's survivors and timeouts again, against the current tests")
    args = parser.parse_args()
    for name in args.modules or list(MODULES):
        row = run_module(name, args.timeout, args.survivors_only)
        # read again before writing: another run (other modules) may have written meanwhile
        rows = {r["module"]: r for r in (json.loads(RESULTS.read_text()) if RESULTS.exists() else [])}
        rows[name] = row
        ordered = [{key: rows[m][key] for key in ROW_KEYS} for m in MODULES if m in rows]
        RESULTS.write_text(json.dumps(ordered, indent=2) + "\n")  # after each module: partial runs count


if __name__ == "__main__":
    main()
