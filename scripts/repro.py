"""Run dvc.yaml's stage commands in dependency order on a machine without DVC (the lent GPU machine).

    python3 scripts/repro.py --profile gpu [--only train@any3davatar ...] [--dry]

The stages are the ones `dvc repro` runs (foreach lists from benchmarks/methods.yaml, ${profile}
substituted); each stage is itself resumable (finished heads, shards and checkpoints are kept), so
re-running after an interruption continues. Unlike DVC it does not skip a stage whose inputs are
unchanged: the stages' own planners make a second run cheap. Logs go to <logdir>/<stage>.log.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _subst(obj, env: dict[str, str]):
    if isinstance(obj, str):
        for k, v in env.items():
            obj = obj.replace("${" + k + "}", v)
        return obj
    if isinstance(obj, list):
        return [_subst(o, env) for o in obj]
    if isinstance(obj, dict):
        return {_subst(k, env): _subst(v, env) for k, v in obj.items()}
    return obj


def stages(profile: str) -> dict[str, dict]:
    """name -> {cmd, deps, outs} with foreach expanded and ${...} substituted."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    vars_ = {}
    for f in dvc.get("vars", []):
        vars_.update(yaml.safe_load((ROOT / f).read_text()))
    out = {}
    for name, st in dvc["stages"].items():
        if "foreach" in st:
            items = vars_[st["foreach"][2:-1]]
            for key, item in items.items():
                env = {"profile": profile, "key": key, **{f"item.{k}": str(v) for k, v in item.items()}}
                out[f"{name}@{key}"] = _subst(st["do"], env)
        else:
            out[name] = _subst(st, {"profile": profile})
    for st in out.values():
        st["deps"] = [next(iter(d)) if isinstance(d, dict) else d for d in st.get("deps", [])]
        st["outs"] = [next(iter(o)) if isinstance(o, dict) else o for o in st.get("outs", [])]
        for extra in ("metrics", "plots"):
            st["outs"] += [next(iter(o)) if isinstance(o, dict) else o for o in st.get(extra, [])]
    return out


def order(sts: dict[str, dict]) -> list[str]:
    """Topological order: a stage runs after every stage producing (a path under) one of its deps."""
    def produces(a: str, dep: str) -> bool:
        return any(dep == o or dep.startswith(o.rstrip("/") + "/") or o.startswith(dep.rstrip("/") + "/")
                   for o in sts[a]["outs"])

    done: list[str] = []
    pending = list(sts)
    while pending:
        for name in pending:
            before = [a for a in sts if a != name and a not in done and any(produces(a, d) for d in sts[name]["deps"])]
            if not before:
                done.append(name)
                pending.remove(name)
                break
        else:
            raise SystemExit(f"dependency cycle among {pending}")
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--only", nargs="*", default=None, help="run only these stages (in dependency order)")
    ap.add_argument("--skip", nargs="*", default=[], help="stages to leave out")
    ap.add_argument("--logdir", default="gpu_run/logs")
    ap.add_argument("--dry", action="store_true", help="print the commands only")
    args = ap.parse_args()
    sts = stages(args.profile)
    names = [n for n in order(sts) if (args.only is None or n in args.only) and n not in args.skip]
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    for n in names:
        cmd = sts[n]["cmd"].replace("python ", f"{shlex.quote(sys.executable)} ", 1)
        print(f"[{time.strftime('%H:%M:%S')}] {n}: {cmd}", flush=True)
        if args.dry:
            continue
        with open(logdir / f"{n}.log", "w") as log:
            rc = subprocess.call(cmd, shell=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if rc:
            print(f"{n} FAILED (exit {rc}); see {logdir / (n + '.log')}", flush=True)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
