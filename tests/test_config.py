"""The typed configuration: every profile loads; bad values stop before any work with the key path;
dvc.yaml agrees with the registry, the paths module and the modules each stage imports; package
boundaries hold."""
from __future__ import annotations

import ast
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anyhead.config import ConfigError
from anyhead.paths import Paths
from recon.config import SECTIONS, load_config
from tests.dvc_deps import undeclared

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def write_params(tmp_path: Path, edit) -> Path:
    doc = copy.deepcopy(PARAMS)
    edit(doc)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


@pytest.mark.parametrize("profile", list(PARAMS["profiles"]))
def test_every_profile_loads(profile):
    cfg = load_config(ROOT / "params.yaml", profile, root=ROOT)
    assert cfg.name == profile and cfg.paths.shards == ROOT / "data" / profile / "shards"
    # a profile states only what differs from the base: nothing it lists equals the base value
    for sec, over in (PARAMS["profiles"][profile] or {}).items():
        for k, v in (over or {}).items():
            assert v != PARAMS["base"][sec][k] or isinstance(v, dict), f"profiles.{profile}.{sec}.{k} repeats the base"


def test_every_profile_lists_every_section():
    """DVC declares `profiles.<profile>.<section>` params: each must exist (as {} when nothing differs)."""
    for name, prof in PARAMS["profiles"].items():
        assert set(prof) == set(SECTIONS), name


def test_profiles_override_the_base():
    tiny, default = load_config(ROOT / "params.yaml", "tiny"), load_config(ROOT / "params.yaml", "default")
    assert tiny.render.target_res == 64 and default.render.target_res == 256
    assert tiny.render.shadows == default.render.shadows  # not overridden: the base value
    assert tiny.train.loss.lpips == 0.0 and tiny.train.loss.l1 == default.train.loss.l1  # nested merge


BAD = [
    # (edit of the params document, expected message fragment)
    (lambda d: d["profiles"]["tiny"]["render"].update(shadow=False),
     "profiles.tiny.render.shadow: unknown key; allowed keys:"),
    (lambda d: d["profiles"]["tiny"]["train"].update(loss={"l1": 1.0, "lpip": 0.1}),
     "profiles.tiny.train.loss.lpip: unknown key"),
    (lambda d: d["profiles"]["tiny"]["assets"].update(accessory_prob={"glases": 0.3}),
     "profiles.tiny.assets.accessory_prob.glases: unknown key"),
    (lambda d: d["profiles"]["tiny"]["render"].update(shadows="false"),
     "profiles.tiny.render.shadows: 'false' is not a boolean"),
    (lambda d: d["profiles"]["tiny"]["assets"].update(n_identities="ten"),
     "profiles.tiny.assets.n_identities: 'ten' is not an integer"),
    (lambda d: d["profiles"]["tiny"]["assets"].update(n_identities=2.5),
     "profiles.tiny.assets.n_identities: 2.5 is not an integer"),
    (lambda d: d["profiles"]["tiny"]["render"].update(n_targets=-1),
     "profiles.tiny.render.n_targets: -1 is below the minimum 1"),
    (lambda d: d["profiles"]["tiny"]["shards"].update(samples_per_shard=0),
     "profiles.tiny.shards.samples_per_shard: 0 is below the minimum 1"),
    (lambda d: d["profiles"]["tiny"]["shards"].update(splits={"train": 1.5, "test": -1}),
     "profiles.tiny.shards.splits.train: 1.5 is not a fraction in [0, 1]"),
    (lambda d: d["profiles"]["tiny"]["shards"].update(splits={"train": 0.5, "test": 0.3}),
     "profiles.tiny.shards.splits: fractions sum to 0.8, not 1"),
    (lambda d: d["profiles"]["tiny"]["shards"].update(splits={"train": 0.5, "tset": 0.5}),
     "profiles.tiny.shards.splits.tset: unknown split"),
    (lambda d: d["profiles"]["tiny"]["photos"].update(background="blur"),
     "profiles.tiny.photos.background: 'blur' is not one of 'keep', 'estimate', 'white'"),
    (lambda d: d["profiles"]["tiny"]["render"].update(focal_mm=[85, 35]),
     "profiles.tiny.render.focal_mm: [85.0, 35.0] is not a range"),
    (lambda d: d["profiles"]["tiny"]["any3davatar"].update(heads=3),
     "profiles.tiny.any3davatar.heads: 3 does not divide dim 64"),
    (lambda d: d["profiles"]["tiny"]["any3davatar"].update(scaffold="grid"),
     "profiles.tiny.any3davatar.scaffold: 'grid' is not one of 'structured', 'random'"),
    (lambda d: d["profiles"]["tiny"]["any3davatar"].update(aux_res=16),
     "profiles.tiny.any3davatar.aux_res: 16 must equal the loss resolution 32"),
    (lambda d: d["profiles"]["tiny"]["train"].update(crop_size=64),
     "profiles.tiny.train.crop_size: 64 is more than target_size 32"),
    (lambda d: d["profiles"]["tiny"]["any3davatar"].update(feat_stride=3),
     "profiles.tiny.any3davatar.feat_stride: 3 is not one of 2, 4"),
    (lambda d: d["profiles"]["tiny"]["any3davatar"].update(arch_version=3),
     "profiles.tiny.any3davatar.arch_version: 3 is not one of 1, 2"),
    (lambda d: d["profiles"]["tiny"]["train"].update(lr=0),
     "profiles.tiny.train.lr: 0.0 must be greater than 0"),
    (lambda d: d["profiles"]["tiny"]["train"].update(time_budget_min="11"),
     "profiles.tiny.train.time_budget_min: '11' is not a number or null"),
    (lambda d: d["profiles"]["tiny"].update(renderer={}),
     "profiles.tiny.renderer: unknown section"),
    (lambda d: d["base"]["render"].update(supersample=0),
     "base.render.supersample: 0 is below the minimum 1"),
    (lambda d: d["base"]["assets"]["user_accessories"].append({"mesh": "crown.glb", "spec": {"anchor": "elbow"}}),
     "base.assets.user_accessories[0].spec"),
    (lambda d: d.update(profile="huge"), "profile: no profile 'huge'; known: tiny, default, gpu"),
]


@pytest.mark.parametrize("edit,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_values_name_the_key(tmp_path, monkeypatch, edit, message):
    monkeypatch.delenv("ANYHEAD_PROFILE", raising=False)
    p = write_params(tmp_path, lambda d: (d.update(profile="tiny"), edit(d)))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert message in str(e.value)


def test_a_stage_stops_before_any_work(tmp_path):
    """The first stage refuses a typo in a section it does not even read, and writes nothing."""
    p = write_params(tmp_path, lambda d: (d.update(profile="tiny"), d["profiles"]["tiny"]["train"].update(stpes=5)))
    r = subprocess.run([sys.executable, "-m", "pipelines.build_assets", "--params", str(p)], cwd=tmp_path,
                       capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode != 0 and "profiles.tiny.train.stpes: unknown key" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "data").exists()


def test_model_configs_reject_unknown_keys():
    from recon.config import ModelConfig, SplatterConfig, model_config_from_dict

    tiny = load_config(ROOT / "params.yaml", "tiny")
    d = tiny.any3davatar.to_dict()
    with pytest.raises(ConfigError, match="model.dimm: unknown key"):
        ModelConfig.from_dict({**d, "dimm": 3})
    with pytest.raises(ConfigError, match="model.base: unknown key"):
        ModelConfig.from_dict({**d, "base": 3})
    assert model_config_from_dict(tiny.splatter_image.to_dict()) == tiny.splatter_image
    assert isinstance(model_config_from_dict(d), ModelConfig) and SplatterConfig.from_dict(tiny.splatter_image.to_dict())


# -- dvc.yaml -----------------------------------------------------------------------------------

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_registry_and_dvc_agree():
    """dvc.yaml's train/evaluate lists are benchmarks/methods.yaml, generated from the registry."""
    from benchmarks.methods import DVC_VARS, REGISTRY, learned_methods, render_dvc_vars

    assert DVC_VARS.read_text() == render_dvc_vars(), "run: python -m benchmarks.methods --write-dvc-vars"
    assert "benchmarks/methods.yaml" in DVC["vars"]
    assert DVC["stages"]["train"]["foreach"] == "${train_methods}"
    assert DVC["stages"]["evaluate"]["foreach"] == "${eval_methods}"
    gen = yaml.safe_load(DVC_VARS.read_text())
    assert list(gen["train_methods"]) == learned_methods() and list(gen["eval_methods"]) == list(REGISTRY)


def _stage_items():
    gen = yaml.safe_load((ROOT / "benchmarks/methods.yaml").read_text())
    for name, st in DVC["stages"].items():
        if "foreach" in st:
            items = gen[st["foreach"][2:-1]]
            for key, item in items.items():
                yield f"{name}@{key}", _subst(st["do"], key, item)
        else:
            yield name, st


def _subst(obj, key, item):
    if isinstance(obj, str):
        for k, v in item.items():
            obj = obj.replace(f"${{item.{k}}}", str(v))
        return obj.replace("${key}", key)
    if isinstance(obj, list):
        return [_subst(o, key, item) for o in obj]
    if isinstance(obj, dict):
        return {_subst(k, key, item): _subst(v, key, item) for k, v in obj.items()}
    return obj


def _paths(entries):
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


@pytest.mark.parametrize("stage,st", list(_stage_items()), ids=[n for n, _ in _stage_items()])
def test_stage_declares_every_module_it_imports(stage, st):
    entry = st["cmd"].split("python -m ")[1].split()[0]
    missing = undeclared(entry, _paths(st["deps"]))
    assert not missing, f"{stage}: add to its deps in dvc.yaml: {missing}"


def test_dvc_data_paths_are_the_paths_module():
    """Every data path in dvc.yaml is one Paths derives (for any profile and method)."""
    from benchmarks.methods import REGISTRY

    p = Paths(Path("."), "PROFILE")
    known = {p.ict_model, p.ict_source, p.assets, p.renders, p.captures, p.shards, p.splits_manifest, p.card, p.eval, p.leaderboard,
             p.split("train"), p.split("test")}
    known |= {p.checkpoint(m) for m in REGISTRY} | {p.train_dir(m) for m in REGISTRY} | {p.eval_dir(m) for m in REGISTRY}
    for stage, st in _stage_items():
        for path in _paths(st.get("deps")) + _paths(st.get("outs")) + _paths(st.get("metrics")) + _paths(st.get("plots")):
            if not path.startswith("data/"):
                continue
            path = Path(path.replace("${profile}", "PROFILE"))
            assert path in known or path.parent in known, f"{stage}: {path} is not derived by anyhead.paths.Paths"


def test_params_each_stage_declares_exist():
    for stage, st in _stage_items():
        for key in st.get("params", []):
            for prof in PARAMS["profiles"]:
                node = PARAMS
                for part in key.replace("${profile}", prof).split("."):
                    assert part in node, f"{stage}: params key {key} missing for profile {prof}"
                    node = node[part]


# -- package boundaries -------------------------------------------------------------------------

def test_libraries_never_import_benchmarks():
    offenders = []
    for pkg in ("anyhead", "recon"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                offenders += [f"{f.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert not offenders, offenders


def test_no_run_scripts_in_benchmarks():
    assert not list((ROOT / "benchmarks").glob("*.sh")), "GPU run scripts belong in scripts/"


def test_shoulders_need_the_v2_structured_scaffold():
    from anyhead.config import ConfigError, replace
    from tests.conftest import profile_config

    m = profile_config("tiny").any3davatar
    assert replace(m, {"shoulders": True}).shoulders
    for bad in ({"shoulders": True, "scaffold": "random"}, {"shoulders": True, "arch_version": 1}):
        with pytest.raises(ConfigError, match="shoulders"):
            replace(m, bad)
    with pytest.raises(ConfigError, match="torso_floor"):
        replace(m, {"torso_floor": -0.2})
