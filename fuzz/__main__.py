"""`python -m fuzz [--seconds N]`: build the fuzz targets with clang and run each for N seconds.

Two targets, both under AddressSanitizer and UBSan, both started from the committed seed corpus
(fuzz/corpus/, copied: the run's own finds stay in fuzz/out/):

- `scan`: libFuzzer in C over the scanners of _scan.h (every read checked against the line's exact
  allocation, every span it returns against the line), with coverage of the C code;
- `differential`: atheris; the extension compiled with the sanitizers and libFuzzer's coverage, fed the
  same input as the Python path (fuzz/differential.py), which must count the same.

Needs clang (clang-14 on Debian: `apt-get install clang-14 libclang-rt-14-dev`) and atheris (the `fuzz`
extra). Prints executions and coverage per target, and a JSON summary line; exits 1 on any finding.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORE_C = ROOT / "logtaild" / "count" / "_core.c"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-g", "-O1", "-D_GNU_SOURCE"]


def clang() -> str:
    for name in ("clang", "clang-14", "clang-15", "clang-16"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("python -m fuzz: clang not found (apt-get install clang-14 libclang-rt-14-dev)")


def runtime(cc: str, name: str) -> str:
    path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise SystemExit(f"python -m fuzz: {name} not found (apt-get install libclang-rt-14-dev)")
    return path


def build(out: Path) -> dict[str, str]:
    cc = clang()
    out.mkdir(parents=True, exist_ok=True)
    scan = out / "scan_fuzz"
    subprocess.run([cc, *SANITIZE, "-fsanitize=fuzzer", str(HERE / "scan_fuzz.c"), "-o", str(scan)], check=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    core_so = out / f"_core{suffix}"
    subprocess.run([cc, *SANITIZE, "-fsanitize=fuzzer-no-link", "-fPIC", "-shared",
                    "-I" + sysconfig.get_paths()["include"], str(CORE_C), "-o", str(core_so)], check=True)
    # libFuzzer as a shared library, preloaded first so its coverage hooks (not ASan's weak no-ops) are
    # the ones the sanitized core calls; atheris then uses it instead of its own copy
    fuzzer_a = runtime(cc, "libclang_rt.fuzzer_no_main-x86_64.a")
    fuzzer_so = out / "libfuzzer_no_main.so"
    subprocess.run([cc + "++" if os.path.exists(cc + "++") else cc.replace("clang", "clang++"), "-shared", "-fPIC",
                    "-o", str(fuzzer_so), "-Wl,--whole-archive", fuzzer_a, "-Wl,--no-whole-archive",
                    "-lpthread", "-ldl", "-lm"], check=True)
    return {"scan": str(scan), "core": str(core_so), "libfuzzer": str(fuzzer_so),
            "asan": runtime(cc, "libclang_rt.asan-x86_64.so")}


def summary(output: str) -> dict[str, int]:
    """Executions and coverage from libFuzzer's output (its last status line and `Done N runs`)."""
    found: dict[str, int] = {}
    for line in output.splitlines():
        status = re.match(r"#(\d+)\s+\w+\s+(.*)", line)
        if status:
            found["executions"] = int(status.group(1))
            for name, value in re.findall(r"(cov|ft|corp): (\d+)", status.group(2)):
                found[{"cov": "coverage_edges", "ft": "features", "corp": "corpus"}[name]] = int(value)
        done = re.match(r"Done (\d+) runs", line)
        if done:
            found["executions"] = int(done.group(1))
    return found


def run(name: str, argv: list[str], env: dict[str, str], corpus: Path, seconds: int, out: Path) -> dict[str, object]:
    work = out / f"corpus-{name}"
    work.mkdir(parents=True, exist_ok=True)
    argv = [*argv, f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1",
            f"-artifact_prefix={out}/{name}-", str(work), str(corpus)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 300)
    output = done.stdout + done.stderr
    (out / f"{name}.log").write_text(output)
    result: dict[str, object] = {"target": name, "seconds": seconds, "exit": done.returncode, **summary(output)}
    if done.returncode != 0:
        result["tail"] = output[-3000:]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--only", choices=["scan", "differential"])
    args = parser.parse_args(argv)
    built = build(args.out)
    corpus = HERE / "corpus"
    results = []
    base = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:verify_asan_link_order=0:abort_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    if args.only in (None, "scan"):
        results.append(run("scan", [built["scan"]], base, corpus, args.seconds, args.out))
    if args.only in (None, "differential"):
        env = {**base, "LD_PRELOAD": f"{built['libfuzzer']}:{built['asan']}", "LOGTAILD_FUZZ_CORE": built["core"],
               "LOGTAILD_CORE": "auto",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with tempfile.TemporaryDirectory():
            results.append(run("differential", [sys.executable, str(HERE / "differential.py")], env, corpus,
                               args.seconds, args.out))
    for result in results:
        print(f"{result['target']}: {result.get('executions', 0):,} executions in {result['seconds']} s, "
              f"coverage {result.get('coverage_edges', '?')} edges, {result.get('features', '?')} features, "
              f"corpus {result.get('corpus', '?')}, exit {result['exit']}")
        if result["exit"] != 0:
            print(result.get("tail", ""))
    print(json.dumps(results))
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
