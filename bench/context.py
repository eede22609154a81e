"""What every phase needs: paths, the logtaild command and its environment, options, logging."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def measured_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of the measured processes: with bytecode caches, as an installed package has them
    (pip compiles a wheel's modules at install). Without them (PYTHONDONTWRITEBYTECODE, set in some
    shells and sandboxes) every run compiles logtaild's ~40 modules from source, about 0.2 s of each
    start-up that no installed logtaild pays. The caches go under the bench's out/ folder
    (PYTHONPYCACHEPREFIX), not into the tree; `warm_bytecode` fills them before anything is timed."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(ROOT / "bench" / "out" / "pycache")
    return env


@dataclass
class Context:
    out: Path
    quick: bool = False
    seed: int = 1
    rev: str | None = None
    env: dict[str, str] = field(default_factory=lambda: measured_env(dict(os.environ)))
    logtaild_src: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def logs(self) -> Path:
        path = self.out / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def python(self) -> str:
        return sys.executable

    @property
    def logtaild(self) -> list[str]:
        """The `logtaild` console script next to this interpreter (or `python -m logtaild`)."""
        script = Path(sys.executable).parent / "logtaild"
        return [str(script)] if script.exists() else [sys.executable, "-m", "logtaild"]

    @property
    def mtail(self) -> str | None:
        return shutil.which("mtail") or ("/usr/bin/mtail" if os.access("/usr/bin/mtail", os.X_OK) else None)

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def use_rev(self, rev: str) -> None:
        """Measure logtaild as of git revision `rev` (extracted to out/src-<sha>) instead of the
        working tree: others may be editing logtaild/ while the bench runs."""
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dest = self.out / f"src-{sha[:12]}"
        if not (dest / "logtaild" / "__init__.py").exists():
            dest.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "logtaild"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        self._build_core(dest)
        self.rev = sha
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(dest), str(ROOT)] + ([self.env["PYTHONPATH"]] if self.env.get("PYTHONPATH") else []))

    def _build_core(self, dest: Path) -> None:
        """Compile the extracted tree's counting core in place, as `pip install` does (same flags), so the
        revision is measured with the core it ships; without a compiler it counts with the Python core."""
        source = dest / "logtaild" / "count" / "_core.c"
        target = source.with_name("_core" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
        if not source.exists() or target.exists():
            return
        cc = (sysconfig.get_config_var("CC") or "cc").split()
        done = subprocess.run([*cc, "-shared", "-fPIC", "-O2", "-std=c11", "-D_GNU_SOURCE", "-fno-strict-aliasing",
                               "-I" + sysconfig.get_paths()["include"], str(source), "-o", str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            self.log(f"the compiled core of {dest.name} did not build (Python core measured): {done.stderr[-300:]}")

    def warm_bytecode(self) -> None:
        """Compile the measured logtaild's modules (and its dependencies', on their first import) into the
        bench's bytecode cache, so the first timed run does not pay for it (see `measured_env`)."""
        package = str(Path(self.logtaild_src).parent) if self.logtaild_src else str(ROOT / "logtaild")
        subprocess.run([self.python, "-m", "compileall", "-q", package], capture_output=True, env=self.env,
                       cwd=self.out)
        # the prefix holds the caches of everything imported (stdlib, click, yaml too): one --once run fills it
        sample = self.logs / "warm.tsv"
        sample.write_bytes(b"10.0.0.1\tGET / HTTP/1.1\t200\t1\t1.0\n")
        subprocess.run([*self.logtaild, "--file", str(sample), "--format", "tsv", "--from-start", "--once"],
                       capture_output=True, env=self.env, cwd=self.out)

    def describe_logtaild(self) -> dict[str, str]:
        """Where the measured logtaild is imported from, and its version (from a child process)."""
        code = ("import json, logtaild\nfrom logtaild.count import core\n"
                "print(json.dumps([logtaild.__file__, logtaild.__version__, core.DESCRIPTION]))")
        done = subprocess.run([self.python, "-c", code], capture_output=True, text=True, env=self.env,
                              cwd=self.out)
        if done.returncode != 0:
            raise RuntimeError(f"cannot import logtaild: {done.stderr.strip()[-300:]}")
        path, version, counting_core = json.loads(done.stdout)
        self.logtaild_src = path
        return {"module": path, "version": version, "rev": self.rev or "working tree", "core": counting_core}

    def bench_module(self, module: str, *args: str) -> list[str]:
        """argv running `python -m bench.<module>` (with cwd=out, PYTHONPATH must reach ROOT)."""
        return [self.python, "-m", f"bench.{module}", *args]

    @property
    def child_env(self) -> dict[str, str]:
        """The environment for `python -m bench.*` children: the measured logtaild first, then ROOT."""
        env = dict(self.env)
        parts = env.get("PYTHONPATH", "").split(os.pathsep) if env.get("PYTHONPATH") else []
        if str(ROOT) not in parts:
            parts.append(str(ROOT))
        env["PYTHONPATH"] = os.pathsep.join(parts)
        return env
