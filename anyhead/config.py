"""Typed configuration: frozen dataclasses parsed once from ``params.yaml``, validated before any work.

``params.yaml`` holds a ``base`` profile with every key and named ``profiles`` that state only what
differs (``tiny`` for tests/CI, ``default`` for the CPU demo, ``gpu`` for real training). A profile is
the base deep-merged with its overrides, then parsed section by section into the dataclasses below
(and the model/training ones in :mod:`recon.config`). Parsing is strict:

* an unknown key, at any depth, is an error naming its path and the allowed keys;
* types are checked, not coerced: ``shadows: "false"`` is refused (a string is not a boolean), an
  int field refuses ``"ten"`` and ``1.5``, a float field accepts ints;
* bounds and choices are declared on the fields (:func:`num`, ``Literal``) and checked with the value
  and what is allowed in the message; cross-field rules live in ``__post_init__``.

Every error is a :class:`ConfigError` whose message starts with the key path (``profiles.tiny.render.
n_targets: -1 is below the minimum 1``). Libraries receive these objects and keep no defaults of their
own for configured values.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")
PARAMS_FILE = "params.yaml"
PROFILE_ENV = "ANYHEAD_PROFILE"


class ConfigError(ValueError):
    """A configuration problem; the message names the key path, the value and what is allowed."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


def num(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None) -> Any:
    """A numeric field with bounds (checked by :func:`parse`)."""
    meta = {"bounds": (ge, gt, le, lt)}
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


_TYPE_NAMES = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _type_name(tp: Any) -> str:
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _check_bounds(path: str, value: float, bounds: tuple) -> None:
    ge, gt, le, lt = bounds
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"{value} is not a finite number")
    if ge is not None and value < ge:
        raise ConfigError(path, f"{value!r} is below the minimum {ge}")
    if gt is not None and value <= gt:
        raise ConfigError(path, f"{value!r} must be greater than {gt}")
    if le is not None and value > le:
        raise ConfigError(path, f"{value!r} is above the maximum {le}")
    if lt is not None and value >= lt:
        raise ConfigError(path, f"{value!r} must be less than {lt}")


def _convert(path: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (recursively); containers are rebuilt immutable."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for a in args:
            try:
                return _convert(path, value, a)
            except ConfigError as e:
                errors.append(e.problem)
        raise ConfigError(path, f"{value!r} is not {' or '.join(_type_name(a) for a in args)}")  # e.g. "a number or null"
    if tp is type(None):
        if value is not None:
            raise ConfigError(path, f"{value!r} is not null")
        return None
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise ConfigError(path, f"{value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"{value!r} is not a boolean (write true or false, unquoted)")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"{value!r} is not an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"{value!r} is not a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"{value!r} is not a string")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"{value!r} is not a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(f"{path}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(path, f"{value!r} must have {len(args)} items")
        return tuple(_convert(f"{path}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"{value!r} is not a mapping")
        kt, vt = args or (str, Any)
        return types.MappingProxyType({_convert(f"{path}", k, kt): _convert(f"{path}.{k}", v, vt) for k, v in value.items()})
    raise TypeError(f"{path}: unsupported annotation {tp!r}")  # a bug in a config class, not in the user's file


def parse(cls: type[T], data: Any, path: str = "") -> T:
    """Build the frozen dataclass ``cls`` from plain data, strictly (see the module docstring)."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}, "
                                f"got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(where, f"unknown key; allowed keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(key, "missing (required)")
            continue
        value = _convert(key, data[name], hints[name])
        if "bounds" in f.metadata and value is not None:
            for i, v in enumerate(value if isinstance(value, tuple) else (value,)):
                _check_bounds(key if not isinstance(value, tuple) else f"{key}[{i}]", v, f.metadata["bounds"])
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:  # cross-field rules raise with a path relative to this section
        raise ConfigError(f"{path}.{e.path}" if path and e.path else (path or e.path), e.problem) from None


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) from a config object: for JSON, hashing and checkpoints."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (dict, types.MappingProxyType)):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def replace(obj: T, overrides: dict[str, Any], path: str = "") -> T:
    """A copy of config ``obj`` with (nested) ``overrides`` applied and validated like the file."""
    return parse(type(obj), overlay(type(obj), to_dict(obj), overrides, path), path)


def overlay(cls: type, base: dict[str, Any], over: dict[str, Any] | None, path: str = "") -> dict[str, Any]:
    """``base`` with ``over`` laid on top, following the schema ``cls``: a key whose field is itself a
    config class merges key by key; any other value (numbers, lists, split tables) replaces. A key
    ``cls`` does not have is an error at ``path``."""
    out = copy.deepcopy(base)
    if not over:
        return out
    if not isinstance(over, dict):
        raise ConfigError(path, f"must be a mapping, got {over!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for k, v in over.items():
        if k not in fields:
            raise ConfigError(f"{path}.{k}", f"unknown key; allowed keys: {', '.join(sorted(fields))}")
        sub = hints[k]
        if dataclasses.is_dataclass(sub) and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = overlay(sub, out[k], v, f"{path}.{k}")
        else:
            out[k] = copy.deepcopy(v)
    return out


# -- the params file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RawParams:
    """``params.yaml`` read, not yet parsed: the active profile's name, the base and its overrides."""

    path: Path
    profile: str
    base: dict[str, Any]
    overrides: dict[str, Any]
    ict: dict[str, Any]

    def section(self, cls: type[T], name: str) -> T:
        """Section ``name`` of the active profile parsed into ``cls``. An error names the key where it
        was written: ``profiles.<profile>.<name>...`` for an override, ``base.<name>...`` otherwise."""
        if name not in self.base:
            raise ConfigError(f"base.{name}", f"missing section in {self.path}")
        over = self.overrides.get(name) or {}
        merged = overlay(cls, self.base[name], over, f"profiles.{self.profile}.{name}")
        try:
            return parse(cls, merged, name)
        except ConfigError as e:
            rel = e.path.split(".")[1:]
            where = f"profiles.{self.profile}" if _has_path(over, rel) else "base"
            raise ConfigError(f"{where}.{e.path}", e.problem) from None


def _has_path(d: Any, keys: list[str]) -> bool:
    for k in keys:
        k = k.split("[")[0]
        if not isinstance(d, dict) or k not in d:
            return False
        d = d[k]
    return True


def read_params(path: str | os.PathLike[str] = PARAMS_FILE, profile: str | None = None) -> RawParams:
    """The active profile (the argument, else ``$ANYHEAD_PROFILE``, else ``profile:`` in the file).
    Structural problems (no such profile, an unknown section) are errors naming the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(str(path), "params file not found (run from the repository root or pass --params)")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(str(path), f"not valid YAML: {e}") from None
    unknown = sorted(set(doc) - {"profile", "ict", "base", "profiles"})
    if unknown:
        raise ConfigError(unknown[0], "unknown top-level key; allowed: profile, ict, base, profiles")
    for key in ("base", "profiles", "ict"):
        if not isinstance(doc.get(key), dict):
            raise ConfigError(key, f"missing or not a mapping in {path}")
    name = profile or os.environ.get(PROFILE_ENV) or doc.get("profile")
    if not isinstance(name, str) or name not in doc["profiles"]:
        where = "--profile" if profile else PROFILE_ENV if os.environ.get(PROFILE_ENV) else "profile"
        raise ConfigError(where, f"no profile {name!r}; known: {', '.join(doc['profiles'])}")
    over = doc["profiles"][name] or {}
    if not isinstance(over, dict):
        raise ConfigError(f"profiles.{name}", "must be a mapping of sections")
    for sec, v in over.items():
        if sec not in doc["base"]:
            raise ConfigError(f"profiles.{name}.{sec}", f"unknown section; sections: {', '.join(doc['base'])}")
        if v is not None and not isinstance(v, dict):
            raise ConfigError(f"profiles.{name}.{sec}", f"must be a mapping (or {{}}), got {v!r}")
    return RawParams(path, name, doc["base"], over, doc["ict"])


# -- data sections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IctConfig:
    """Where the ICT FaceKit archive comes from (``ict`` in params.yaml, shared by all profiles)."""

    local_archive: str  # used when it exists
    url: str  # else downloaded from here
    sha256: str  # "" or the hex digest every archive must have
    cache_dir: str  # extraction cache (``~`` expanded)

    def __post_init__(self) -> None:
        if self.sha256 and (len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256.lower())):
            raise ConfigError("sha256", f"{self.sha256!r} is not a 64-digit hex digest (or \"\" for any)")


@dataclass(frozen=True)
class AccessoryProbs:
    glasses: float = num(ge=0, le=1)
    hat: float = num(ge=0, le=1)
    earrings: float = num(ge=0, le=1)
    headphones: float = num(ge=0, le=1)


ANCHORS = ("eye_left", "eye_right", "eye_center", "nose_bridge", "nose_tip", "chin", "top_of_head", "ear_left",
           "ear_right", "ear_left_outer", "ear_right_outer", "ear_left_top", "ear_right_top", "earlobe_left",
           "earlobe_right")


@dataclass(frozen=True)
class AccessorySpec:
    """Placement of a user accessory mesh at a landmark anchor of each head."""

    anchor: str
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # metres, head frame
    scale: float = num(1.0, gt=0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # xyz Euler
    units: Literal["m", "cm", "mm"] = "m"  # of the mesh file
    name: str = ""  # part name ("" = user_<file stem>)
    material: str = "plastic"
    color: tuple[float, float, float] = num((0.5, 0.5, 0.5), ge=0, le=1)  # used when the mesh has no colours

    def __post_init__(self) -> None:
        if self.anchor not in ANCHORS:
            raise ConfigError("anchor", f"{self.anchor!r} is not one of {', '.join(ANCHORS)}")


@dataclass(frozen=True)
class UserAccessory:
    mesh: str  # OBJ/PLY/GLB path
    spec: AccessorySpec | str  # the placement, or a JSON file holding it
    prob: float = num(1.0, ge=0, le=1)


@dataclass(frozen=True)
class ScanOptions:
    """How to read the user's head scans."""

    units: Literal["auto", "m", "cm", "mm"] = "auto"
    up: Literal["+x", "-x", "+y", "-y", "+z", "-z"] = "+y"
    forward: Literal["+x", "-x", "+y", "-y", "+z", "-z"] = "+z"

    def __post_init__(self) -> None:
        if self.up[1] == self.forward[1]:
            raise ConfigError("forward", f"{self.forward!r} is not perpendicular to up {self.up!r}")


HAIR_STYLES = ("bald", "buzz", "short", "side_part", "bob", "long_straight", "long_wavy", "curly", "afro", "ponytail", "bun",
               "receding")  # anyhead.hair.STYLES
HAIR_DYES = ("platinum", "pink", "blue", "purple", "green", "teal", "copper", "burgundy")  # anyhead.hair.DYE_COLORS


@dataclass(frozen=True)
class HairConfig:
    """How hair is sampled (:mod:`anyhead.hair`)."""

    style_prob: dict[str, float]  # style -> relative weight (normalised; 0 = never)
    dye_prob: float = num(ge=0, le=1)  # chance of a dyed colour (else the natural colour of the appearance)
    dye_colors: tuple[str, ...]  # dyes to draw from
    grey_prob: float = num(ge=0, le=1)  # chance of greying (a random fraction of grey strands)
    density: float = num(gt=0, le=4)  # card count scale (render time grows with it)

    def __post_init__(self) -> None:
        for k, w in self.style_prob.items():
            if k not in HAIR_STYLES:
                raise ConfigError(f"style_prob.{k}", f"unknown hair style; styles are {', '.join(HAIR_STYLES)}")
            if not (math.isfinite(w) and w >= 0):
                raise ConfigError(f"style_prob.{k}", f"{w!r} is not a weight >= 0")
        if sum(self.style_prob.values()) <= 0:
            raise ConfigError("style_prob", "no style has a weight above 0")
        for i, c in enumerate(self.dye_colors):
            if c not in HAIR_DYES:
                raise ConfigError(f"dye_colors[{i}]", f"{c!r} is not one of {', '.join(HAIR_DYES)}")
        if self.dye_prob > 0 and not self.dye_colors:
            raise ConfigError("dye_colors", "empty while dye_prob is above 0")


GARMENTS = ("crew", "vneck", "collar", "hoodie", "turtleneck", "straps")


@dataclass(frozen=True)
class GarmentWeights:
    """Relative frequency of each garment type (0 = never); at least one must be above 0."""

    crew: float = num(1.0, ge=0)
    vneck: float = num(1.0, ge=0)
    collar: float = num(1.0, ge=0)
    hoodie: float = num(1.0, ge=0)
    turtleneck: float = num(1.0, ge=0)
    straps: float = num(1.0, ge=0)

    def __post_init__(self) -> None:
        if sum(getattr(self, g) for g in GARMENTS) <= 0:
            raise ConfigError("", "all garment weights are 0")


@dataclass(frozen=True)
class LookConfig:
    """``assets.look``: skin detail and the shoulders/garment under the neck (:mod:`anyhead.look`)."""

    shoulders: bool = True  # a torso joined to the neck, dressed in a garment; false: the bare ICT neck
    garments: GarmentWeights = field(default_factory=GarmentWeights)
    pattern_prob: float = num(0.4, ge=0, le=1)  # stripes / checks / dots instead of a plain colour
    pores: float = num(1.0, ge=0, le=3)  # strength of pore noise in albedo and specular
    freckle_prob: float = num(0.3, ge=0, le=1)  # heads with freckles
    moles: tuple[int, int] = num((0, 5), ge=0, le=50)  # moles per head, uniform in the range
    subsurface: float = num(1.0, ge=0, le=2)  # strength of the soft-scatter look (wrap lighting) on skin

    def __post_init__(self) -> None:
        if self.moles[0] > self.moles[1]:
            raise ConfigError("moles", f"{list(self.moles)} is not a range (first <= second)")


@dataclass(frozen=True)
class AssetsConfig:
    """``build_assets``: how many heads, and how they are sampled."""

    n_identities: int = num(ge=0)
    seed: int = num(ge=0)
    # fresh identities for training only (a release run's new seed): they never enter val/test, and adding them
    # leaves the split of the n_identities heads, so the test split's hash, unchanged
    train_only_identities: int = num(ge=0)
    train_only_seed: int = num(ge=0)
    texture_size: int = num(ge=32, le=8192)
    identity_modes: int = num(ge=0, le=100)
    identity_scale: float = num(ge=0, le=3)
    max_expressions: int = num(ge=0, le=53)
    max_expression_weight: float = num(ge=0, le=1)
    accessory_prob: AccessoryProbs
    hair: HairConfig
    scans_dir: str  # "" for none
    scan_options: ScanOptions
    user_accessories: tuple[UserAccessory, ...]
    workers: int = num(ge=1)
    scheduler: str | None  # a Dask scheduler address (tcp://host:8786), or null for a LocalCluster
    look: LookConfig

    def __post_init__(self) -> None:
        if self.n_identities == 0 and not self.scans_dir:
            raise ConfigError("n_identities", "0 with no scans_dir: the stage would build no heads")
        if self.train_only_identities and self.train_only_seed == self.seed:
            raise ConfigError("train_only_seed", f"equals seed ({self.seed}): the train-only heads would repeat the seed's heads")


ENV_PRESETS = ("studio", "outdoor", "indoor", "neutral")


@dataclass(frozen=True)
class LightingConfig:
    """``render.lighting``: how each head's lighting is drawn (:mod:`anyhead.render.lighting`); one per sample."""

    presets: tuple[Literal["studio", "outdoor", "indoor", "neutral"], ...] = ("studio", "outdoor", "indoor")
    env_intensity: tuple[float, float] = num((0.6, 1.2), ge=0, le=10)  # environment scale, uniform
    env_tilt: float = num(15.0, ge=0, le=90)  # degrees; the environment also turns freely about the vertical
    n_lights: tuple[int, int] = num((1, 3), ge=1, le=4)  # lights per head, uniform in the range; the first is the key
    kelvin: tuple[float, float] = num((2700.0, 7500.0), ge=1000, le=20000)  # colour temperature, uniform
    key_intensity: tuple[float, float] = num((0.9, 1.6), ge=0, le=10)
    other_intensity: tuple[float, float] = num((0.2, 0.7), ge=0, le=2)  # the other lights, relative to a key draw
    key_yaw: float = num(70.0, ge=0, le=180)  # degrees: key azimuth uniform in +-key_yaw (0 = in front)
    key_elevation: tuple[float, float] = num((10.0, 55.0), ge=-90, le=90)
    point_prob: float = num(0.3, ge=0, le=1)  # a light is a point light (else directional)
    point_distance: tuple[float, float] = num((0.8, 1.6), ge=0.6, le=10)  # metres from the head centre
    exposure: tuple[float, float] = num((1.1, 1.6), gt=0, le=10)  # peak irradiance on the head's front half, uniform

    def __post_init__(self) -> None:
        if not self.presets:
            raise ConfigError("presets", "empty: list at least one of " + ", ".join(ENV_PRESETS))
        for name in ("env_intensity", "n_lights", "kelvin", "key_intensity", "other_intensity", "key_elevation",
                     "point_distance", "exposure"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(name, f"[{lo}, {hi}] is not a range (first <= second)")


@dataclass(frozen=True)
class RenderConfig:
    """``render``: the camera rigs and the renderer's quality settings."""

    input_res: int = num(ge=16, le=4096)
    target_res: int = num(ge=16, le=4096)
    n_inputs: int = num(ge=1)
    n_targets: int = num(ge=1)
    supersample: int = num(ge=1, le=8)
    shadows: bool
    gt_points: int = num(ge=1)
    input_yaw: float = num(ge=0, le=180)  # degrees, uniform in +-input_yaw
    input_pitch: float = num(ge=0, le=80)  # degrees, pitch uniform in [-input_pitch_down, input_pitch] (+: from above)
    input_pitch_down: float = num(ge=0, le=80)
    input_roll: float = num(ge=0, le=45)  # degrees, roll about the optical axis uniform in +-input_roll
    focal_mm: tuple[float, float] = num(gt=0, le=1000)  # 35 mm-equivalent range
    distance_jitter: float = num(ge=0, lt=1)
    target_pitch: tuple[float, float] = num(ge=-89, le=89)
    workers: int = num(ge=1)
    scheduler: str | None
    lighting: LightingConfig

    def __post_init__(self) -> None:
        for name in ("focal_mm", "target_pitch"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(name, f"[{lo}, {hi}] is not a range (first <= second)")


SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class ShardsConfig:
    """``shards``: identity-disjoint splits and shard size."""

    samples_per_shard: int = num(ge=1)
    splits: dict[str, float]  # split name -> fraction of identities; fractions sum to 1
    split_seed: int = num(ge=0)

    def __post_init__(self) -> None:
        for k, f in self.splits.items():
            if k not in SPLIT_NAMES:
                raise ConfigError(f"splits.{k}", f"unknown split; splits are {', '.join(SPLIT_NAMES)}")
            if not 0 <= f <= 1:
                raise ConfigError(f"splits.{k}", f"{f} is not a fraction in [0, 1]")
        total = sum(self.splits.values())
        if abs(total - 1) > 1e-6:
            raise ConfigError("splits", f"fractions sum to {total:g}, not 1: {dict(self.splits)}")
        if self.splits.get("train", 0) <= 0:
            raise ConfigError("splits.train", "must be above 0")


@dataclass(frozen=True)
class PhotosConfig:
    """``shards`` (photos part): in-the-wild portraits packed as single-view samples."""

    builtin_astronaut: bool
    dirs: tuple[str, ...]
    res: int = num(ge=16, le=4096)
    background: Literal["keep", "estimate", "white"]


@dataclass(frozen=True)
class CapturesConfig:
    """``captures``: folders of calibrated multi-view captures (nerfstudio / COLMAP text), one subject each
    (:mod:`anyhead.captures`), normalised into the head frame and written as multi-view samples."""

    dirs: tuple[str, ...]  # folders holding one capture folder per subject (or being one)
    res: int = num(ge=16, le=4096)  # square crops around the head, resized to this
    max_targets: int = num(ge=1)  # at most this many target views per subject (evenly chosen)
    masks: Literal["given", "estimate", "none"]  # given: the capture's masks (else none); estimate: given, else matted
    gt_points: int = num(ge=1)  # surface samples from a given mesh


@dataclass(frozen=True)
class CardConfig:
    contact_sheet_samples: int = num(ge=1, le=256)
